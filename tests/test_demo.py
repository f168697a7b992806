"""``irad demo``: the bundled IRAD and classifier, oblivious and adaptive, one table."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import torch
from typer.testing import CliRunner

from irad.cli import app
from irad.data import CIFAR10_CLASSES, ImageDataset


def test_demo_runs_offline_and_writes_one_table(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = (torch.rand(4, 32, 32, 3) * 255).to(torch.uint8)
    ImageDataset(x, torch.arange(4) % 10, classes=CIFAR10_CLASSES, name="tiny").save_npz(
        tmp_path / "test.npz"
    )
    args = shlex.split("demo --n 4 --batch-size 4 --attack apgd:steps=1 --threads 1 --no-progress")
    args += ["--data-dir", str(tmp_path), "--out", str(tmp_path / "demo")]
    args += ["--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [ln for ln in result.output.splitlines() if ln.startswith("| ")]
    assert rows[0].startswith("| defense | SA | RA oblivious") and "RA adaptive" in rows[0]
    assert [r.split(" | ")[0] for r in rows[1:]] == [
        "| none",
        "| DISCO-style (no sampling)",
        "| IRAD",
    ]
    assert (tmp_path / "demo" / "demo.md").read_text().startswith(rows[0])
    adaptive = json.loads((tmp_path / "demo" / "adaptive" / "result.json").read_text())
    assert adaptive["config"]["threat"] == "adaptive"
    assert set(adaptive["defenses"]) == {"DISCO-style (no sampling)", "IRAD"}
    # no defense: the adaptive attack is the oblivious one, so its two RA columns agree
    none = rows[1].split(" | ")
    assert none[2] == none[3]


def test_demo_refuses_more_images_than_the_data_has(tmp_path: Path) -> None:
    x = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    ImageDataset(x, torch.zeros(2, dtype=torch.long), classes=CIFAR10_CLASSES).save_npz(
        tmp_path / "test.npz"
    )
    result = CliRunner().invoke(app, ["demo", "--n", "5", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "--n 5 is more than the 2 CIFAR-10 test images" in str(result.exception)


def test_demo_with_diffusion_adds_the_two_random_rows(tmp_path: Path) -> None:
    import pytest

    pytest.importorskip("diffusers")
    from irad.models.diffusion import DiffusionConfig, DiffusionModel

    torch.manual_seed(0)
    DiffusionModel(DiffusionConfig.from_preset("tiny")).save_pretrained(tmp_path / "tiny-diffusion")
    x = (torch.rand(4, 32, 32, 3) * 255).to(torch.uint8)
    ImageDataset(x, torch.arange(4) % 10, classes=CIFAR10_CLASSES, name="tiny").save_npz(
        tmp_path / "test.npz"
    )
    args = shlex.split(
        "demo --n 4 --batch-size 4 --attack apgd:steps=1 --threads 1 --no-progress --diffusion "
        "--diffusion-t 2 --eot-samples 2"
    )
    args += ["--diffusion-weights", str(tmp_path / "tiny-diffusion")]
    args += ["--data-dir", str(tmp_path), "--out", str(tmp_path / "demo")]
    args += ["--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [ln for ln in result.output.splitlines() if ln.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[-2:]] == ["| DiffPure (t=2)", "| IRAD+DiffPure (t=2)"]
    adaptive = json.loads((tmp_path / "demo" / "adaptive" / "result.json").read_text())
    chain = adaptive["defenses"]["IRAD+DiffPure (t=2)"]
    assert chain["stochastic"] and chain["draws"] == 3
    assert next(iter(chain["attacks"].values()))["eot_samples"] == 2
