"""docs/own-data.md, run as written: every ``irad`` command of its ``bash`` blocks, in order, then
its Python block, on a tiny synthetic image folder (3 classes of 16×16 images). Only the sizes
are shrunk (epochs, steps, counts: the options in ``SHRINK`` replace the tutorial's values), so a
change that breaks the tutorial breaks this test."""

from __future__ import annotations

import json
import re
import shlex
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irad.cli import main

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
QUICK = {"--device": "cpu", "--no-progress": None}
# Per command: options whose tutorial values are replaced (None: a flag added).
SHRINK: dict[str, dict[str, str | None]] = {
    "folder-to-npz": {},
    "train-classifier": {"--epochs": "1", "--batch-size": "8", "--max-steps-per-epoch": "2",
                         "--eval-n": "6", **QUICK},
    "classify": QUICK,
    "prepare-pairs": {"--steps": "1", "--chunk": "16", "--batch-size": "16", **QUICK},
    "train-inr": {"--epochs": "1", "--batch-size": "8", "--max-steps-per-epoch": "1",
                  "--eval-n": "8", **QUICK},
    "train-samplenet": {"--epochs": "1", "--batch-size": "4", "--max-steps-per-epoch": "1",
                        "--eval-n": "4", **QUICK},
    "evaluate": {"--n": "6", "--attack": "pgd:steps=1", "--cost-repeats": "0",
                 "--cache-dir": "cache", **QUICK},
    "purify": QUICK,
}  # fmt: skip


def tutorial_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced ``bash`` and ``python`` block, in order (``sh``
    blocks, which say how the page's times were measured, are not steps of the tutorial)."""
    text = TUTORIAL.read_text(encoding="utf-8")
    return re.findall(r"^```(bash|python)\n(.*?)^```", text, flags=re.S | re.M)


def commands(code: str) -> list[list[str]]:
    """The ``irad`` command lines of a bash block (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", code)
    lines = [ln.split(" #")[0].strip() for ln in joined.splitlines()]
    out = [shlex.split(ln) for ln in lines if ln and not ln.startswith("#")]
    for argv in out:
        assert argv[0] == "irad", f"the tutorial runs only irad commands, found {argv}"
    return out


def shrink(argv: list[str]) -> list[str]:
    """``argv`` with the options of :data:`SHRINK` replaced by small values."""
    changes = SHRINK[argv[1]]
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in changes and changes[token] is not None:
            skip = True  # drop the option and its value
        else:
            kept.append(token)
    for option, value in changes.items():
        kept += [option] if value is None else [option, value]
    return kept


def make_data(root: Path, per_class: dict[str, int], size: int = 16) -> None:
    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for k, name in enumerate(("bird", "cat", "fox")):
            folder = root / "data" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                tint = np.array([80 * k, 140, 220 - 80 * k])
                pixels = np.clip(tint + rng.normal(0, 35, (size, size, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.png")


def run(monkeypatch, capsys, argv: list[str]) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", argv)
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.slow
def test_the_own_data_tutorial_runs_as_written(monkeypatch, capsys, tmp_path) -> None:
    from irad.data import FewClassesWarning
    from irad.purify import BundledDefenseWarning

    make_data(tmp_path, {"train": 8, "test": 4})
    monkeypatch.chdir(tmp_path)
    blocks = tutorial_blocks()
    ran: list[str] = []
    namespace: dict[str, object] = {}
    for language, code in blocks:
        if language == "python":
            exec(compile(code, str(TUTORIAL), "exec"), namespace)
            ran.append("python")
            continue
        for argv in commands(code):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                code_, output = run(monkeypatch, capsys, shrink(argv))
            assert code_ == 0, f"{' '.join(argv)} failed:\n{output}"
            # no skewed subset, no CIFAR-10 defense on these images: nothing to work around
            ours = [w for w in caught if w.category in (FewClassesWarning, BundledDefenseWarning)]
            assert not ours, f"{' '.join(argv)} warned: {[str(w.message) for w in ours]}"
            ran.append(argv[1])
    assert set(ran) == set(SHRINK) | {"python"}, ran  # every step of the tutorial ran

    # what the steps left behind
    config = json.loads(Path("runs/clf/model.json").read_text())["config"]
    assert config["classes"] == ["bird", "cat", "fox"] and len(config["mean"]) == 3
    with np.load("npz/test.npz") as npz:
        assert npz["x"].shape == (12, 16, 16, 3) and npz["classes"].tolist()[0] == "bird"
    for threat in ("oblivious", "adaptive"):
        result = json.loads(Path(f"results/{threat}/result.json").read_text())
        assert result["config"]["threat"] == threat
        assert "stratified 6" in json.dumps(result)
    assert len(list(Path("purified").rglob("*.png"))) == 12
    model = namespace["model"]
    x = torch.rand(2, 3, 16, 16)
    assert model(x).shape == (2, 3)  # type: ignore[operator]


def test_every_tutorial_command_is_covered() -> None:
    """The fast half: the tutorial's blocks parse, and each command has its shrink rule."""
    blocks = tutorial_blocks()
    names = [argv[1] for lang, code in blocks if lang == "bash" for argv in commands(code)]
    assert set(names) == set(SHRINK)
    assert sum(lang == "python" for lang, _ in blocks) == 1
