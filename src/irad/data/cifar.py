"""CIFAR-10 and CIFAR-100 from the official python tarballs, cached as pickle-free ``.npz``.

Search order inside the data root (see :func:`~irad.data.paths.resolve_data_dir`), first hit
wins: ``{split}.npz``, ``{name}/{split}.npz``, an extracted ``cifar-10-batches-py/`` (or
``cifar-100-python/``) folder, the tarball, and finally a download into ``{name}/``. After the
first parse from the official batches, the split is cached as ``{name}/{split}.npz``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from irad.data.datasets import ImageDataset
from irad.data.download import download_url, extract_tarball, file_digest, verify_file
from irad.data.npz import LAYOUT, write_npz
from irad.data.paths import DATA_ENV, resolve_data_dir
from irad.errors import ConfigError, DataError

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set in the official CIFAR python format comes from and how it is laid out.

    Override ``url`` and the checksums to use a mirror (or, in tests, a local fake):
    ``dataclasses.replace(CIFAR_SOURCES["cifar10"], url="file:///mirror/cifar-10-python.tar.gz")``.

    Args:
        name: short name, also the cache sub-folder (``cifar10``).
        url: download address of the tarball.
        filename: tarball file name.
        folder: the folder inside the tarball that holds the batches.
        splits: split name -> batch files, joined in this order.
        label_key: label list in each batch (``labels`` or ``fine_labels``).
        classes: class names in label order.
        meta_file, names_key: the batch-meta file and its class-name list (cross-checked).
        sha256, md5: checksums of the tarball (sha256 preferred when both are known).
        size: tarball size in bytes (informational).
        file_md5: md5 of each extracted file, checked before any of them is unpickled.
        image_size: ``(H, W)`` of the images.
    """

    name: str
    url: str
    filename: str
    folder: str
    splits: Mapping[str, tuple[str, ...]]
    label_key: str
    classes: tuple[str, ...]
    meta_file: str | None = None
    names_key: str | None = None
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    file_md5: Mapping[str, str] = field(default_factory=dict)
    image_size: tuple[int, int] = (32, 32)


