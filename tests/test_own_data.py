"""Your own data (issue 14): an image folder works in every command, subsets are the same
everywhere, pairs load from any directory, classifiers meet only data of their classes, and
nothing is fixed to CIFAR-10. One section per problem of the issue; all data is made here."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irad.cli import main
from irad.data import ImageDataset, ImageFolderDataset, load_dataset
from irad.errors import ConfigError, DataError, InputError
from irad.models import build_classifier, load_classifier, save_classifier

CLASSES = ("cat", "dog", "fox")


def make_folder(root: Path, classes=CLASSES, per_class: int = 6, size: int = 16) -> Path:
    """``root/<class>/NNN.png``: a tint per class plus noise, sorted by class like a real one."""
    rng = np.random.default_rng(len(classes) * 100 + per_class)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        tint = np.array([60 + 60 * (k % 3), 60 + 40 * (k % 2), 200 - 50 * (k % 4)])
        for i in range(per_class):
            noise = rng.normal(0, 30, (size, size, 3))
            pixels = np.clip(tint + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")
    return root


def run(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Run ``irad ARGS`` as from a shell: ``(exit code, stdout, stderr)``."""
    monkeypatch.setattr(sys, "argv", ["irad", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def classifier(path: Path, num_classes: int = 3, classes: tuple[str, ...] = ()) -> Path:
    """A saved ResNet-20 of ``num_classes`` outputs, with class names when ``classes``."""
    torch.manual_seed(0)
    named = {"classes": list(classes)} if classes else {}
    save_classifier(build_classifier("resnet20", len(classes) or num_classes, **named), path)
    return path


QUICK_PAIRS = ("--steps", 1, "--chunk", 8, "--batch-size", 8, "--no-progress", "--device", "cpu")


# -- 1. every --dataset takes an image folder; a command converts one to .npz -----------------


def test_prepare_pairs_takes_an_image_folder(monkeypatch, capsys, tmp_path) -> None:
    from irad.train.pairs import PairDataset

    folder = make_folder(tmp_path / "train")
    weights = classifier(tmp_path / "clf")
    out = tmp_path / "pairs"
    code, _, err = run(monkeypatch, capsys, "prepare-pairs", "-w", weights, "-d", folder,
                       "--n", 9, "--out", out, *QUICK_PAIRS)  # fmt: skip
    assert code == 0, err
    pairs = PairDataset(out)
    assert len(pairs) == 9 and pairs.classes == list(CLASSES)
    expected = ImageFolderDataset(folder).subset(indices=pairs.indices).to_memory()
    assert torch.equal(pairs.x_clean, expected.x) and torch.equal(pairs.y, expected.y)


def test_folder_to_npz_writes_pixels_labels_and_class_names(monkeypatch, capsys, tmp_path):
    folder = make_folder(tmp_path / "train")
    out = tmp_path / "npz" / "train.npz"
    code, stdout, err = run(monkeypatch, capsys, "folder-to-npz", "-i", folder, "-o", out)
    assert code == 0, err
    assert "18 images 16x16, 3 classes (cat, dog, fox)" in stdout
    with np.load(out) as npz:
        assert npz["x"].dtype == np.uint8 and npz["x"].shape == (18, 16, 16, 3)
        assert npz["y"].tolist() == [0] * 6 + [1] * 6 + [2] * 6
        assert npz["classes"].tolist() == list(CLASSES)
    loaded = load_dataset(out.parent, "train")  # npz/{split}.npz
    assert loaded.fingerprint() == ImageFolderDataset(folder).to_memory().fingerprint()


def test_loading_a_folder_into_memory_is_size_checked_before_reading(monkeypatch, tmp_path):
    folder = make_folder(tmp_path / "train")
    (folder / "cat" / "zzz.png").write_bytes(b"not a png")  # reading it would fail
    data = ImageFolderDataset(folder)
    with pytest.raises(DataError, match=r"19 images would take 0.0139 MiB .*IRAD_MAX_MEMORY_GB"):
        data.to_memory(max_bytes=1000)
    monkeypatch.setenv("IRAD_MAX_MEMORY_GB", "0.00001")  # 10.7 kB: the whole folder is 14.6 kB
    with pytest.raises(DataError, match=r"more than the limit of 0.0102 MiB"):
        data.to_memory()
    assert data.subset(indices=[0, 1]).to_memory().x.shape == (2, 16, 16, 3)  # a part fits


# -- 2. one set of subset options; "first n" of a class-sorted set warns -----------------------


def test_stratified_subset_takes_every_class_in_proportion() -> None:
    from irad.data import select_subset

    x = torch.zeros(40, 2, 2, 3, dtype=torch.uint8)
    y = torch.tensor([0] * 20 + [1] * 10 + [2] * 10)  # sorted by class, class 0 twice as large
    data = ImageDataset(x, y)
    sub = data.subset(8, seed=0, stratify=True)
    assert torch.bincount(sub.y).tolist() == [4, 2, 2]
    assert sub.description.endswith("[stratified 8, seed 0]")
    assert set(data.subset(4, seed=0, stratify=True).source_indices.tolist()) <= set(
        sub.source_indices.tolist()
    )  # nested in n, like the random subsets
    assert torch.bincount(select_subset(data, 8, "stratified", 1).y).tolist() == [4, 2, 2]
    assert select_subset(data, 8, "random", 1).description.endswith("[random 8, seed 1]")
    with pytest.raises(ConfigError, match="--subset"):
        select_subset(data, 8, "balanced")


def test_first_n_of_a_class_sorted_set_warns(tmp_path) -> None:
    from irad.data import FewClassesWarning

    folder = ImageFolderDataset(make_folder(tmp_path / "train"))
    with pytest.warns(FewClassesWarning, match="only 1 of the 3 classes"):
        folder.subset(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewClassesWarning)
        folder.subset(6, seed=0)
        folder.subset(6, stratify=True)


def _option_names(command: str) -> set[str]:
    import typer

    from irad.cli import app

    click_command = typer.main.get_command(app).commands[command]
    return {name for param in click_command.params for name in param.opts}


@pytest.mark.parametrize(
    "command",
    ["classify", "evaluate", "prepare-pairs", "train-classifier", "train-inr", "train-samplenet"],
)
def test_every_command_that_picks_images_has_the_same_subset_options(command) -> None:
    assert {"--subset", "--subset-seed"} <= _option_names(command)


def test_classify_picks_a_stratified_subset(monkeypatch, capsys, tmp_path) -> None:
    folder = make_folder(tmp_path / "test")
    weights = classifier(tmp_path / "clf")
    record = tmp_path / "r.json"
    code, _, err = run(monkeypatch, capsys, "classify", "-w", weights, "-d", folder, "--n", 6,
                       "--subset", "stratified", "--json", record, "--no-progress")  # fmt: skip
    assert code == 0, err
    assert json.loads(record.read_text())["subset"] == "test[stratified 6, seed 0]"


def test_pairs_subsets_are_stratified_and_hold_out_the_rest(monkeypatch, capsys, tmp_path):
    from irad.data import FewClassesWarning
    from irad.train.pairs import PairDataset

    folder = make_folder(tmp_path / "train")
    code, _, err = run(monkeypatch, capsys, "prepare-pairs", "-w", classifier(tmp_path / "c"),
                       "-d", folder, "--out", tmp_path / "pairs", *QUICK_PAIRS)  # fmt: skip
    assert code == 0, err
    pairs = PairDataset(tmp_path / "pairs")
    assert pairs.y.tolist() == sorted(pairs.y.tolist())  # stored in data-set order
    with pytest.warns(FewClassesWarning):
        pairs.head(6)
    train = pairs.subset(9, seed=0, stratify=True)
    assert torch.bincount(train.y).tolist() == [3, 3, 3]
    held_out = pairs.complement(train)
    assert held_out is not None and len(held_out) == 9
    assert set(train.indices.tolist()).isdisjoint(held_out.indices.tolist())
    assert train.selection_key == "stratified 9, seed 0"  # what a resumed run must match
    assert pairs.head(9).selection_key == (0, 9)  # first-n runs keep their old record
    clean, adv, y = train.take([0, 1])
    assert clean.shape == adv.shape == (2, 3, 16, 16) and torch.equal(y, train.y[:2])


# -- 3. a pairs folder works from any directory --------------------------------------------------


def _pairs_from(monkeypatch, capsys, tmp_path: Path) -> Path:
    make_folder(tmp_path / "project" / "data" / "train")
    classifier(tmp_path / "project" / "clf")
    monkeypatch.chdir(tmp_path / "project")  # relative paths, as a user types them
    code, _, err = run(monkeypatch, capsys, "prepare-pairs", "-w", "clf", "-d", "data/train",
                       "--out", "pairs/mine", *QUICK_PAIRS)  # fmt: skip
    assert code == 0, err
    return tmp_path / "project" / "pairs" / "mine"


def test_pairs_load_from_another_working_directory(monkeypatch, capsys, tmp_path) -> None:
    from irad.train.pairs import PairDataset

    pairs = _pairs_from(monkeypatch, capsys, tmp_path)
    manifest = json.loads((pairs / "manifest.json").read_text())
    assert manifest["data"]["dataset"] == "../../data/train"  # relative to the pairs folder
    monkeypatch.chdir(tmp_path)
    assert len(PairDataset(pairs)) == 18
    assert len(PairDataset(Path("project/pairs/mine"))) == 18


def test_a_missing_data_path_says_it_came_from_the_manifest(monkeypatch, capsys, tmp_path):
    from irad.train.pairs import PairDataset

    pairs = _pairs_from(monkeypatch, capsys, tmp_path)
    (tmp_path / "project" / "data" / "train").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"manifest\.json names it as the data set") as err:
        PairDataset(pairs)
    assert str(pairs / "../../data/train") in str(err.value)


def test_manifests_with_paths_relative_to_the_cwd_still_load(monkeypatch, capsys, tmp_path):
    from irad.train.pairs import PairDataset

    pairs = _pairs_from(monkeypatch, capsys, tmp_path)
    manifest = json.loads((pairs / "manifest.json").read_text())
    manifest["data"] = {
        k: v for k, v in manifest["data"].items() if k not in ("paths", "dataset_given")
    }
    manifest["data"]["dataset"] = "data/train"  # how older irad wrote it
    (pairs / "manifest.json").write_text(json.dumps(manifest))
    assert len(PairDataset(pairs)) == 18  # from the folder it was made in


# -- 4. a classifier meets only data of its classes ----------------------------------------------


def test_train_samplenet_refuses_a_classifier_of_other_classes(monkeypatch, capsys, tmp_path):
    five = ("a", "b", "c", "d", "e")
    folder = make_folder(tmp_path / "train", classes=five, per_class=2)
    pairs = tmp_path / "pairs"
    code, _, err = run(monkeypatch, capsys, "prepare-pairs", "-w",
                       classifier(tmp_path / "clf5", classes=five), "-d", folder, "--out", pairs,
                       *QUICK_PAIRS)  # fmt: skip
    assert code == 0, err
    ten = classifier(tmp_path / "clf10", num_classes=10)  # e.g. a CIFAR-10 classifier
    code, _, err = run(monkeypatch, capsys, "train-samplenet", "--representation",
                       tmp_path / "never-read", "--pairs", pairs, "-w", ten, "--out",
                       tmp_path / "run", "--device", "cpu", "--no-progress")  # fmt: skip
    assert code == 2
    assert "has 5 classes (a, b, c, d, e) but the classifier has 10 outputs" in err
    assert not (tmp_path / "run" / "last.json").exists()


def test_prepare_pairs_refuses_a_surrogate_of_other_classes(monkeypatch, capsys, tmp_path):
    folder = make_folder(tmp_path / "train")
    other = classifier(tmp_path / "clf", classes=("ant", "bee", "cow"))
    code, _, err = run(monkeypatch, capsys, "prepare-pairs", "-w", other, "-d", folder,
                       "--out", tmp_path / "pairs", *QUICK_PAIRS)  # fmt: skip
    assert code == 2 and "are not the classifier's (ant, bee, cow)" in err
    assert not (tmp_path / "pairs" / "manifest.json").exists()


def test_one_class_check_serves_every_command() -> None:
    import irad.evaluate.images
    import irad.measure
    from irad.data import classes

    assert irad.evaluate.images._check_classes is classes.check_classes
    assert not hasattr(irad.measure, "check_classes")
    assert issubclass(classes.ClassMismatchError, InputError)
    assert issubclass(classes.ClassMismatchError, ConfigError)


# -- 5. not fixed to CIFAR-10 ---------------------------------------------------------------------


QUICK_TRAIN = ("--epochs", 1, "--batch-size", 6, "--max-steps-per-epoch", 2, "--device", "cpu",
               "--no-progress", "--no-final-eval")  # fmt: skip


def test_a_classifier_trained_on_a_folder_keeps_its_statistics_and_classes(
    monkeypatch, capsys, tmp_path
) -> None:
    from irad.data import channel_stats

    folder = make_folder(tmp_path / "train")
    code, _, err = run(monkeypatch, capsys, "train-classifier", "--dataset", folder,
                       "--out", tmp_path / "run", *QUICK_TRAIN)  # fmt: skip
    assert code == 0, err
    mean, std = channel_stats(ImageFolderDataset(folder))
    clf = load_classifier(tmp_path / "run" / "model")
    assert clf.config["mean"] == mean and clf.config["std"] == std
    assert mean != [0.4914, 0.4822, 0.4465]  # not CIFAR-10's
    assert clf.classes == list(CLASSES) and clf.config["classes"] == list(CLASSES)
    assert f"normalisation: mean {mean} std {std} (computed on 18 training images)" in err


def test_mean_and_std_flags_are_saved(monkeypatch, capsys, tmp_path) -> None:
    folder = make_folder(tmp_path / "train")
    code, _, err = run(monkeypatch, capsys, "train-classifier", "--dataset", folder,
                       "--mean", "0.5,0.4,0.3", "--std", "0.2, 0.2, 0.25",
                       "--out", tmp_path / "run", *QUICK_TRAIN)  # fmt: skip
    assert code == 0, err
    clf = load_classifier(tmp_path / "run" / "model")
    assert (clf.config["mean"], clf.config["std"]) == ([0.5, 0.4, 0.3], [0.2, 0.2, 0.25])
    code, _, err = run(monkeypatch, capsys, "train-classifier", "--dataset", folder,
                       "--mean", "0.5,0.4", "--out", tmp_path / "run2", *QUICK_TRAIN)  # fmt: skip
    assert code == 2 and "three comma-separated numbers" in err


def _png(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 120, dtype=np.uint8)).save(path)


