"""irad.checkpoint: one module that finds, reads, writes and loads every checkpoint."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import irad.checkpoint as ckpt_module
from irad.checkpoint import (
    TornCheckpoint,
    bundled_weights_dir,
    load_newest,
    load_state,
    read_torch_file,
    resolve,
    save_state,
    tensors_sha256,
)
from irad.defenses import IRAD, ImplicitReconstruction
from irad.errors import CheckpointError
from irad.models import build_classifier, load_classifier, save_classifier
from irad.models.edsr import EDSRConfig
from irad.models.liif import ImplicitConfig, ImplicitRepresentation
from irad.models.samplenet import SampleNetConfig
from irad.utils.io import sha256_file

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "irad"


class Kill(Exception):
    """Stands in for the process dying at that point."""


def tiny_irad() -> IRAD:
    torch.manual_seed(0)
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(1, 4), (8, 8)))
    irad = IRAD(rep, preset=None, samplenet_config=SampleNetConfig(hidden=(8, 8)), chunk_size=64)
    with torch.no_grad():
        irad.samplenet.imnet.last.weight.normal_(0, 0.01)
    return irad


def kill_at(monkeypatch: pytest.MonkeyPatch, step: int) -> list[str]:
    """Make the ``step``-th file operation of irad.checkpoint (0-based) die before it happens."""
    done: list[str] = []
    real_write, real_link = ckpt_module.atomic_write_bytes, ckpt_module._link_or_copy

    def count(name: str) -> None:
        if len(done) == step:
            raise Kill(name)
        done.append(name)

    def write(path, data):
        count(f"write {Path(path).name}")
        return real_write(path, data)

    def link(src, dst):
        count(f"link {Path(dst).name}")
        return real_link(src, dst)

    monkeypatch.setattr(ckpt_module, "atomic_write_bytes", write)
    monkeypatch.setattr(ckpt_module, "_link_or_copy", link)
    return done


# -- the pair and its commit ------------------------------------------------------------------


def test_a_kill_between_the_two_writes_leaves_a_pair_that_is_refused(tmp_path, monkeypatch):
    prefix = tmp_path / "m"
    save_state(prefix, {"w": torch.zeros(3)}, {"step": 1})
    kill_at(monkeypatch, 1)  # the new weights are written, the new JSON is not
    with pytest.raises(Kill):
        save_state(prefix, {"w": torch.ones(3)}, {"step": 2})
    monkeypatch.undo()
    with pytest.raises(TornCheckpoint, match=r"not the weights file that .*m\.json was saved with"):
        load_state(prefix)
    # the same through a model loader: a clear refusal, never the new weights with the old JSON
    clf = build_classifier("resnet20")
    save_classifier(clf, tmp_path / "clf")
    kill_at(monkeypatch, 1)
    with pytest.raises(Kill):
        save_classifier(build_classifier("resnet20"), tmp_path / "clf")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="killed between writing the two files"):
        load_classifier(tmp_path / "clf")


def test_weights_from_another_save_or_a_missing_half_are_refused(tmp_path):
    save_state(tmp_path / "a", {"w": torch.zeros(2)}, {"n": 1})
    save_state(tmp_path / "b", {"w": torch.ones(2)}, {"n": 2})
    shutil.copyfile(tmp_path / "b.safetensors", tmp_path / "a.safetensors")  # weights new
    with pytest.raises(TornCheckpoint, match="another sha256"):
        load_state(tmp_path / "a")
    (tmp_path / "b.json").unlink()
    with pytest.raises(CheckpointError, match=r"config not found: .*b\.json"):
        load_state(tmp_path / "b")
    save_state(tmp_path / "c", {"w": torch.ones(2)}, {"n": 3})
    (tmp_path / "c.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"weights not found: .*c\.safetensors"):
        load_state(tmp_path / "c")


def test_keeping_the_previous_pair_survives_a_kill_at_every_step(tmp_path, monkeypatch):
    prefix, previous = tmp_path / "last", tmp_path / "previous"
    save_state(prefix, {"w": torch.full((2,), 0.0)}, {"step": 0})
    save_state(prefix, {"w": torch.full((2,), 1.0)}, {"step": 1}, keep=previous)
    steps = kill_at(monkeypatch, 10**6)
    save_state(tmp_path / "probe", {"w": torch.zeros(1)}, {})
    save_state(tmp_path / "probe", {"w": torch.zeros(1)}, {}, keep=tmp_path / "probe-old")
    n_steps = len(steps) - 2  # the operations of one save with keep
    monkeypatch.undo()
    assert n_steps == 4, steps  # link weights, link JSON, write weights, write JSON
    for step in range(n_steps):
        kill_at(monkeypatch, step)
        with pytest.raises(Kill):
            save_state(prefix, {"w": torch.full((2,), 2.0)}, {"step": 2}, keep=previous)
        monkeypatch.undo()
        found, tensors, config, _ = load_newest([prefix, previous])
        assert config["step"] in (1, 2), (step, found)  # the newest committed state, never lost
        assert float(tensors["w"][0]) == config["step"]
        save_state(prefix, {"w": torch.full((2,), 1.0)}, {"step": 1}, keep=previous)


def test_editing_the_json_by_hand_keeps_the_pair_loadable(tmp_path):
    irad = tiny_irad()
    irad.save_pretrained(tmp_path)
    path = tmp_path / "model.json"
    saved = json.loads(path.read_text())
    saved["metadata"]["note"] = "checked by hand"
    saved["config"]["chunk_size"] = 16
    path.write_text(json.dumps(saved))
    loaded = IRAD.from_pretrained(tmp_path)
    assert loaded.chunk_size == 16 and loaded.checkpoint_metadata["note"] == "checked by hand"


# -- the format: one naming scheme, old names and flat files still load -------------------------


def test_every_model_writes_irad_kind_and_old_checkpoints_load(tmp_path):
    irad = tiny_irad()
    irad.save_pretrained(tmp_path / "irad")
    irad.reconstruction().save_pretrained(tmp_path / "recons")
    save_classifier(build_classifier("resnet20"), tmp_path / "clf" / "model")
    formats = {
        json.loads((tmp_path / d / "model.json").read_text())["format"]
        for d in ("irad", "recons", "clf")
    }
    assert formats == {"irad.irad", "irad.implicit-representation", "irad.classifier"}

    # the bundled files are written by the current irad and carry their provenance
    bundled = json.loads((bundled_weights_dir() / "classifier-cifar10.json").read_text())
    assert bundled["format"] == "irad.classifier" and "provenance" in bundled["metadata"]
    clf = load_classifier("cifar10")
    assert clf.checkpoint_metadata["provenance"]["trained_by"].startswith("irad")
    assert IRAD.from_pretrained("cifar10").checkpoint_metadata["training"]["objective"]

    # a classifier saved by an earlier irad: flat, old format name, metadata beside the config
    net = build_classifier("resnet20", num_classes=7)
    flat = {"format": "irad-classifier", "format_version": 1, "epochs": 3, **net.config}
    ckpt_module.save_state(tmp_path / "old", net.net.state_dict(), flat)
    old = load_classifier(tmp_path / "old")
    assert old.num_classes == 7 and old.checkpoint_metadata == {"epochs": 3}


def test_the_bundled_provenance_matches_the_weights_and_bundling_keeps_it_so(tmp_path):
    for stem in ("irad-cifar10", "classifier-cifar10"):
        tensors, config = load_state(bundled_weights_dir() / stem)
        prov = config["metadata"]["provenance"]
        assert prov["tensors_sha256"] == tensors_sha256(tensors)
        assert prov["trained_by"] == "irad (this project)" and prov["command"].strip()

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import bundle_weights
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    clf = build_classifier("resnet20")
    save_classifier(clf, tmp_path / "run" / "model", metadata={"epochs": 1})
    out = bundle_weights.bundle(
        tmp_path / "run" / "model", "classifier-test", {"command": "irad ..."}, dest=tmp_path
    )
    loaded = load_classifier(out)
    prov = loaded.checkpoint_metadata["provenance"]
    assert prov["command"] == "irad ..." and loaded.checkpoint_metadata["epochs"] == 1
    assert prov["tensors_sha256"] == tensors_sha256(loaded.net.state_dict())
    assert prov["source_sha256"] == sha256_file(tmp_path / "run" / "model.safetensors")


# -- every missing or ill-typed config field names the file, the field and the fix -------------


def _edit(path: Path, edit) -> None:
    saved = json.loads(path.read_text())
    edit(saved)
    path.write_text(json.dumps(saved))


IRAD_FIELD_CASES = {
    "no representation": (
        lambda c: c["config"].pop("representation"),
        r"field config\.representation is missing",
    ),
    "representation a list": (
        lambda c: c["config"].__setitem__("representation", [1]),
        r"field config\.representation must be an object, got a list",
    ),
    "n_feats a string": (
        lambda c: c["config"]["representation"]["encoder"].__setitem__("n_feats", "4"),
        r"field config\.representation\.encoder\.n_feats must be an integer, got a string",
    ),
    "decoder widths not integers": (
        lambda c: c["config"]["representation"].__setitem__("decoder_hidden", [8, "x"]),
        r"decoder_hidden must be a list of integers",
    ),
    "no samplenet": (
        lambda c: c["config"].pop("samplenet"),
        r"field config\.samplenet is missing",
    ),
    "unknown samplenet setting": (
        lambda c: c["config"]["samplenet"].__setitem__("hiden", [8]),
        r"field config\.samplenet\.hiden is not a SampleNet setting",
    ),
    "chunk size a float": (
        lambda c: c["config"].__setitem__("chunk_size", 1.5),
        r"field config\.chunk_size must be an integer or null, got a number",
    ),
    "negative chunk size": (
        lambda c: c["config"].__setitem__("chunk_size", -1),
        r"does not build a IRAD .*chunk_size must be a positive",
    ),
    "config not an object": (
        lambda c: c.__setitem__("config", "irad"),
        r"field config must be an object",
    ),
}


@pytest.mark.parametrize("case", list(IRAD_FIELD_CASES))
def test_a_damaged_irad_config_names_the_file_the_field_and_the_fix(tmp_path, case):
    edit, message = IRAD_FIELD_CASES[case]
    tiny_irad().save_pretrained(tmp_path)
    _edit(tmp_path / "model.json", edit)
    with pytest.raises(CheckpointError, match=message) as err:
        IRAD.from_pretrained(tmp_path)
    text = str(err.value)
    assert str(tmp_path / "model.json") in text
    assert "save_pretrained" in text  # the fix


def test_a_flat_irad_json_without_representation_is_a_clear_error(tmp_path):
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(bundled_weights_dir() / f"irad-cifar10{suffix}", tmp_path / f"m{suffix}")

    def flatten_then_drop_representation(saved: dict) -> None:
        # the layout of irad before config/metadata: the config's fields at the top level
        config = saved.pop("config")
        saved.pop("metadata", None)
        saved.update({k: v for k, v in config.items() if k != "representation"})

    _edit(tmp_path / "m.json", flatten_then_drop_representation)
    for loader in (IRAD, ImplicitReconstruction):
        with pytest.raises(CheckpointError, match=r"m\.json: field representation is missing"):
            loader.from_pretrained(tmp_path / "m")


CLASSIFIER_FIELD_CASES = {
    "no arch": (lambda c: c["config"].pop("arch"), r"field config\.arch is missing"),
    "num_classes a string": (
        lambda c: c["config"].__setitem__("num_classes", "10"),
        r"field config\.num_classes must be an integer, got a string",
    ),
    "kwargs a list": (
        lambda c: c["config"].__setitem__("kwargs", []),
        r"field config\.kwargs must be an object",
    ),
    "mean of strings": (
        lambda c: c["config"].__setitem__("mean", ["a", "b", "c"]),
        r"field config\.mean must be a list of numbers",
    ),
    "unknown architecture": (
        lambda c: c["config"].__setitem__("arch", "resnet-9000"),
        r"does not build a Classifier .*resnet-9000",
    ),
}


@pytest.mark.parametrize("case", list(CLASSIFIER_FIELD_CASES))
def test_a_damaged_classifier_config_names_the_file_and_the_field(tmp_path, case):
    edit, message = CLASSIFIER_FIELD_CASES[case]
    save_classifier(build_classifier("resnet20"), tmp_path / "m")
    _edit(tmp_path / "m.json", edit)
    with pytest.raises(CheckpointError, match=message) as err:
        load_classifier(tmp_path / "m")
    assert str(tmp_path / "m.json") in str(err.value)


# -- finding a checkpoint ------------------------------------------------------------------------


def test_resolve_finds_folders_prefixes_files_and_bundled_names(tmp_path):
    tiny_irad().save_pretrained(tmp_path / "run")
    prefix = tmp_path / "run" / "model"
    for spec in (tmp_path / "run", prefix, f"{prefix}.safetensors", f"{prefix}.json"):
        assert resolve(spec, "irad") == prefix
    assert resolve("cifar10", "irad") == bundled_weights_dir() / "irad-cifar10"
    assert resolve("cifar10", "x", bundled=("recons", "irad")).name == "irad-cifar10"
    torch.save({"w": torch.zeros(1)}, tmp_path / "net.th")
    assert resolve(tmp_path / "net.th", "classifier", torch_files=True) == tmp_path / "net.th"
    with pytest.raises(CheckpointError, match="is not an irad checkpoint"):
        resolve(tmp_path / "net.th", "irad")
    with pytest.raises(CheckpointError, match=r"not found: cifar100 .*bundled: cifar10\)"):
        resolve("cifar100", "irad")
    with pytest.raises(CheckpointError, match=r"folder without model\.safetensors"):
        resolve(tmp_path, "irad")


def test_checkpoint_mechanics_exist_once():
    """One torch.load, one resolver, one mismatch message, no other checkpoint module."""
    sources = {p: p.read_text() for p in SRC.rglob("*.py")}

    def calls_torch_load(source: str) -> bool:
        return any(
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "load"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
            for node in ast.walk(ast.parse(source))
        )

    loads = [p for p, s in sources.items() if calls_torch_load(s)]
    assert loads == [SRC / "checkpoint.py"]
    mismatch = [p for p, s in sources.items() if "missing keys" in s or "unexpected keys" in s]
    assert mismatch == [SRC / "checkpoint.py"]
    for name in ("def resolve_checkpoint", "def _resolve(", "def _torch_load_problem"):
        assert not [p for p, s in sources.items() if name in s], name
    assert not (SRC / "utils" / "checkpoint.py").exists()
    assert not (SRC / "defenses" / "implicit.py").exists()


# -- reading other people's PyTorch files ------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _unsafe_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "module": tmp_path / "module.pt",
        "object": tmp_path / "object.pt",
        "reduce": tmp_path / "reduce.pt",
        "plain pickle": tmp_path / "plain.pt",
        "garbage": tmp_path / "garbage.pt",
        "truncated": tmp_path / "truncated.pt",
    }
    torch.save(nn.Linear(2, 2), files["module"])
    torch.save({"state_dict": {}, "args": Path("x")}, files["object"])
    files["reduce"].write_bytes(pickle.dumps(_Evil()))
    files["plain pickle"].write_bytes(pickle.dumps({"a": 1}))
    files["garbage"].write_bytes(b"not a checkpoint" * 64)
    torch.save({"w": torch.zeros(10_000)}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    return files


def test_unsafe_files_are_refused_without_suggesting_unsafe_loading(tmp_path):
    from irad.defenses.official import load_official, load_official_reconstruction

    first: dict[str, str] = {}
    for name, path in _unsafe_files(tmp_path).items():
        messages = []
        for load in (
            lambda p: read_torch_file(p, "checkpoint"),
            lambda p: load_classifier(p, arch="resnet20"),
            load_official_reconstruction,
            lambda p: load_official(p, p),
        ):
            with pytest.raises(CheckpointError) as err:
                load(path)
            messages.append(str(err.value))
        for text in messages:
            assert "weights_only=False" not in text and "False" not in text, (name, text)
            assert str(path) in text
            assert "never unpickles" in text or "truncated or corrupt" in text, (name, text)
        first[name] = messages[0]
    for name in ("module", "object", "reduce", "plain pickle"):
        assert "irad never unpickles objects" in first[name], first[name]
    assert "pathlib" in first["object"] and "truncated or corrupt" in first["truncated"]


def test_the_module_refusal_says_what_was_found_and_how_to_convert(tmp_path):
    path = _unsafe_files(tmp_path)["module"]
    with pytest.raises(CheckpointError) as err:
        read_torch_file(path, "SampleNet.pt", resave="torch.save(net.state_dict(), 'x.pt')")
    text = str(err.value)
    assert "torch.nn.modules.linear.Linear" in text
    assert "someone who trusts the file" in text and "torch.save(net.state_dict(), 'x.pt')" in text


def test_torch_older_than_2_6_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "resnet20-0000.th"
    torch.save({"state_dict": build_classifier("resnet20").net.state_dict()}, path)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    with pytest.raises(CheckpointError, match=r"needs torch >= 2\.6, but this is torch 2\.5\.1"):
        load_classifier(path)
    with pytest.raises(CheckpointError, match="CVE-2025-32434"):
        read_torch_file(path)
    monkeypatch.setattr(torch, "__version__", "2.6.0+cpu")
    assert load_classifier(path).config["arch"] == "resnet20"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_setup_refuses_a_preinstalled_torch_older_than_the_requirement():
    requirement = re.search(r'"torch>=([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    assert requirement and requirement.group(1) == "2.6"
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert f'MIN_TORCH="{requirement.group(1)}"' in script

    def check(version: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-c", f'source scripts/setup.sh && require_recent_torch "{version}" .venv'],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    old = check("2.5.1+cu121")
    assert old.returncode != 0
    assert "found torch 2.5.1+cu121 in .venv" in old.stderr and "torch >= 2.6" in old.stderr
    assert "pip install --upgrade 'torch>=2.6'" in old.stderr and "CVE-2025-32434" in old.stderr
    for ok in ("2.6.0", "2.13.0+cpu", "3.0.0"):
        assert check(ok).returncode == 0, ok
