"""Classifiers: registry, forward shapes, checkpoints (irad and akamaster), errors, accuracy."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from irad.errors import CheckpointError, ConfigError, InputError
from irad.models import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CLASSIFIERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CifarResNet,
    Classifier,
    as_classifier,
    build_classifier,
    infer_arch,
    load_classifier,
    model_fingerprint,
    save_classifier,
)

EXPECTED_NAMES = {
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet18",
    "resnet34",
    "wrn-28-10",
    "wrn-70-16",
    "vgg16-bn",
}
# Published parameter counts: akamaster's README / SOURCE.md for the CIFAR ResNets, the
# WRN paper and RobustBench for the wide ones.
PUBLISHED_PARAMS = {
    "resnet20": 269_722,
    "resnet56": 853_018,
    "wrn-28-10": 36_479_194,
    "wrn-70-16": 266_796_506,
}


@pytest.fixture(autouse=True)
def _few_threads():
    # Two shared cores: keep each test from grabbing more than its share.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _trained_like(clf: Classifier, seed: int = 0) -> Classifier:
    """Give BatchNorm non-trivial running statistics, as a trained network has."""
    torch.manual_seed(seed)
    clf.train()
    with torch.no_grad():
        clf(torch.rand(8, 3, 32, 32))
    return clf.eval()


def _akamaster_file(path: Path, depth: int = 20, seed: int = 0) -> nn.Module:
    """Write a state dict exactly as akamaster's .th files hold it; return the network."""
    torch.manual_seed(seed)
    net = CifarResNet(depth)
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, 32, 32))
    net.eval()
    # DataParallel prefix; no BatchNorm step counters (saved with PyTorch < 0.4.1).
    state = {
        "module." + k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k
    }
    torch.save({"state_dict": state, "best_prec1": 91.0}, path)
    return net


# --- registry and forward shapes ---------------------------------------------------------------


def test_registry_has_the_agreed_names():
    assert set(CLASSIFIERS.names()) == EXPECTED_NAMES


@pytest.mark.parametrize(
    "name", sorted(EXPECTED_NAMES - {"wrn-70-16"}), ids=lambda n: n.replace("-", "_")
)
def test_forward_shape_and_config(name):
    clf = build_classifier(name).eval()
    with torch.no_grad():
        logits = clf(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    assert clf.config["arch"] == name
    assert clf.config["num_classes"] == 10
    assert clf.config["mean"] == list(CIFAR10_MEAN)
    assert clf.config["std"] == list(CIFAR10_STD)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "vgg16-bn"])