# Checksums of the official tarballs (https://www.cs.toronto.edu/~kriz/cifar.html lists the md5;
# the sha256 values are the ones Keras pins). Per-file md5s as torchvision records them.
CIFAR_SOURCES: dict[str, DatasetSource] = {
    "cifar10": DatasetSource(
        name="cifar10",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        filename="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        splits={
            "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
            "test": ("test_batch",),
        },
        label_key="labels",
        classes=CIFAR10_CLASSES,
        meta_file="batches.meta",
        names_key="label_names",
        sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        md5="c58f30108f718f92721af3b95e74349a",
        size=170_498_071,
        file_md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    ),
    "cifar100": DatasetSource(
        name="cifar100",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        filename="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        splits={"train": ("train",), "test": ("test",)},
        label_key="fine_labels",
        classes=CIFAR100_CLASSES,
        meta_file="meta",
        names_key="fine_label_names",
        sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        size=169_001_437,
        file_md5={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    ),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays and nothing else.

    Defence in depth: files are unpickled only after their checksum matched the official one,
    and even then only the globals a CIFAR batch needs may be loaded.
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]  # NumPy 2 renamed the package
        return getattr(importlib.import_module(module), name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            # `encoding="bytes"`: the official batches are Python 2 pickles with byte-string keys.
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as err:
        raise DataError(f"{path}: cannot read this CIFAR batch file ({err})") from err
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in the CIFAR batch format, got {type(obj)}")
    return obj


def _get(batch: dict, key: str) -> object:
    """A batch entry by key: bytes keys in the official Python 2 pickles, str in re-pickled ones."""
    return batch.get(key.encode(), batch.get(key))


def _check_file(path: Path, source: DatasetSource) -> None:
    if not path.is_file():
        raise DataError(
            f"{path}: file missing from the extracted {source.folder}/ folder; delete the folder "
            f"and extract {source.filename} again"
        )
    expected = source.file_md5.get(path.name)
    if expected is not None:
        actual = file_digest(path, "md5")
        if actual != expected:
            raise DataError(
                f"{path}: md5 checksum mismatch: expected {expected}, got {actual}; the file is "
                f"not the official one: delete {path.parent} and extract {source.filename} again"
            )


def read_cifar_folder(
    folder: str | os.PathLike[str], source: DatasetSource, split: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Parse one split of an extracted official folder into ``(x, y, classes)``.

    ``x`` is uint8 ``[N, H, W, 3]`` and ``y`` int64 ``[N]``.

    Each file's md5 is checked against ``source.file_md5`` before it is unpickled.
    """
    folder = Path(folder)
    files = source.splits.get(split)
    if files is None:
        raise ConfigError(
            f"{source.name} has no split {split!r}; choose one of {sorted(source.splits)}"
        )
    h, w = source.image_size
    xs, ys = [], []
    for file in files:
        path = folder / file
        _check_file(path, source)
        batch = _unpickle(path)
        data = np.asarray(_get(batch, "data"))
        labels = _get(batch, source.label_key)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * h * w:
            raise DataError(
                f"{path}: 'data' must be uint8 [N, {3 * h * w}], got {data.dtype} {data.shape}"
            )
        if not isinstance(labels, list | np.ndarray) or len(labels) != len(data):
            raise DataError(f"{path}: {source.label_key!r} missing or not one label per image")
        # Rows are 1024 red, then 1024 green, then 1024 blue values: CHW -> HWC.
        xs.append(data.reshape(-1, 3, h, w).transpose(0, 2, 3, 1))
        ys.append(np.asarray(labels, dtype=np.int64))
    x = np.ascontiguousarray(np.concatenate(xs))
    y = np.concatenate(ys)
    classes = source.classes
    if source.meta_file and source.names_key:
        meta_path = folder / source.meta_file
        _check_file(meta_path, source)
        names = _get(_unpickle(meta_path), source.names_key)
        if names is not None:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    if len(y) and (y.min() < 0 or y.max() >= len(classes)):
        raise DataError(f"{folder}: labels outside [0, {len(classes)}) in split {split!r}")
    return x, y, classes


def _dataset_from_folder(
    folder: Path, source: DatasetSource, split: str, cache: Path
) -> ImageDataset:
    x, y, classes = read_cifar_folder(folder, source, split)
    npz = cache / f"{split}.npz"
    try:
        write_npz(npz, x, y, classes)
    except OSError as err:  # a read-only data folder still loads, just more slowly next time
        warnings.warn(f"could not cache {source.name} {split} as {npz}: {err}", stacklevel=3)
    name = f"{source.name}/{split}"
    return ImageDataset(x, y, classes, name, description=name)


def _folder_from_tarball(tarball: Path, source: DatasetSource, cache: Path) -> Path:
    verify_file(tarball, sha256=source.sha256, md5=source.md5)
    # Only a tarball whose checksum matched gets extracted and (later) unpickled.
    try:
        return extract_tarball(tarball, source.folder, cache)
    except PermissionError as err:
        raise DataError(
            f"cannot extract {tarball} into {cache}: {err}; point {DATA_ENV} or --data-dir at a "
            "writable folder that holds the tarball"
        ) from err


def _how_to_fix(source: DatasetSource, root: Path) -> str:
    checksum = f"sha256 {source.sha256}" if source.sha256 else f"md5 {source.md5}"
    return (
        f"  fix: point irad at a local copy with --data-dir DIR or {DATA_ENV}=DIR, where DIR holds "
        f"one of:\n"
        f"    {{train,test}}.npz or {source.name}/{{train,test}}.npz  ({LAYOUT})\n"
        f"    {source.folder}/  (the extracted official tarball)\n"
        f"    {source.filename}  ({checksum})\n"
        f"  or download {source.url} on a machine with internet access and copy it into {root}"
    )


def load_cifar(
    source: DatasetSource | str,
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    timeout: float = 30.0,
) -> ImageDataset:
    """Load a split of CIFAR-10/100 (or any data set in the official python format).

    See the module docstring for the search order. Raises :class:`~irad.errors.DataError` that
    says which URL was tried, which folders were searched and how to point irad at a local copy
    when nothing is found and the download fails (or ``download=False``).

    Shape:
        ``x``: ``(N, 32, 32, 3)`` uint8; ``y``: ``(N,)`` int64 (``N`` = 50000 train, 10000 test).

    Example:
        >>> test = load_cifar("cifar10", "test", "/data")  # doctest: +SKIP
        >>> test.x.shape  # doctest: +SKIP
        torch.Size([10000, 32, 32, 3])
    """
    if isinstance(source, str):
        if source not in CIFAR_SOURCES:
            raise ConfigError(f"unknown CIFAR data set {source!r}; known: {sorted(CIFAR_SOURCES)}")
        source = CIFAR_SOURCES[source]
    if split not in source.splits:
        raise ConfigError(
            f"{source.name} has no split {split!r}; choose one of {sorted(source.splits)}"
        )
    root, origin = resolve_data_dir(data_dir)
    cache = root / source.name
    name = f"{source.name}/{split}"

    # A bare {split}.npz in a folder named after another data set belongs to that one.
    other_names = {n for n in CIFAR_SOURCES if n != source.name}
    npz_candidates = [cache / f"{split}.npz"]
    if root.name.lower() not in other_names:
        npz_candidates.insert(0, root / f"{split}.npz")
    for npz in npz_candidates:
        if npz.is_file():
            return ImageDataset.from_npz(npz, name=name, classes=source.classes)
    for folder in (root / source.folder, cache / source.folder):
        if folder.is_dir():
            return _dataset_from_folder(folder, source, split, cache)
    for tarball in (root / source.filename, cache / source.filename):
        if tarball.is_file():
            folder = _folder_from_tarball(tarball, source, cache)
            return _dataset_from_folder(folder, source, split, cache)

    searched = [*npz_candidates, root / source.folder, cache / source.folder]
    searched += [root / source.filename, cache / source.filename]
    if download:
        tarball = cache / source.filename
        new_dirs = [d for d in (root, cache) if not d.exists()]
        try:
            download_url(source.url, tarball, sha256=source.sha256, md5=source.md5, timeout=timeout)
        except DataError as err:
            for d in reversed(new_dirs):  # leave no empty folders behind a failed download
                with contextlib.suppress(OSError):
                    d.rmdir()
            problem = f"no local copy found and the download failed: {err}"
        else:
            folder = _folder_from_tarball(tarball, source, cache)
            return _dataset_from_folder(folder, source, split, cache)
    else:
        problem = f"no local copy found and download=False (would have tried {source.url})"
    lines = "\n".join(f"    {p}" for p in searched)
    raise DataError(
        f"cannot load {name}: {problem}\n"
        f"  data folder: {root} ({origin}); looked for:\n{lines}\n{_how_to_fix(source, root)}"
    )
