"""Run folders, records and refusals of the evaluation harness and its commands: a locked folder,
another configuration in a folder, records that say what ran, ε given as a fraction, classes
that do not match the classifier, more images than the data set has."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import Tensor, nn
from typer.testing import CliRunner

from irad.attacks import build_attack
from irad.cli import app
from irad.data import CIFAR10_CLASSES, ImageDataset
from irad.defenses import Defense, Identity
from irad.errors import ConfigError
from irad.evaluate import (
    AttackBackend,
    AttackSpec,
    EvaluationConfig,
    derive_seed,
    evaluate_defenses,
    get_protocol,
    protocol_config,
)
from irad.evaluate.cache import AdversarialCache
from irad.evaluate.folder import RunFolderConflict
from irad.models import build_classifier, save_classifier
from irad.models.classifier import Classifier
from irad.utils.lock import RunFolderBusy

K, SIZE, N = 3, 8, 16
FAST: dict[str, Any] = {"batch_size": 8, "cost_repeats": 0, "progress": False, "threads": 1}


def make_task() -> tuple[Classifier, tuple[Tensor, Tensor]]:
    patterns = torch.rand(K, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) - 0.5
    y = torch.arange(N) % K
    strength = torch.linspace(0.06, 0.2, N).view(N, 1, 1, 1)
    noise = 0.05 * torch.randn(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    x = (0.5 + strength * patterns[y] + noise).clamp(0, 1)
    linear = nn.Linear(3 * SIZE * SIZE, K)
    with torch.no_grad():
        linear.weight.copy_(patterns.flatten(1))
        linear.bias.copy_(-(patterns.flatten(1) * 0.5).sum(1))
    return Classifier(nn.Sequential(nn.Flatten(), linear), num_classes=K, name="template"), (x, y)


class Noise(Defense):
    stochastic = True

    def purify(self, x: Tensor) -> Tensor:
        return x + 0.05 * torch.randn_like(x)

    def config(self) -> dict[str, Any]:
        return {"name": "noise"}


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.real = AttackBackend.default()

    def backend(self) -> AttackBackend:
        def build(name: str, model: nn.Module, eps: float = 8, **params: Any) -> Any:
            attack = self.real.build_attack(name, model, eps=eps, **params)

            def call(x: Tensor, y: Tensor, *, seed: int | None = None) -> Tensor:
                self.calls += 1
                return attack(x, y, seed=seed)

            return call

        return self.real.replace(build_attack=build)


def _evaluate(out: Path | None, cache: Path, **kw: Any) -> Any:
    clf, data = make_task()
    settings = {**FAST, **kw}
    return evaluate_defenses(
        settings.pop("defenses", {"none": Identity()}),
        clf,
        data,
        settings.pop("attacks", ["pgd:steps=2"]),
        settings.pop("threat", "oblivious"),
        out_dir=out,
        cache_dir=cache,
        **settings,
    )


# -- run folders ------------------------------------------------------------------------------
@pytest.fixture
def foreign_lock(tmp_path: Path) -> Iterator[Path]:
    """A run folder locked by another live process on this host."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    folder = tmp_path / "run"
    folder.mkdir()
    record = {
        "pid": sleeper.pid,
        "host": socket.gethostname(),
        "started": "2024-01-01T00:00:00",
        "purpose": "irad evaluate",
        "command": "irad evaluate --out run",
    }
    (folder / ".lock").write_text(json.dumps(record))
    try:
        yield folder
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_locked_run_folder_fails_at_once_with_the_owner_named(
    foreign_lock: Path, tmp_path: Path
) -> None:
    counter = Counter()
    with pytest.raises(RunFolderBusy, match=r"in use by pid \d+ .*irad evaluate --out run"):
        _evaluate(foreign_lock, tmp_path / "cache", backend=counter.backend())
    assert counter.calls == 0  # nothing was attacked
    assert not (foreign_lock / "result.json").exists()