def test_num_classes_sets_the_head(name):
    clf = build_classifier(name, num_classes=100).eval()
    with torch.no_grad():
        assert clf(torch.rand(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_counts_match_the_published_ones(name):
    # On the meta device nothing is allocated, so even WRN-70-16 is instant.
    with torch.device("meta"):
        net = CLASSIFIERS.build(name, num_classes=10)
        out = net(torch.empty(1, 3, 32, 32))
    assert sum(p.numel() for p in net.parameters()) == PUBLISHED_PARAMS[name]
    assert out.shape == (1, 10)


@pytest.mark.slow
def test_wrn_70_16_forward():
    clf = build_classifier("wrn-70-16").eval()
    with torch.no_grad():
        assert clf(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_option_a_shortcut_has_no_parameters():
    net = CifarResNet(20)
    names = [k for k, _ in net.named_parameters()]
    assert not any("shortcut" in k for k in names)


def test_classifier_normalises_inside():
    clf = _trained_like(build_classifier("resnet20"))
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(clf(x), clf.net((x - mean) / std))


def test_build_arguments_are_recorded_and_checked():
    assert build_classifier("wrn-28-10", dropout=0.3).config["kwargs"] == {"dropout": 0.3}
    assert build_classifier("WRN_28_10").config["arch"] == "wrn-28-10"
    with pytest.raises(ConfigError, match="dropout"):
        build_classifier("resnet20", dropout=0.3)
    with pytest.raises(ConfigError, match="num_classes"):
        build_classifier("resnet20", num_classes=0)
    with pytest.raises(ConfigError, match="mean and std"):
        build_classifier("resnet20", mean=CIFAR10_MEAN, std=None)
    with pytest.raises(ConfigError, match="3"):
        build_classifier("resnet20", mean=(0.5,), std=(0.5,))


# --- irad checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    clf = _trained_like(
        build_classifier("resnet20", num_classes=100, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    )
    path = save_classifier(clf, tmp_path / "model", metadata={"epochs": 3, "seed": 7})
    assert path == tmp_path / "model.safetensors"
    saved = json.loads((tmp_path / "model.json").read_text())
    assert saved["format"] == "irad.classifier"
    assert saved["config"]["arch"] == "resnet20" and saved["config"]["num_classes"] == 100
    assert saved["metadata"] == {"epochs": 3, "seed": 7}

    x = torch.rand(4, 3, 32, 32)
    for spec in (tmp_path / "model", path, tmp_path / "model.json", str(tmp_path / "model")):
        loaded = load_classifier(spec)
        assert not loaded.training
        assert loaded.config == clf.config
        with torch.no_grad():
            assert torch.equal(loaded(x), clf(x))
        assert model_fingerprint(loaded) == model_fingerprint(clf)


def test_trainer_output_folder_loads(tmp_path):
    clf = build_classifier("resnet20")
    save_classifier(clf, tmp_path / "run" / "model")
    assert load_classifier(tmp_path / "run").config["arch"] == "resnet20"


def test_save_needs_a_registered_architecture(tmp_path):
    custom = as_classifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)))
    with pytest.raises(ConfigError, match="register"):
        save_classifier(custom, tmp_path / "m")
    with pytest.raises(InputError, match="Classifier"):
        save_classifier(nn.Linear(2, 2), tmp_path / "m")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="arch"):
        save_classifier(build_classifier("resnet20"), tmp_path / "m", metadata={"arch": "x"})


# --- akamaster checkpoints -----------------------------------------------------------------------


def test_akamaster_file_loads_with_imagenet_normalisation(tmp_path):
    path = tmp_path / "resnet20-0123abcd.th"
    net = _akamaster_file(path)
    clf = load_classifier(path)
    assert clf.config["arch"] == "resnet20"
    assert clf.config["mean"] == list(IMAGENET_MEAN)
    assert clf.config["std"] == list(IMAGENET_STD)
    x = torch.rand(4, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(clf(x), net((x - mean) / std))


def test_akamaster_file_with_explicit_arch_and_resave(tmp_path):
    path = tmp_path / "best.th"
    _akamaster_file(path, depth=32)
    with pytest.raises(CheckpointError, match="arch"):
        load_classifier(path)
    clf = load_classifier(path, arch="resnet32")
    # Converted once, it is an ordinary irad checkpoint that keeps its normalisation.
    save_classifier(clf, tmp_path / "converted")
    again = load_classifier(tmp_path / "converted")
    assert again.config["mean"] == list(IMAGENET_MEAN)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), clf(x))


def test_any_other_file_is_read_as_a_pytorch_file(tmp_path):
    path = tmp_path / "resnet20_seed3.weights"
    _akamaster_file(path)
    assert load_classifier(path).config["arch"] == "resnet20"


def test_infer_arch_from_file_names():
    assert infer_arch("weights/resnet56-4bfd9763.th") == "resnet56"
    assert infer_arch("wrn-28-10_seed0.pt") == "wrn-28-10"
    assert infer_arch("VGG16_bn.pth") == "vgg16-bn"
    assert infer_arch("model_best.pth") is None


# --- errors --------------------------------------------------------------------------------------


