"""The thin CLI: outputs checked before the work, one line per failure, one ``--n`` rule,
one device parser, and settings that come from the presets and the API."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from irad.cli import main
from irad.models import build_classifier, save_classifier


def _run(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Run ``irad ARGS`` as from a shell: ``(exit code, stdout, stderr)``."""
    monkeypatch.setattr(sys, "argv", ["irad", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", x=x, y=rng.integers(0, 10, size=12))
    return tmp_path / "data.npz"


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_classifier(build_classifier("resnet20"), tmp_path / "r20")
    return tmp_path / "r20"


@pytest.fixture
def no_accuracy_run(monkeypatch):
    """Fail the test if the accuracy loop starts (the work an early check must prevent)."""
    import importlib

    def forbidden(*args, **kwargs):
        raise AssertionError("the work started before the settings and outputs were checked")

    modules = []
    for name in ("irad.measure", "irad.evaluate.accuracy"):  # the engine first: it binds
        try:
            modules.append(importlib.import_module(name))
        except ImportError:  # an irad without the engine module
            continue
    for module in modules:
        monkeypatch.setattr(module, "accuracy", forbidden)


# -- outputs are checked before the work; an OSError is one line -------------------------------


def test_an_unwritable_json_is_refused_before_the_work(
    monkeypatch, capsys, tmp_path, npz, weights, no_accuracy_run
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = _run(
        monkeypatch, capsys, "classify", "-w", weights, "-d", npz, "--json", blocker / "r.json"
    )
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --json")
    assert str(blocker) in lines[0] and "not a folder" in lines[0] and "choose" in lines[0]


def test_classify_writes_its_json_through_the_api(monkeypatch, capsys, tmp_path, npz, weights):
    out = tmp_path / "deep" / "r.json"
    code, stdout, err = _run(
        monkeypatch, capsys, "classify", "-w", weights, "-d", npz, "--json", out, "--no-progress"
    )
    assert code == 0, err
    record = json.loads(out.read_text())
    assert record["command"] == "classify" and record["total"] == 12
    assert "accuracy" in stdout and f"wrote {out}" in stdout


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/cache/x.bin"), "disk is full"),
        (PermissionError(errno.EACCES, "Permission denied", "/w/r20.safetensors"), "permissions"),
        (OSError(errno.EIO, "Input/output error", "/mnt/nfs/r20.json"), "check the path"),
    ],
)
def test_a_failed_file_operation_is_one_clear_line(
    monkeypatch, capsys, npz, weights, error, fix
) -> None:
    import irad.models

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(irad.models, "load_classifier", broken)
    code, _, err = _run(monkeypatch, capsys, "classify", "-w", weights, "-d", npz)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # no traceback
    assert lines[0].startswith(f"error: {error.filename}: {error.strerror}") and fix in lines[0]


def test_train_refuses_an_unwritable_run_folder_before_loading_data(
    monkeypatch, capsys, tmp_path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(
        monkeypatch, capsys, "train-classifier", "--dataset", tmp_path / "missing.npz",
        "--out", blocker / "run", "--device", "cpu",
    )  # fmt: skip
    assert code == 2 and "error: --out" in err and "missing.npz" not in err


# -- one --n rule: a number above the data set size is refused, with the size -----------------


def test_classify_refuses_n_above_the_data_set_size(
    monkeypatch, capsys, npz, weights, no_accuracy_run
) -> None:
    code, _, err = _run(monkeypatch, capsys, "classify", "-w", weights, "-d", npz, "--n", 50)
    assert code == 2
    assert "--n 50 is more than the 12 images" in err


def test_prepare_pairs_refuses_n_above_the_data_set_size(
    monkeypatch, capsys, tmp_path, npz, weights
) -> None:
    code, _, err = _run(
        monkeypatch, capsys, "prepare-pairs", "-w", weights, "-d", npz, "--n", 13,
        "--out", tmp_path / "pairs", "--no-progress",
    )  # fmt: skip
    assert code == 2 and "--n 13 is more than the 12 images" in err
    assert not (tmp_path / "pairs" / "manifest.json").exists()


def test_train_classifier_refuses_train_n_above_the_data_set_size(
    monkeypatch, capsys, tmp_path, npz
) -> None:
    code, _, err = _run(
        monkeypatch, capsys, "train-classifier", "--dataset", npz, "--train-n", 100,
        "--out", tmp_path / "run", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert code == 2 and "--train-n 100 is more than the 12 images" in err


def test_subset_sizes_cap_defaults_and_refuse_explicit_values() -> None:
    from irad.cli.options import subset_size
    from irad.errors import SettingError

    assert subset_size(None, 1000, 64, "--n", "pairs") is None  # the default covers them all
    assert subset_size(None, 10, 64, "--n", "pairs") == 10
    assert subset_size(0, 10, 64, "--n", "pairs") is None
    assert subset_size(64, None, 64, "--n", "pairs") == 64
    with pytest.raises(SettingError, match="--n 65 is more than the 64 pairs"):
        subset_size(65, None, 64, "--n", "pairs")


# -- one device parser --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["classify", "purify", "train-classifier"])
def test_every_command_parses_devices_the_same_way(
    monkeypatch, capsys, tmp_path, command, npz, weights
) -> None:
    (tmp_path / "in").mkdir()
    args = {
        "classify": ["-w", weights, "-d", npz],
        "purify": ["-d", "jpeg", "-i", tmp_path / "in", "-o", tmp_path / "o"],
        "train-classifier": ["--dataset", npz, "--out", tmp_path / "run"],
    }[command]
    code, _, err = _run(monkeypatch, capsys, command, *args, "--device", "gpu7")
    assert code == 2
    assert "error: device 'gpu7' is not a device name; use auto, cpu, cuda, cuda:N or mps" in err


def test_resolve_device() -> None:
    from irad.errors import ConfigError, InputError
    from irad.utils.env import resolve_device

    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available here; use cpu"):
            resolve_device("cuda:1")
        with pytest.raises(ConfigError):  # the trainer's callers catch ConfigError
            resolve_device("cuda")


# -- settings from the presets, flags mapped in one place ---------------------------------------


def test_stage_settings_come_from_the_preset_and_flags_override_them() -> None:
    from irad.models.implicit_presets import StageTraining, get_preset
    from irad.train import TrainConfig

    cpu = get_preset("cpu")
    assert isinstance(cpu.inr, StageTraining) and isinstance(cpu.samplenet, StageTraining)
    cfg = TrainConfig.from_options(cpu.inr.config_fields(), epochs=None, lr=None, out_dir="r")
    assert (cfg.epochs, cfg.lr, cfg.schedule, cfg.optimizer) == (10, 5e-4, "cosine", "adam")
    assert (cfg.batch_size, cfg.betas, cfg.weight_decay) == (128, (0.0, 0.9), 0.0)
    cfg = TrainConfig.from_options(cpu.samplenet.config_fields(), epochs=3, beta1=0.5)
    assert (cfg.epochs, cfg.batch_size, cfg.betas, cfg.schedule) == (3, 32, (0.5, 0.9), "constant")
    assert cpu.samplenet.train_n is None and cpu.inr.train_n is None  # every training pair
    assert cpu.pairs_n is None


def test_the_cli_holds_no_engine() -> None:
    import irad.cli.classify
    import irad.cli.purify
    import irad.cli.train

    source = "".join(
        Path(m.__file__).read_text() for m in (irad.cli.classify, irad.cli.purify, irad.cli.train)
    )
    for needle in ("getattr(p, f", "atomic_write", "def purify_folder", "def _device", "min(n,"):
        assert needle not in source, needle


def test_stage_commands_take_unset_flags_from_the_preset(
    monkeypatch, capsys, tmp_path, npz, weights
) -> None:
    pairs = tmp_path / "pairs"
    code, _, err = _run(
        monkeypatch, capsys, "prepare-pairs", "-w", weights, "-d", npz, "--n", 8, "--steps", 1,
        "--chunk", 4, "--batch-size", 4, "--out", pairs, "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    code, _, err = _run(
        monkeypatch, capsys, "train-inr", "--pairs", pairs, "--data-dir", tmp_path,
        "--epochs", 1, "--batch-size", 4, "--beta2", 0.99, "--max-steps-per-epoch", 1,
        "--eval-n", 0, "--out", tmp_path / "inr", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    config = json.loads(next(ln for ln in err.splitlines() if ln.startswith("config: "))[8:])
    # given: epochs, batch size, beta2; from the cpu preset: lr, schedule, beta1, Adam
    assert (config["epochs"], config["batch_size"], config["betas"]) == (1, 4, [0.0, 0.99])
    assert (config["lr"], config["schedule"], config["optimizer"]) == (5e-4, "cosine", "adam")
    assert config["weight_decay"] == 0.0 and config["out_dir"] == str(tmp_path / "inr")
    # every pair trains and none is held out: the evaluation would score training pairs
    assert "per-epoch evaluation scores training pairs" in err and "--eval-pairs" in err
    code, _, err = _run(
        monkeypatch, capsys, "train-inr", "--pairs", pairs, "--data-dir", tmp_path,
        "--train-n", 9, "--out", tmp_path / "inr2", "--device", "cpu",
    )  # fmt: skip
    assert code == 2 and "--train-n 9 is more than the 8 pairs" in err
