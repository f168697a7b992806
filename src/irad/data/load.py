"""One entry point that turns a data-set name or path into a data set."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from irad.data.cifar import load_cifar
from irad.data.datasets import ImageDataset
from irad.data.folder import ImageFolderDataset
from irad.errors import ConfigError, DataError
from irad.registry import Registry

# Anything load_dataset returns; both share subset, take, tensors and fingerprint.
Dataset = ImageDataset | ImageFolderDataset

#: The built-in data sets by name, with the spellings people use as aliases
#: (``cifar_10`` is ``cifar-10``). Each factory takes ``(split, data_dir, download=...)``.
DATASETS: Registry[ImageDataset] = Registry("data set")
DATASETS.register("cifar10", "cifar-10")(partial(load_cifar, "cifar10"))
DATASETS.register("cifar100", "cifar-100")(partial(load_cifar, "cifar100"))


def load_dataset(
    name_or_path: str | os.PathLike[str],
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    image_size: int | None = None,
) -> Dataset:
    """Load a data set by name (``"cifar10"``, ``"cifar100"``) or path.

    - ``"cifar10"`` / ``"cifar100"``: the data root is ``data_dir`` (the CLI's ``--data-dir``),
      else ``$IRAD_DATA``, else ``~/.cache/irad/data``; a local copy there is used
      (``{split}.npz``, ``{name}/{split}.npz``, the extracted official folder or tarball),
      otherwise the official tarball is downloaded (``download=True``), checked and cached.
    - a ``.npz`` file with ``x`` uint8 ``[N, H, W, 3]`` and ``y`` int ``[N]``.
    - a folder holding ``{split}.npz``, or a ``{split}/`` image folder, or itself an image
      folder with one sub-folder per class (``image_size`` resizes and center-crops those).

    Shape:
        items ``(3, H, W)`` float in [0, 1]; ``ImageDataset.x`` is ``(N, H, W, 3)`` uint8.

    Example:
        >>> test = load_dataset("cifar10", "test")  # doctest: +SKIP
        >>> test.subset(1000, seed=0).description  # doctest: +SKIP
        'cifar10/test[random 1000, seed 0]'
    """
    text = str(name_or_path)
    if text in DATASETS:  # names win; write ./cifar10 for a local folder of that name
        if image_size is not None:
            raise ConfigError(
                f"image_size applies to image folders, not to {DATASETS.canonical(text)}"
            )
        return DATASETS.get(text)(split, data_dir, download=download)

    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise DataError(f"{path}: expected an .npz file or a folder, got a {path.suffix} file")
        return ImageDataset.from_npz(path)
    if path.is_dir():
        if (path / f"{split}.npz").is_file():
            return ImageDataset.from_npz(path / f"{split}.npz", name=f"{path.name}/{split}")
        folder = path / split if (path / split).is_dir() else path
        return ImageFolderDataset(folder, image_size)
    if path.suffix or os.sep in text or "/" in text:
        raise DataError(f"{path}: no such file or folder (expected a .npz file or an image folder)")
    # Neither a path nor a known name: the registry's error suggests close names.
    otherwise = "or pass the path of a .npz file or of an image folder (a sub-folder per class)"
    return DATASETS.get(text, otherwise=otherwise)(split, data_dir, download=download)


def in_memory(dataset: Dataset, max_bytes: int | None = None) -> ImageDataset:
    """``dataset`` as an :class:`ImageDataset`: an image folder is loaded into memory.

    For the work that needs every pixel at hand (adversarial pairs). The size is checked
    before any image is read (:meth:`ImageFolderDataset.to_memory`: ``max_bytes``, default
    ``$IRAD_MAX_MEMORY_GB`` or 8 GiB); take a subset first to load only that.

    Example:
        >>> train = in_memory(load_dataset("data/train").subset(500, seed=0))  # doctest: +SKIP
    """
    if isinstance(dataset, ImageDataset):
        return dataset
    return dataset.to_memory(max_bytes)


def is_named_dataset(name_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``name_or_path`` names a built-in data set (``cifar10``) rather than a path."""
    return str(name_or_path) in DATASETS