def test_unknown_model_name_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="resnet20") as err:
        build_classifier("resnet21")
    assert "Known" in str(err.value) and "wrn-28-10" in str(err.value)
    path = tmp_path / "weights.th"
    _akamaster_file(path)
    with pytest.raises(ConfigError, match="unknown classifier"):
        load_classifier(path, arch="resnet-9000")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "resnet20-missing.th")
    with pytest.raises(CheckpointError, match="not found"):
        load_classifier(tmp_path / "nothing_here")
    with pytest.raises(CheckpointError, match="architecture name"):
        load_classifier("resnet56")
    save_classifier(build_classifier("resnet20"), tmp_path / "m")
    (tmp_path / "m.json").unlink()
    with pytest.raises(CheckpointError, match="config not found"):
        load_classifier(tmp_path / "m")


def test_corrupt_files(tmp_path):
    # Random bytes fail the safe loader in many ways (CI once drew an IndexError from deep
    # inside it): every one must become the same clear error. Seeded, so a failure reproduces.
    rng = np.random.default_rng(0)
    garbage = tmp_path / "resnet20-garbage.th"
    for i in range(300):
        head = (b"", b"\x80\x02", b"PK\x03\x04")[i % 3]  # raw, pickle, zip
        garbage.write_bytes(head + rng.bytes(int(rng.integers(1, 2000))))
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
            load_classifier(garbage)

    truncated = tmp_path / "resnet20-truncated.th"
    _akamaster_file(truncated)
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_classifier(truncated)

    pickled_object = tmp_path / "resnet20-object.th"
    torch.save({"state_dict": {}, "args": Path("x")}, pickled_object)
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_classifier(pickled_object)

    not_a_state_dict = tmp_path / "resnet20-list.th"
    torch.save([1, 2, 3], not_a_state_dict)
    with pytest.raises(CheckpointError, match="no state dict"):
        load_classifier(not_a_state_dict)

    save_classifier(build_classifier("resnet20"), tmp_path / "m")
    (tmp_path / "m.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_classifier(tmp_path / "m")

    save_classifier(build_classifier("resnet20"), tmp_path / "n")
    (tmp_path / "n.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        load_classifier(tmp_path / "n")


def test_checkpoint_for_another_architecture(tmp_path):
    aka = tmp_path / "weights.th"
    _akamaster_file(aka, depth=20)
    with pytest.raises(CheckpointError, match=r"missing keys: layer1\.3"):
        load_classifier(aka, arch="resnet56")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_classifier(aka, arch="wrn-28-10")
    named = tmp_path / "resnet20-0123abcd.th"
    _akamaster_file(named, depth=20)
    with pytest.raises(CheckpointError, match="file name suggests resnet20, not resnet44"):
        load_classifier(named, arch="resnet44")

    save_classifier(build_classifier("resnet20"), tmp_path / "r20")
    with pytest.raises(CheckpointError, match="holds a resnet20, not a resnet56"):
        load_classifier(tmp_path / "r20", arch="resnet56")
    # A config edited to claim another architecture: the tensors do not fit it.
    cfg = json.loads((tmp_path / "r20.json").read_text())
    cfg["config"]["arch"] = "resnet32"
    (tmp_path / "r20.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_classifier(tmp_path / "r20")


def test_wrong_num_classes(tmp_path):
    save_classifier(build_classifier("resnet20"), tmp_path / "r20")
    with pytest.raises(CheckpointError, match=r"has 10 classes.*num_classes=100"):
        load_classifier(tmp_path / "r20", num_classes=100)
    aka = tmp_path / "resnet20-x.th"
    _akamaster_file(aka)
    with pytest.raises(CheckpointError, match=r"has 10 classes.*num_classes=100"):
        load_classifier(aka, num_classes=100)
    assert load_classifier(aka).num_classes == 10


@pytest.mark.parametrize(
    ("x", "problem"),
    [
        (torch.rand(3, 32, 32), "unsqueeze"),
        (torch.rand(2, 32, 32, 3), "NHWC"),
        (torch.rand(2, 1, 32, 32), "grayscale"),
        ((torch.rand(2, 3, 32, 32) * 255).to(torch.uint8), "uint8"),
        (torch.rand(2, 3, 32, 32) * 255, "divide by 255"),
        (torch.rand(2, 3, 32, 32) * 2 - 1, r"\[0, 1\]"),
        (torch.full((2, 3, 32, 32), float("nan")), "NaN"),
        (np.zeros((2, 3, 32, 32), dtype=np.float32), "torch.Tensor"),
    ],
    ids=["no-batch", "nhwc", "gray", "uint8", "0-255", "normalised", "nan", "numpy"],
)
def test_bad_input_to_a_classifier(x, problem):
    clf = build_classifier("resnet20").eval()
    with pytest.raises(InputError, match=problem):
        clf(x)


# --- fingerprints --------------------------------------------------------------------------------


def test_model_fingerprint_follows_the_weights():
    clf = build_classifier("resnet20")
    twin = copy.deepcopy(clf)
    assert model_fingerprint(clf) == model_fingerprint(twin)
    assert len(model_fingerprint(clf)) == 64
    with torch.no_grad():
        twin.net.linear.bias[0] += 1e-3
    assert model_fingerprint(clf) != model_fingerprint(twin)
    # The normalisation is part of the model.
    other = build_classifier("resnet20", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    other.net.load_state_dict(clf.net.state_dict())
    assert model_fingerprint(other) != model_fingerprint(clf)
    assert model_fingerprint(other.net) == model_fingerprint(clf.net)


# --- accuracy and `irad classify` ----------------------------------------------------------------


def _npz(path: Path, n: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    np.savez(path, x=x, y=y)
    return path


def _direct_correct(clf: Classifier, x_uint8: np.ndarray, y: np.ndarray) -> int:
    """Count correct predictions with nothing but numpy and the network."""
    x = torch.from_numpy(x_uint8).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        pred = clf.eval()(x).argmax(1).numpy()
    return int((pred == y).sum())


def _cli():
    # A group of its own, so the test does not depend on which other commands exist.
    import typer

    from irad.cli import classify

    app = typer.Typer()
    app.callback()(lambda: None)
    classify.register(app)
    return app


def test_accuracy_counts_match_a_direct_computation(tmp_path):
    from irad.data import load_dataset
    from irad.evaluate.accuracy import accuracy

    data_path = _npz(tmp_path / "data.npz", n=24)
    clf = _trained_like(build_classifier("resnet20"))
    clf.train()  # accuracy must switch to eval and restore the mode afterwards
    result = accuracy(clf, load_dataset(data_path), batch_size=10, progress=False)
    assert clf.training
    raw = np.load(data_path)
    assert result.total == 24
    assert result.correct == _direct_correct(clf, raw["x"], raw["y"])
    assert result.accuracy == pytest.approx(result.correct / 24)
    assert result.percent == pytest.approx(100 * result.accuracy)
    assert result.seconds > 0 and result.images_per_second > 0


def test_classify_command_summary_and_json(tmp_path):
    from typer.testing import CliRunner

    data_path = _npz(tmp_path / "data.npz", n=30)
    clf = _trained_like(build_classifier("resnet20"))
    save_classifier(clf, tmp_path / "model")
    out = tmp_path / "result.json"
    args = ["classify", "-w", str(tmp_path / "model"), "-d", str(data_path)]
    args += ["--n", "20", "--batch-size", "8", "--threads", "1", "--json", str(out)]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    raw = np.load(data_path)
    correct = _direct_correct(clf, raw["x"][:20], raw["y"][:20])
    assert record["correct"] == correct and record["total"] == 20
    assert record["model"]["arch"] == "resnet20"
    assert record["model_fingerprint"] == model_fingerprint(clf)
    assert f"({correct}/20)" in result.output and "images/s" in result.output


def test_classify_command_errors(tmp_path):
    from typer.testing import CliRunner

    data_path = _npz(tmp_path / "data.npz", n=8)
    save_classifier(build_classifier("resnet20", num_classes=5), tmp_path / "five")
    runner = CliRunner()
    base = ["classify", "-d", str(data_path), "--no-progress"]

    result = runner.invoke(_cli(), [*base, "-w", str(tmp_path / "missing.th")])
    assert isinstance(result.exception, CheckpointError)
    result = runner.invoke(_cli(), [*base, "-w", str(tmp_path / "five"), "-m", "resnet-21"])
    assert isinstance(result.exception, ConfigError)
    result = runner.invoke(_cli(), [*base, "-w", str(tmp_path / "five")])
    assert isinstance(result.exception, InputError)
    assert "5 classes" in str(result.exception)
    result = runner.invoke(_cli(), [*base, "-w", str(tmp_path / "five"), "--seed", "1"])
    assert result.exit_code == 2 and "--n" in result.output
    result = runner.invoke(_cli(), [*base, "-w", str(tmp_path / "five"), "--device", "nope"])
    assert isinstance(result.exception, InputError)


def _local_cifar() -> tuple[Path, Path]:
    """The local CIFAR-10 test set and weights folder, or skip."""
    data = os.environ.get("IRAD_DATA")
    if not data:
        pytest.skip("IRAD_DATA is not set (point it at a folder holding CIFAR-10's test.npz)")
    test_npz = Path(data) / "test.npz"
    if not test_npz.is_file():
        test_npz = Path(data) / "cifar10" / "test.npz"
    weights = Path(os.environ.get("IRAD_WEIGHTS", test_npz.parent.parent / "weights"))
    weights = weights / "resnet20-12fca82f.th"
    if not test_npz.is_file() or not weights.is_file():
        pytest.skip(f"no local CIFAR-10 test set and ResNet-20 weights under {data}")
    return test_npz, weights


@pytest.mark.data
def test_pretrained_resnet20_on_500_test_images_matches_a_direct_computation():
    from irad.data import load_dataset
    from irad.evaluate.accuracy import accuracy

    test_npz, weights = _local_cifar()
    clf = load_classifier(weights)
    result = accuracy(clf, load_dataset(test_npz).subset(500), batch_size=250, progress=False)
    raw = np.load(test_npz)
    # Direct: the published recipe, ImageNet statistics applied by hand to the bare network.
    x = torch.from_numpy(raw["x"][:500]).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = clf.net((x - mean) / std).argmax(1).numpy()
    assert result.total == 500
    assert result.correct == int((pred == raw["y"][:500]).sum())
    # A broken loader lands near 10 %; the published model is ~92 % on the full set.
    assert result.accuracy > 0.85


def test_load_overrides_the_saved_normalisation(tmp_path):
    clf = build_classifier("resnet20", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    save_classifier(clf, tmp_path / "m")
    assert load_classifier(tmp_path / "m").config["mean"] == [0.5, 0.5, 0.5]
    other = load_classifier(tmp_path / "m", mean=(0.1, 0.2, 0.3), std=(1.0, 1.0, 1.0))
    assert other.config["mean"] == [0.1, 0.2, 0.3] and other.config["std"] == [1.0, 1.0, 1.0]
    assert torch.equal(other.normalize.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_a_classifier_takes_any_float_dtype_like_a_defense(dtype):
    from irad.defenses import DefendedClassifier, build_defense

    clf = build_classifier("resnet20").eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = clf(x.to(dtype))
        assert logits.dtype == dtype
        assert torch.equal(logits, clf(x.to(dtype).float()).to(dtype))
        # the deployed model: a learned defense in front, any input dtype
        model = DefendedClassifier(build_defense("irad"), clf)
        assert model(x.to(dtype)).dtype == dtype
