"""irad.data: npz files, subsets, batching, augmentation, image folders, CIFAR download path."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from irad.data import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR_SOURCES,
    DATA_ENV,
    DatasetSource,
    ImageDataset,
    ImageFolderDataset,
    RandomCropFlip,
    download_url,
    extract_tarball,
    iterate_batches,
    load_cifar,
    load_dataset,
    num_batches,
    random_crop_flip,
    resolve_data_dir,
)
from irad.data.folder import resize_center_crop
from irad.errors import ConfigError, DataError, InputError

# ---------------------------------------------------------------------------------------------
# helpers: small synthetic data made here
# ---------------------------------------------------------------------------------------------


def make_images(n: int, h: int = 8, w: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), np.arange(n, dtype=np.int64) % 4


@pytest.fixture
def small() -> ImageDataset:
    x, y = make_images(20)
    return ImageDataset(x, y, ["a", "b", "c", "d"], "small")


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# ---------------------------------------------------------------------------------------------
# ImageDataset and npz files
# ---------------------------------------------------------------------------------------------


def test_items_and_tensors_are_float_chw_in_unit_range(small: ImageDataset) -> None:
    img, label = small[3]
    assert img.shape == (3, 8, 8) and img.dtype == torch.float32
    assert label == 3
    assert torch.equal(img, small.x[3].permute(2, 0, 1).float() / 255)
    x, y = small.tensors()
    assert x.shape == (20, 3, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert torch.equal(y, small.y) and y.dtype == torch.int64
    assert small.tensors(torch.float64)[0].dtype == torch.float64
    with pytest.raises(IndexError):
        small[20]


def test_npz_round_trip_keeps_pixels_labels_and_classes(small: ImageDataset, tmp_path) -> None:
    path = small.save_npz(tmp_path / "set.npz")
    loaded = ImageDataset.from_npz(path)
    assert torch.equal(loaded.x, small.x) and torch.equal(loaded.y, small.y)
    assert loaded.classes == small.classes
    assert loaded.fingerprint() == small.fingerprint()
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temporary file behind"


def test_npz_without_classes_gets_numbered_classes(tmp_path) -> None:
    x, y = make_images(6)
    ds = ImageDataset.from_npz(write_npz(tmp_path / "plain.npz", x=x, y=y.astype(np.int32)))
    assert ds.classes == ["0", "1", "2", "3"] and ds.y.dtype == torch.int64


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": make_images(4)[0]}, "missing key 'y'"),
        ({"images": make_images(4)[0], "y": make_images(4)[1]}, "missing key 'x'"),
        ({"x": make_images(4)[0].astype(np.float32), "y": make_images(4)[1]}, "must be uint8"),
        ({"x": make_images(4)[0].transpose(0, 3, 1, 2), "y": make_images(4)[1]}, "NCHW"),
        ({"x": make_images(4)[0][..., 0], "y": make_images(4)[1]}, "[N, H, W, 3]"),
        ({"x": make_images(4)[0], "y": make_images(3)[1]}, "4 images but y has 3 labels"),
        ({"x": make_images(4)[0], "y": np.zeros(4, np.float32)}, "integer labels"),
        ({"x": make_images(4)[0], "y": -np.ones(4, np.int64)}, "non-negative"),
    ],
)
def test_npz_validation_names_file_and_problem(tmp_path, arrays, message) -> None:
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        ImageDataset.from_npz(path)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("content", [b"this is not a zip file", None], ids=["garbage", "truncated"])
def test_corrupt_npz_is_a_data_error(tmp_path, small: ImageDataset, content) -> None:
    path = tmp_path / "corrupt.npz"
    if content is None:  # a download or copy that stopped half-way
        small.save_npz(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match="corrupt"):
        ImageDataset.from_npz(path)


def test_missing_npz_and_foreign_labels(tmp_path) -> None:
    with pytest.raises(DataError, match="file not found"):
        ImageDataset.from_npz(tmp_path / "nope.npz")
    x, _ = make_images(4)
    path = write_npz(tmp_path / "many.npz", x=x, y=np.array([0, 1, 2, 42]))
    with pytest.raises(DataError, match="out of range for 10 classes"):
        ImageDataset.from_npz(path, classes=CIFAR10_CLASSES)


def test_constructor_rejects_wrong_dtype_and_layout() -> None:
    x, y = make_images(3)
    with pytest.raises(InputError, match="uint8"):
        ImageDataset(x.astype(np.float32), y)
    with pytest.raises(InputError, match="NCHW"):
        ImageDataset(x.transpose(0, 3, 1, 2), y)
    with pytest.raises(InputError, match="shape"):
        ImageDataset(x, y[:2])


def test_fingerprint_tracks_content(small: ImageDataset) -> None:
    same = ImageDataset(small.x.clone(), small.y.clone(), small.classes)
    assert same.fingerprint() == small.fingerprint()
    x = small.x.clone()
    x[0, 0, 0, 0] ^= 1
    assert ImageDataset(x, small.y, small.classes).fingerprint() != small.fingerprint()
    y = small.y.clone()
    y[0] = 3
    assert ImageDataset(small.x, y, small.classes).fingerprint() != small.fingerprint()


# ---------------------------------------------------------------------------------------------
# subsets
# ---------------------------------------------------------------------------------------------


def test_subset_first_n(small: ImageDataset) -> None:
    sub = small.subset(5)
    assert torch.equal(sub.x, small.x[:5]) and torch.equal(sub.y, small.y[:5])
    assert sub.description == "small[first 5]" and sub.classes == small.classes
    assert sub.source_indices.tolist() == [0, 1, 2, 3, 4]


def test_subset_seeded_is_reproducible_nested_and_seed_dependent(small: ImageDataset) -> None:
    a, b = small.subset(8, seed=1), small.subset(8, seed=1)
    assert torch.equal(a.x, b.x) and a.description == "small[random 8, seed 1]"
    rows = a.source_indices
    assert torch.equal(a.x, small.x[rows]) and torch.equal(a.y, small.y[rows])
    assert rows.unique().numel() == 8 and torch.equal(rows, rows.sort().values)
    assert not torch.equal(rows, small.subset(8, seed=2).source_indices)
    assert set(small.subset(4, seed=1).source_indices.tolist()) <= set(rows.tolist())


def test_subset_of_subset_tracks_original_rows(small: ImageDataset) -> None:
    sub = small.subset(indices=[10, 4, 7]).subset(2)
    assert sub.source_indices.tolist() == [10, 4]
    assert torch.equal(sub.x, small.x[[10, 4]])
    assert sub.description == "small[indices (3 rows)][first 2]"


@pytest.mark.parametrize(
    "kwargs",
    [{"n": 21}, {"n": -1}, {"seed": 0}, {"n": 2, "indices": [0]}, {"indices": [20]}],
)
def test_subset_bad_arguments(small: ImageDataset, kwargs) -> None:
    with pytest.raises(InputError, match="subset"):
        small.subset(**kwargs)


# ---------------------------------------------------------------------------------------------
# batching
# ---------------------------------------------------------------------------------------------


def test_batches_cover_the_data_in_order(small: ImageDataset) -> None:
    batches = list(iterate_batches(small, 6))
    assert [len(y) for _, y in batches] == [6, 6, 6, 2] == [6] * 3 + [2]
    assert num_batches(small, 6) == 4 and num_batches(small, 6, drop_last=True) == 3
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x, small.tensors()[0])
    assert len(list(iterate_batches(small, 6, drop_last=True))) == 3


def test_shuffle_is_a_seeded_permutation(small: ImageDataset) -> None:
    def order(seed: int) -> list[int]:
        return torch.cat(
            [y for _, y in iterate_batches(small, 7, shuffle=True, seed=seed)]
        ).tolist()

    def rows(seed: int) -> torch.Tensor:
        xs = torch.cat([x for x, _ in iterate_batches(small, 7, shuffle=True, seed=seed)])
        flat = small.tensors()[0].flatten(1)
        return torch.tensor([int((flat == r).all(1).nonzero()[0]) for r in xs.flatten(1)])

    r = rows(3)
    assert sorted(r.tolist()) == list(range(20)) and r.tolist() != list(range(20))
    assert order(3) == order(3) and torch.equal(rows(3), r)
    assert not torch.equal(rows(4), r)


def test_start_batch_resumes_the_same_batches_and_augmentation(small: ImageDataset) -> None:
    kwargs = {"shuffle": True, "seed": 11, "augment": RandomCropFlip(2)}
    full = list(iterate_batches(small, 6, **kwargs))
    resumed = list(iterate_batches(small, 6, start_batch=2, **kwargs))
    assert len(resumed) == len(full) - 2
    for (xa, ya), (xb, yb) in zip(full[2:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert list(iterate_batches(small, 6, start_batch=4)) == []


def test_augment_without_generator_argument_is_called_plainly(small: ImageDataset) -> None:
    x, _ = next(iterate_batches(small, 4, augment=lambda x: 1 - x))
    assert torch.equal(x, 1 - small.take(range(4))[0])


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"batch_size": 4, "start_batch": 6}, {"batch_size": 2.5}]
)
def test_batching_bad_arguments(small: ImageDataset, kwargs) -> None:
    with pytest.raises(InputError):
        iterate_batches(small, **kwargs)


def test_plain_sequences_can_be_batched() -> None:
    items = [(torch.full((3, 4, 4), i / 10), i) for i in range(5)]
    (x, y), *_ = iterate_batches(items, 3)
    assert x.shape == (3, 3, 4, 4) and y.tolist() == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# augmentation
# ---------------------------------------------------------------------------------------------


def test_crop_flip_shape_dtype_and_determinism() -> None:
    x = torch.rand(16, 3, 10, 12)
    aug = RandomCropFlip(padding=3)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crop_is_a_shifted_and_maybe_flipped_copy() -> None:
    p = 4
    x = torch.rand(32, 3, 9, 11) + 0.1  # nonzero, so padding zeros are told apart from pixels
    out = random_crop_flip(x, p, True, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    flips = 0
    for i in range(len(x)):
        windows = [
            (dy, dx, f)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            for f in (False, True)
            if torch.equal(
                out[i],
                padded[i, :, dy : dy + 9, dx : dx + 11].flip(-1)
                if f
                else padded[i, :, dy : dy + 9, dx : dx + 11],
            )
        ]
        assert windows, f"image {i} is not a crop of its padded copy"
        flips += any(f for *_, f in windows) and not any(not f for *_, f in windows)
    assert 0 < flips < len(x)


def test_crop_flip_edge_cases() -> None:
    x = torch.rand(64, 3, 5, 5)
    assert torch.equal(random_crop_flip(x, 0, False), x)
    flipped = random_crop_flip(x, 0, True, torch.Generator().manual_seed(0))
    is_flip = torch.tensor([torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x, strict=True)])
    is_same = torch.tensor([torch.equal(f, o) for f, o in zip(flipped, x, strict=True)])
    assert bool((is_flip | is_same).all()) and 10 < int(is_flip.sum()) < 54
    with pytest.raises(InputError):
        RandomCropFlip(padding=-1)
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        random_crop_flip(torch.rand(3, 5, 5))


# ---------------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------------


def save_image(path: Path, size: tuple[int, int], color: tuple[int, int, int], mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).convert(mode).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "images"
    save_image(root / "dog" / "b.png", (20, 12), (200, 10, 10))
    save_image(root / "dog" / "a.jpg", (16, 16), (10, 200, 10))
    save_image(root / "cat" / "x.png", (9, 30), (10, 10, 200))
    save_image(root / "cat" / "sub" / "gray.bmp", (8, 8), (100, 100, 100), mode="L")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def test_image_folder_classes_labels_and_sizes(folder: Path) -> None:
    ds = ImageFolderDataset(folder)
    assert ds.classes == ["cat", "dog", "empty"] and len(ds) == 4
    assert ds.y.tolist() == [0, 0, 1, 1]
    names = [p.name for p, _ in ds.samples]
    assert names == ["x.png", "gray.bmp", "a.jpg", "b.png"]
    x, label = ds[3]
    assert x.shape == (3, 12, 20) and label == 1
    assert torch.allclose(x[:, 0, 0], torch.tensor([200, 10, 10]) / 255)
    assert ds[1][0].shape == (3, 8, 8)  # grayscale became RGB


def test_image_folder_with_image_size_batches(folder: Path) -> None:
    ds = ImageFolderDataset(folder, image_size=8)
    batches = list(iterate_batches(ds, 3))
    assert [tuple(x.shape) for x, _ in batches] == [(3, 3, 8, 8), (1, 3, 8, 8)]
    x, y = ds.tensors()
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 1, 1]
    mem = ds.subset(2, seed=0).to_memory()
    assert mem.x.shape == (2, 8, 8, 3) and mem.classes == ds.classes
    assert len(ds.fingerprint()) == 64


def test_image_folder_mixed_sizes_need_image_size_or_batch_size_1(folder: Path) -> None:
    ds = ImageFolderDataset(folder)
    with pytest.raises(InputError, match="image_size") as err:
        next(iterate_batches(ds, 2))
    assert "batch_size=1" in str(err.value)
    shapes = [tuple(x.shape) for x, _ in iterate_batches(ds, 1)]
    assert shapes == [(1, 3, 30, 9), (1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 12, 20)]


def test_resize_center_crop_keeps_the_center() -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (15, 5, 25, 15))  # a centered white square
    out = np.asarray(resize_center_crop(image, 10))
    assert out.shape == (10, 10, 3)
    assert out[5, 5].min() > 200 and out[0, 0].max() < 60


def test_image_folder_errors(tmp_path, folder: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    save_image(tmp_path / "flat" / "a.png", (4, 4), (0, 0, 0))
    with pytest.raises(DataError, match="one sub-folder per class"):
        ImageFolderDataset(tmp_path / "flat")
    (tmp_path / "none" / "cls").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        ImageFolderDataset(tmp_path / "none")
    (folder / "dog" / "broken.png").write_bytes(b"not a png")
    ds = ImageFolderDataset(folder)
    broken = next(i for i, (p, _) in enumerate(ds.samples) if p.name == "broken.png")
    with pytest.raises(DataError, match=r"broken\.png"):
        ds[broken]


def test_image_folder_with_fixed_class_list(folder: Path) -> None:
    ds = ImageFolderDataset(folder, classes=["ant", "cat", "dog", "empty"])
    assert ds.y.tolist() == [1, 1, 2, 2]
    with pytest.raises(DataError, match="not among"):
        ImageFolderDataset(folder, classes=["cat"])


# ---------------------------------------------------------------------------------------------
# CIFAR: a tiny fake of the official python tarball, served locally
# ---------------------------------------------------------------------------------------------

CIFAR_PER_BATCH = 3


def _pickle(obj: object) -> bytes:
    # Protocol 2 with bytes keys, like the official (Python 2) batches.
    return pickle.dumps(obj, protocol=2)


def build_fake_cifar10(tmp: Path) -> tuple[DatasetSource, dict[str, tuple[np.ndarray, ...]]]:
    """Write a tarball in the official CIFAR-10 layout; return (source, expected arrays)."""
    rng = np.random.default_rng(0)
    folder = tmp / "build" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    expected: dict[str, list] = {"train": [[], []], "test": [[], []]}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, file in enumerate(names):
        x = rng.integers(0, 256, (CIFAR_PER_BATCH, 32, 32, 3), dtype=np.uint8)
        y = [(k + j) % 10 for j in range(CIFAR_PER_BATCH)]
        batch = {
            b"batch_label": file.encode(),
            b"labels": y,
            b"data": x.transpose(0, 3, 1, 2).reshape(CIFAR_PER_BATCH, -1),  # R, G, B planes
            b"filenames": [f"{file}_{j}.png".encode() for j in range(CIFAR_PER_BATCH)],
        }
        (folder / file).write_bytes(_pickle(batch))
        split = "test" if file == "test_batch" else "train"
        expected[split][0].append(x)
        expected[split][1].append(y)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(_pickle(meta))
    tarball = tmp / "serve" / "cifar-10-python.tar.gz"
    tarball.parent.mkdir()
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    file_md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    source = dataclasses.replace(
        CIFAR_SOURCES["cifar10"],
        url=tarball.as_uri(),
        sha256=hashlib.sha256(tarball.read_bytes()).hexdigest(),
        md5=None,
        size=tarball.stat().st_size,
        file_md5=file_md5,
    )
    arrays = {
        s: (np.concatenate(xs), np.concatenate(ys).astype(np.int64))
        for s, (xs, ys) in expected.items()
    }
    return source, arrays


@pytest.fixture
def fake_cifar(tmp_path):
    return build_fake_cifar10(tmp_path)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


def test_download_from_file_url_extracts_parses_and_caches(fake_cifar, tmp_path) -> None:
    source, arrays = fake_cifar
    data = tmp_path / "data"
    test = load_cifar(source, "test", data)
    assert np.array_equal(test.x.numpy(), arrays["test"][0])
    assert np.array_equal(test.y.numpy(), arrays["test"][1])
    assert test.classes == list(CIFAR10_CLASSES) and test.name == "cifar10/test"
    train = load_cifar(source, "train", data)
    assert np.array_equal(train.x.numpy(), arrays["train"][0])  # batches 1..5 in order
    cache = data / "cifar10"
    assert (cache / "cifar-10-python.tar.gz").is_file()
    assert (cache / "cifar-10-batches-py" / "test_batch").is_file()
    assert {p.name for p in cache.glob("*.npz")} == {"test.npz", "train.npz"}
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "temporary files left"
    # Later loads read the pickle-free cache, even with the tarball and batches gone.
    for p in [cache / "cifar-10-python.tar.gz", *(cache / "cifar-10-batches-py").iterdir()]:
        p.unlink()
    again = load_cifar(dataclasses.replace(source, url=closed_port_url()), "test", data)
    assert torch.equal(again.x, test.x) and again.fingerprint() == test.fingerprint()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_download_over_http_from_a_local_server(fake_cifar, tmp_path) -> None:
    source, arrays = fake_cifar
    tarball = Path(source.url.removeprefix("file://"))
    handler = functools.partial(_QuietHandler, directory=str(tarball.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{tarball.name}"
        ds = load_cifar(dataclasses.replace(source, url=url), "test", tmp_path / "data")
    finally:
        server.shutdown()
        server.server_close()
    assert np.array_equal(ds.x.numpy(), arrays["test"][0])


def test_checksum_mismatch_deletes_the_download(fake_cifar, tmp_path) -> None:
    source, _ = fake_cifar
    bad = dataclasses.replace(source, sha256="0" * 64)
    with pytest.raises(DataError) as err:
        load_cifar(bad, "test", tmp_path / "data")
    msg = str(err.value)
    assert "checksum mismatch" in msg and "0" * 64 in msg and source.sha256 in msg
    assert not list((tmp_path / "data").rglob("*.tar.gz*")), "bad download not deleted"
    with pytest.raises(DataError, match="checksum mismatch"):
        download_url(source.url, tmp_path / "d" / "x.tgz", md5="f" * 32, progress=False)
    assert not (tmp_path / "d" / "x.tgz").exists()


def test_local_tarball_is_verified_before_use(fake_cifar, tmp_path) -> None:
    source, arrays = fake_cifar
    official = Path(source.url.removeprefix("file://")).read_bytes()
    offline = dataclasses.replace(source, url=closed_port_url())
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    (good / source.filename).write_bytes(official)
    ds = load_cifar(offline, "test", good)
    assert np.array_equal(ds.y.numpy(), arrays["test"][1])
    (bad / source.filename).write_bytes(official[:-10])
    with pytest.raises(DataError, match="sha256 checksum mismatch"):
        load_cifar(offline, "test", bad)
    assert (bad / source.filename).exists(), "a user's own file must not be deleted"


def test_extracted_folder_is_checked_file_by_file(fake_cifar, tmp_path) -> None:
    source, arrays = fake_cifar
    data = tmp_path / "data"
    extract_tarball(source.url.removeprefix("file://"), source.folder, data)
    offline = dataclasses.replace(source, url=closed_port_url())
    assert np.array_equal(load_cifar(offline, "test", data).y.numpy(), arrays["test"][1])
    (data / "cifar10" / "test.npz").unlink()
    batch = data / source.folder / "test_batch"
    raw = bytearray(batch.read_bytes())
    raw[-100] ^= 0xFF  # one changed pixel byte
    batch.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="md5 checksum mismatch"):
        load_cifar(offline, "test", data)


def test_unpickler_refuses_anything_but_arrays(fake_cifar, tmp_path) -> None:
    source, _ = fake_cifar
    folder = tmp_path / "data" / source.folder
    folder.mkdir(parents=True)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": os.getcwd}, protocol=2))
    unchecked = dataclasses.replace(source, file_md5={}, url=closed_port_url())
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar(unchecked, "test", tmp_path / "data")


def test_unsafe_archive_members_are_refused(tmp_path) -> None:
    tarball = tmp_path / "evil.tar"
    with tarfile.open(tarball, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(DataError, match="unsafe member"):
        extract_tarball(tarball, "cifar-10-batches-py", tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_no_network_and_nothing_local_says_what_to_do(fake_cifar, tmp_path) -> None:
    source, _ = fake_cifar
    offline = dataclasses.replace(source, url=closed_port_url())
    data = tmp_path / "empty"
    with pytest.raises(DataError) as err:
        load_cifar(offline, "test", data, timeout=5)
    msg = str(err.value)
    for needed in (offline.url, str(data), "--data-dir", DATA_ENV, "test.npz", source.filename):
        assert needed in msg, f"{needed!r} missing from: {msg}"
    assert str(data / "cifar10" / "cifar-10-batches-py") in msg
    assert not data.exists(), "a failed download left folders behind"
    with pytest.raises(DataError, match="download=False"):
        load_cifar(offline, "test", data, download=False)


# ---------------------------------------------------------------------------------------------
# where data is looked for
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def cifar_npz_dir(tmp_path) -> Path:
    x, _ = make_images(5, 32, 32)
    root = tmp_path / "cifar10"
    root.mkdir()
    write_npz(root / "test.npz", x=x, y=np.array([3, 8, 8, 0, 6]))
    return root


def test_resolution_argument_then_env_then_default(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg")[0] == tmp_path / "arg"
    assert resolve_data_dir(None)[0] == tmp_path / "env"
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None)[0] == tmp_path / "home" / ".cache" / "irad" / "data"


def test_load_dataset_through_irad_data(monkeypatch, cifar_npz_dir, tmp_path) -> None:
    monkeypatch.setitem(
        CIFAR_SOURCES,
        "cifar10",
        dataclasses.replace(CIFAR_SOURCES["cifar10"], url=closed_port_url()),
    )
    monkeypatch.setenv(DATA_ENV, str(cifar_npz_dir))
    ds = load_dataset("cifar10", "test")
    assert ds.y.tolist() == [3, 8, 8, 0, 6] and ds.classes == list(CIFAR10_CLASSES)
    assert ds.name == "cifar10/test"
    assert load_dataset("CIFAR-10").fingerprint() == ds.fingerprint()
    # {root}/cifar10/{split}.npz works too, and the argument beats the environment.
    ds2 = load_dataset("cifar10", "test", data_dir=cifar_npz_dir.parent)
    assert ds2.fingerprint() == ds.fingerprint()
    with pytest.raises(DataError, match="train"):
        load_dataset("cifar10", "train", download=False)


def test_a_cifar10_folder_is_not_taken_for_cifar100(monkeypatch, cifar_npz_dir) -> None:
    monkeypatch.setitem(
        CIFAR_SOURCES,
        "cifar100",
        dataclasses.replace(CIFAR_SOURCES["cifar100"], url=closed_port_url()),
    )
    with pytest.raises(DataError, match="cifar100/test"):
        load_dataset("cifar100", "test", data_dir=cifar_npz_dir, download=False)
    assert len(CIFAR100_CLASSES) == len(set(CIFAR100_CLASSES)) == 100


def test_load_dataset_paths_and_names(small: ImageDataset, folder: Path, tmp_path) -> None:
    path = small.save_npz(tmp_path / "mine" / "test.npz")
    assert load_dataset(path).fingerprint() == small.fingerprint()
    assert load_dataset(path.parent, "test").fingerprint() == small.fingerprint()
    images = load_dataset(folder, image_size=8)
    assert isinstance(images, ImageFolderDataset) and images[0][0].shape == (3, 8, 8)
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        load_dataset("cifar11")
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nothing.npz")
    with pytest.raises(ConfigError, match="split"):
        load_dataset("cifar10", "validation", tmp_path)


# ---------------------------------------------------------------------------------------------
# the real CIFAR-10 copy (skipped when absent)
# ---------------------------------------------------------------------------------------------


def _real_cifar10_dir() -> Path | None:
    here = Path(__file__).resolve().parents[1]
    for candidate in (os.environ.get(DATA_ENV), here.parent / "shared" / "data" / "cifar10"):
        if candidate and (Path(candidate) / "test.npz").is_file():
            return Path(candidate)
    return None


@pytest.mark.data
@pytest.mark.skipif(_real_cifar10_dir() is None, reason="local CIFAR-10 copy not found (IRAD_DATA)")
def test_real_cifar10_test_split() -> None:
    ds = load_dataset("cifar10", "test", _real_cifar10_dir(), download=False)
    assert ds.x.shape == (10000, 32, 32, 3) and ds.x.dtype == torch.uint8
    assert ds.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert torch.bincount(ds.y).tolist() == [1000] * 10
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"