def test_the_cli_refuses_a_locked_run_folder(foreign_lock: Path, tmp_path: Path) -> None:
    args = _cli_args(tmp_path, out=foreign_lock)
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and isinstance(result.exception, RunFolderBusy)
    assert "is in use by pid" in str(result.exception)


def test_another_configuration_is_refused_and_overwrite_proceeds(tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    first = _evaluate(out, cache, n=8)
    assert json.loads((out / "run.json").read_text())["identity"]["n"] == 8
    resumed = _evaluate(out, cache, n=8)  # the same configuration resumes
    assert resumed.timing["partials_reused"] > 0
    with pytest.raises(RunFolderConflict, match=r"other settings \(.*n: 8 -> 16") as err:
        _evaluate(out, cache, n=16, threads=2)
    assert "threads" not in str(err.value)  # a thread count changes no figure
    assert "--overwrite" in str(err.value)
    with pytest.raises(RunFolderConflict, match=r"attacks: \['pgd:steps=2'\] -> \['fgsm'\]"):
        _evaluate(out, cache, n=8, attacks=["fgsm"])
    with pytest.raises(RunFolderConflict, match=r"defense\[none\]: its weights or settings"):
        _evaluate(out, cache, n=8, defenses={"none": Noise()})
    assert json.loads((out / "result.json").read_text())["dataset"]["n"] == 8  # untouched
    replaced = _evaluate(out, cache, n=16, overwrite=True)
    assert replaced.sa("none").total == 16 != first.sa("none").total
    assert json.loads((out / "result.json").read_text())["dataset"]["n"] == 16


def test_a_folder_written_before_run_records_is_compared_through_its_result(
    tmp_path: Path,
) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    _evaluate(out, cache, n=8)
    (out / "run.json").unlink()
    _evaluate(out, cache, n=8)  # same settings: fine
    (out / "run.json").unlink()
    with pytest.raises(RunFolderConflict, match="n: 8 -> 16"):
        _evaluate(out, cache, n=16)


def _cli_args(tmp_path: Path, out: Path, extra: str = "") -> list[str]:
    data = tmp_path / "tiny.npz"
    if not data.exists():
        torch.manual_seed(0)
        x = (torch.rand(6, 32, 32, 3) * 255).to(torch.uint8)
        ImageDataset(x, torch.arange(6) % 10, name="tiny").save_npz(data)
        save_classifier(build_classifier("resnet20"), tmp_path / "r20")
    args = shlex.split(
        "evaluate --defense none --attack fgsm --n 6 --batch-size 3 --cost-repeats 0 "
        f"--threads 1 --no-progress {extra}"
    )
    args += ["-w", str(tmp_path / "r20"), "--dataset", str(data)]
    return [*args, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]


def test_cli_refuses_another_configuration_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert CliRunner().invoke(app, _cli_args(tmp_path, out)).exit_code == 0
    refused = CliRunner().invoke(app, _cli_args(tmp_path, out, "--seed 1"))
    assert isinstance(refused.exception, RunFolderConflict)
    assert "seed: 0 -> 1" in str(refused.exception)
    done = CliRunner().invoke(app, _cli_args(tmp_path, out, "--seed 1 --overwrite"))
    assert done.exit_code == 0, done.output
    assert json.loads((out / "result.json").read_text())["seed"] == 1


# -- records ----------------------------------------------------------------------------------
def test_the_record_holds_the_seed_of_every_batch_and_rebuilds_the_images(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = _evaluate(tmp_path / "run", cache, attacks=["pgd:steps=3"])
    record = json.loads((tmp_path / "run" / "result.json").read_text())
    randomness = record["randomness"]
    assert randomness["base_seed"] == 0 and randomness["batches"] == [[0, 8], [8, 16]]
    assert "('attack', seed_key, start, stop)" in randomness["scheme"]
    outcome = record["defenses"]["none"]["attacks"]["pgd:steps=3"]
    key, seeds = outcome["seed_key"], outcome["seeds"]
    assert key and key != outcome["cache_key"]
    assert seeds == [derive_seed(0, "attack", key, a, b) for a, b in randomness["batches"]]
    assert len(set(seeds)) == 2  # one per batch, not the base seed

    # Rebuild batch 1 alone from the record and compare with the cached images.
    clf, (x, y) = make_task()
    start, stop = randomness["batches"][1]
    rebuilt = build_attack("pgd", clf, eps=8, steps=3)(x[start:stop], y[start:stop], seed=seeds[1])
    cached = AdversarialCache(cache, {})
    cached.dir = next(cache.rglob(outcome["cache_key"]))
    assert torch.equal(cached.load(1, x[start:stop], y[start:stop], eps=8 / 255), rebuilt)
    assert result.defenses["none"].attacks["pgd:steps=3"].seeds == seeds


def test_the_header_says_which_protocol_settings_were_overridden(tmp_path: Path) -> None:
    config = get_protocol("cpu").config("oblivious", n=N, batch_size=8, threads=1)
    assert config.protocol_description == "cpu protocol, overridden: n=16, batch_size=8, threads=1"
    result = _evaluate(None, tmp_path / "cache", config=config)
    assert "Settings: cpu protocol, overridden: n=16, batch_size=8, threads=1;" in (
        result.to_markdown()
    )
    assert result.to_dict()["protocol_description"] == config.protocol_description
    assert get_protocol("cpu").config().protocol_description == "cpu protocol"
    assert get_protocol("cpu").config("adaptive").n == 200  # full adaptive: the first 200
    assert protocol_config("custom", n=5).protocol_description == "custom settings"
    assert EvaluationConfig.cpu_protocol().n == 1000
    with pytest.raises(ConfigError, match="unknown protocol 'gpu'; choose one of: cpu, paper"):
        protocol_config("gpu")


def test_cli_header_names_the_overrides(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _cli_args(tmp_path, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["protocol"] == "cpu"
    assert saved["protocol_description"] == (
        "cpu protocol, overridden: n=6, batch_size=3, threads=1"
    )
    assert "Settings: cpu protocol, overridden: n=6, batch_size=3, threads=1" in result.output


def test_eot_is_printed_only_where_it_was_used(tmp_path: Path) -> None:
    plain = _evaluate(None, tmp_path / "cache", threat="adaptive")
    assert "EOT" not in plain.to_markdown()
    random = _evaluate(
        None,
        tmp_path / "cache",
        threat="adaptive",
        defenses={"noise": Noise(), "none": Identity()},
        eot_samples=4,
    )
    text = random.to_markdown()
    assert "EOT over 4 samples per gradient on noise;" in text  # not on "none"
    assert random.defenses["none"].attacks["pgd:steps=2"].eot_samples == 1


# -- bad input --------------------------------------------------------------------------------
def test_eps_given_as_a_fraction_is_refused_with_the_fix(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _cli_args(tmp_path, tmp_path / "out", "--eps 0.03"))
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == ("--eps is in units of 1/255: for 0.03 ≈ 8/255 pass --eps 8")
    spec = CliRunner().invoke(app, _cli_args(tmp_path, tmp_path / "out", "--attack pgd:eps=0.03"))
    assert "eps is in units of 1/255: for 0.03 ≈ 8/255 pass eps=8" in str(spec.exception)
    demo = CliRunner().invoke(app, ["demo", "--attack", "pgd:eps=0.031"])
    assert "for 0.031 ≈ 8/255 pass eps=8" in str(demo.exception)
    with pytest.raises(ConfigError, match="units of 1/255"):
        AttackSpec("pgd", eps=0.5)
    assert AttackSpec("pgd", eps=1).eps == 1.0


def test_classes_that_do_not_match_the_classifier_are_refused(tmp_path: Path) -> None:
    clf, (x, y) = make_task()
    pixels = (x.permute(0, 2, 3, 1) * 255).to(torch.uint8)
    two = ImageDataset(pixels, y % 2, classes=["cat", "dog"], name="pets")
    with pytest.raises(ConfigError, match=r"pets has 2 classes \(cat, dog\) but the classifier"):
        evaluate_defenses({"none": Identity()}, clf, two, ["fgsm"], use_cache=False, **FAST)
    named = ImageDataset(pixels, y, classes=["a", "b", "c"], name="abc")
    clf.classes = ["a", "c", "b"]
    with pytest.raises(ConfigError, match=r"classes of abc \(a, b, c\) are not the classifier's"):
        evaluate_defenses({"none": Identity()}, clf, named, ["fgsm"], use_cache=False, **FAST)
    clf.classes = ["a", "b", "c"]
    evaluate_defenses({"none": Identity()}, clf, named, ["fgsm"], use_cache=False, **FAST)
    wide = ImageDataset(pixels, torch.arange(N) % 5, name="five")
    with pytest.raises(ConfigError, match="labels of five go up to 4 but the classifier has 3"):
        evaluate_defenses({"none": Identity()}, clf, wide, ["fgsm"], use_cache=False, **FAST)


def test_cli_refuses_a_cat_and_dog_folder_for_a_cifar10_classifier(tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / name / f"{i}.png")
    save_classifier(build_classifier("resnet20"), tmp_path / "r20")
    args = ["evaluate", "-w", str(tmp_path / "r20"), "--dataset", str(folder), "--n", "4"]
    args += ["--attack", "fgsm", "--no-progress", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "has 2 classes (cat, dog) but the classifier has 10 outputs" in message
    assert ", ".join(CIFAR10_CLASSES) in message  # the fix: one sub-folder per class
    assert not (tmp_path / "out" / "result.json").exists()


def test_n_above_the_data_set_size_is_refused_with_the_size(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _cli_args(tmp_path, tmp_path / "out", "--n 7"))
    assert isinstance(result.exception, ConfigError)
    assert "--n 7 is more than the 6 images of" in str(result.exception)
    protocol = CliRunner().invoke(app, [*_cli_args(tmp_path, tmp_path / "o2"), "--n", "6"])
    assert protocol.exit_code == 0, protocol.output
    cpu = _cli_args(tmp_path, tmp_path / "o3")
    del cpu[cpu.index("--n") : cpu.index("--n") + 2]
    too_few = CliRunner().invoke(app, cpu)
    assert "the cpu protocol evaluates the first 1000 images, but" in str(too_few.exception)
    assert "has 6; pass --n 6 or less" in str(too_few.exception)

    data_dir = tmp_path / "cifar"
    data_dir.mkdir()
    ImageDataset(
        torch.zeros(3, 32, 32, 3, dtype=torch.uint8), torch.arange(3), classes=CIFAR10_CLASSES
    ).save_npz(data_dir / "test.npz")
    args = ["reproduce", "table1", "-w", str(tmp_path / "r20"), "--n", "5"]
    reproduce = CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)])
    assert "--n 5 is more than the 3 CIFAR-10 test images" in str(reproduce.exception)


def test_evaluate_classifier_is_the_accuracy_loop() -> None:
    from irad.evaluate.accuracy import accuracy
    from irad.train.classifier import evaluate_classifier

    clf, (x, y) = make_task()
    data = ImageDataset((x.permute(0, 2, 3, 1) * 255).to(torch.uint8), y)
    acc, loss = evaluate_classifier(clf, data, batch_size=5)
    result = accuracy(clf, data, batch_size=5, progress=False)
    assert (acc, loss) == (result.accuracy, result.loss)
    xs, ys = data.tensors()
    with torch.no_grad():
        logits = clf(xs)
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, ys)), rel=1e-5)
    assert acc == pytest.approx(float((logits.argmax(1) == ys).float().mean()))


@pytest.mark.skipif(os.name != "posix", reason="pids")
def test_lock_is_released_after_a_run(tmp_path: Path) -> None:
    _evaluate(tmp_path / "run", tmp_path / "cache")
    assert not (tmp_path / "run" / ".lock").exists()