def test_the_bundled_irad_warns_on_images_unlike_cifar10(tmp_path) -> None:
    from irad.purify import BundledDefenseWarning, purify_folder

    _png(tmp_path / "big" / "a.png", 40)
    with pytest.warns(BundledDefenseWarning, match="trained on CIFAR-10.*40x40"):
        purify_folder("irad", tmp_path / "big", tmp_path / "out1", progress=False)
    _png(tmp_path / "cifar" / "a.png", 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", BundledDefenseWarning)
        purify_folder("irad", tmp_path / "cifar", tmp_path / "out2", progress=False)
        purify_folder("jpeg", tmp_path / "big", tmp_path / "out3", progress=False)


def test_the_preset_summary_shows_the_settings_of_the_run(monkeypatch, capsys, tmp_path):
    folder = make_folder(tmp_path / "train", per_class=3)
    pairs = tmp_path / "pairs"
    code, _, err = run(monkeypatch, capsys, "prepare-pairs", "-w", classifier(tmp_path / "c"),
                       "-d", folder, "--out", pairs, *QUICK_PAIRS)  # fmt: skip
    assert code == 0, err
    code, _, err = run(monkeypatch, capsys, "train-inr", "--pairs", pairs, "--epochs", 2,
                       "--batch-size", 4, "--max-steps-per-epoch", 1, "--eval-n", 0,
                       "--out", tmp_path / "inr", "--device", "cpu", "--no-progress")  # fmt: skip
    assert code == 0, err
    summary = next(line for line in err.splitlines() if line.startswith("preset cpu:"))
    assert "batch 4 x 2 epochs" in summary  # the flags, not the preset's 128 x 10
    assert "pairs PGD-1 on 9 images" in summary  # the pairs given, not the preset's 10,000
    assert "stage 2 Adam lr 0.0002 batch 32 x 1 epochs on 9 pairs" in summary
    assert summary.endswith("this run: stage 1 on 9 pairs")
