"""One entry point that turns a data-set name or path into a data set."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from irad.data.cifar import CIFAR_SOURCES, load_cifar
from irad.data.datasets import ImageDataset
from irad.data.folder import ImageFolderDataset
from irad.errors import ConfigError, DataError

# Anything load_dataset returns; both share subset, take, tensors and fingerprint.
Dataset = ImageDataset | ImageFolderDataset

# Spellings people use for the built-in sets.
_ALIASES = {
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
}


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
    key = _ALIASES.get(text.strip().lower(), text.strip().lower())
    if key in CIFAR_SOURCES:  # names win; write ./cifar10 for a local folder of that name
        if image_size is not None:
            raise ConfigError(f"image_size applies to image folders, not to {key}")
        return load_cifar(key, split, data_dir, download=download)

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
    close = difflib.get_close_matches(key, list(CIFAR_SOURCES), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown data set {text!r}{hint} Known names: {', '.join(CIFAR_SOURCES)}; "
        "or pass the path of a .npz file or of an image folder (one sub-folder per class)"
    )
