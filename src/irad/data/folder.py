"""A folder of images, one sub-folder per class (the ImageNet-validation layout), loaded lazily."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from irad.checks import check_int
from irad.data.datasets import ImageDataset, subset_rows
from irad.data.image_io import (
    IMAGE_EXTENSIONS,
    find_images,
    image_size,
    is_image_file,
    read_rgb,
    to_uint8,
)
from irad.errors import DataError, InputError

#: Environment variable: how many GiB an image folder may take once loaded into memory.
MEMORY_ENV = "IRAD_MAX_MEMORY_GB"
#: Default of that limit, in GiB (uint8 pixels: 50,000 CIFAR images take 0.14 GiB).
DEFAULT_MEMORY_GB = 8.0


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.3g} MiB"


def memory_limit() -> int:
    """Bytes an image folder may take in memory: ``$IRAD_MAX_MEMORY_GB``, else 8 GiB."""
    text = os.environ.get(MEMORY_ENV)
    if text is None or not text.strip():
        return int(DEFAULT_MEMORY_GB * 2**30)
    try:
        gib = float(text)
    except ValueError:
        gib = -1.0
    if not gib > 0:
        raise InputError(f"${MEMORY_ENV} must be a positive number of GiB, got {text!r}")
    return int(gib * 2**30)


def resize_center_crop(image: Image.Image, size: int, resize: int | None = None) -> Image.Image:
    """Resize the shorter side to ``resize`` (default ``size``), then center-crop ``size x size``.

    Bilinear resampling with PIL's built-in antialiasing, the usual ImageNet evaluation
    preprocessing (e.g. ``resize=256, size=224``).
    """
    resize = size if resize is None else resize
    w, h = image.size
    scale = resize / min(w, h)
    new_w, new_h = max(resize, round(w * scale)), max(resize, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left = round((new_w - size) / 2)
    top = round((new_h - size) / 2)
    return image.crop((left, top, left + size, top + size))


def stack_images(images: Sequence[Tensor], paths: Sequence[object] = ()) -> Tensor:
    """Stack ``[3, H, W]`` images into a batch, with a clear error when their sizes differ."""
    sizes = {tuple(im.shape[-2:]) for im in images}
    if len(sizes) > 1:
        shown = ", ".join(
            f"{p}: {tuple(im.shape[-2:])}" for p, im in zip(paths, images, strict=False)
        )
        raise InputError(
            f"cannot batch images of different sizes {sorted(sizes)}"
            f"{' (' + shown[:300] + ')' if shown else ''}; pass image_size=S to "
            "ImageFolderDataset (or --image-size S) to resize and center-crop them, "
            "or use batch_size=1"
        )
    return torch.stack(list(images))


class ImageFolderDataset:
    """Images in ``root/<class name>/**/<image>``, loaded lazily with PIL and converted to RGB.

    Classes are the sorted sub-folder names (empty ones included, so labels stay put); label
    ``k`` is ``classes[k]``. Any image size is
    accepted; ``image_size=S`` resizes the shorter side to ``resize`` (default ``S``) and
    center-crops ``S x S`` so the images can be batched.

    Args:
        root: the folder holding one sub-folder per class.
        image_size: output size ``S`` (None keeps every image's own size).
        resize: shorter side before the crop (default ``image_size``), e.g. 256 for 224 crops.
        classes: the full class list in label order (e.g. all 1000 ImageNet ids) when the folder
            holds only some of them; default: the sorted sub-folder names.
        name: short name used in reports (default: the folder name).

    Shape:
        - ``dataset[i]``: ``((3, H, W) float in [0, 1], int)``.
        - ``tensors()``: ``((N, 3, S, S) float in [0, 1], (N,) int64)`` (needs equal sizes).

    Example:
        >>> ds = ImageFolderDataset("imagenet/val", image_size=224, resize=256)  # doctest: +SKIP
        >>> x, label = ds[0]; tuple(x.shape)  # doctest: +SKIP
        (3, 224, 224)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        image_size: int | None = None,
        *,
        resize: int | None = None,
        classes: Sequence[str] | None = None,
        name: str | None = None,
    ) -> None:
        root = Path(root).expanduser()
        if image_size is not None:
            image_size = check_int(image_size, "image_size", 1)
        if resize is not None:
            if image_size is None:
                raise InputError("resize needs image_size (the crop size after resizing)")
            resize = check_int(resize, "resize (at least image_size)", image_size)
        self.root = root
        self.image_size = image_size
        self.resize = resize
        self.name = name or root.name
        self.description = self.name
        self.classes, self.samples = _scan(root, classes)
        self.y = torch.tensor([label for _, label in self.samples], dtype=torch.int64)
        self.source_indices = torch.arange(len(self.samples))
        self._fingerprint: str | None = None

    # -- sequence protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.name} with {len(self)} images")
        return self.load_uint8(i).permute(2, 0, 1).float().div_(255), int(self.y[i])

    def __repr__(self) -> str:
        size = f"{self.image_size}x{self.image_size}" if self.image_size else "any size"
        return (
            f"ImageFolderDataset({self.description!r}, {len(self)} images {size}, "
            f"{self.num_classes} classes)"
        )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # -- loading --------------------------------------------------------------------------------
    def load_uint8(self, i: int) -> Tensor:
        """Image ``i`` as uint8 ``[H, W, 3]`` after the optional resize and crop.

        16-bit grey images are scaled to 8 bits (``v * 255 / 65535``, rounded), never clipped.
        """
        array = to_uint8(read_rgb(self.samples[i][0]))
        if self.image_size is not None:
            image = resize_center_crop(Image.fromarray(array), self.image_size, self.resize)
            array = np.array(image, dtype=np.uint8)
        return torch.from_numpy(array)

    def take(self, rows: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Images ``rows`` as a batch ``(x float [B, 3, H, W] in [0, 1], y int64 [B])``."""
        rows = torch.as_tensor(rows, dtype=torch.int64).reshape(-1).tolist()
        images = [self.load_uint8(i).permute(2, 0, 1) for i in rows]
        x = stack_images(images, [self.samples[i][0] for i in rows])
        return x.float().div_(255), self.y[rows]

    # -- derived sets and tensors ---------------------------------------------------------------
    def subset(
        self,
        n: int | None = None,
        *,
        seed: int | None = None,
        indices: Sequence[int] | Tensor | None = None,
        stratify: bool = False,
    ) -> ImageFolderDataset:
        """A deterministic subset (see :meth:`ImageDataset.subset`); images stay on disk."""
        rows, how = subset_rows(self, n, seed=seed, indices=indices, stratify=stratify)
        out = object.__new__(ImageFolderDataset)
        out.root, out.image_size, out.resize, out.name = (
            self.root,
            self.image_size,
            self.resize,
            self.name,
        )
        out.classes = self.classes
        out.samples = [self.samples[i] for i in rows.tolist()]
        out.y = self.y[rows]
        out.source_indices = self.source_indices[rows]
        out.description = f"{self.description}[{how}]"
        out._fingerprint = None
        return out

    def tensors(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """All images as ``(x float [N, 3, H, W] in [0, 1], y int64 [N])`` (equal sizes needed)."""
        x, y = self.take(range(len(self)))
        return x.to(dtype), y

    def memory_bytes(self) -> int:
        """Bytes :meth:`to_memory` needs (uint8 pixels; the first image's size stands for all
        when there is no ``image_size``)."""
        if not self.samples:
            return 0
        if self.image_size is not None:
            h = w = self.image_size
        else:
            h, w = image_size(self.samples[0][0])
        return len(self.samples) * h * w * 3

    def to_memory(self, max_bytes: int | None = None) -> ImageDataset:
        """Load every image into an :class:`ImageDataset` (equal sizes needed).

        Refused with a :class:`~irad.errors.DataError` before any image is read when the pixels
        would take more than ``max_bytes`` (default :func:`memory_limit`: ``$IRAD_MAX_MEMORY_GB``
        or 8 GiB).
        """
        limit = memory_limit() if max_bytes is None else int(max_bytes)
        need = self.memory_bytes()
        if need > limit:
            raise DataError(
                f"{self.description}: its {len(self)} images would take {_size(need)} in "
                f"memory, more than the limit of {_size(limit)}; use fewer images (--n), smaller "
                f"ones (image_size), or raise the limit (${MEMORY_ENV}=GiB)"
            )
        images = [self.load_uint8(i) for i in range(len(self))]
        x = stack_images([im.permute(2, 0, 1) for im in images], [p for p, _ in self.samples])
        return ImageDataset(
            x.permute(0, 2, 3, 1),
            self.y,
            self.classes,
            self.name,
            description=self.description,
            source_indices=self.source_indices,
        )

    def fingerprint(self) -> str:
        """sha256 over file contents, labels and preprocessing: a cache key for this set."""
        if self._fingerprint is None:
            h = hashlib.sha256(f"ImageFolder:{self.image_size}:{self.resize}".encode())
            for path, label in self.samples:
                h.update(f"{path.relative_to(self.root)}:{label}:".encode())
                h.update(path.read_bytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def folder_to_npz(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    resize: int | None = None,
    max_bytes: int | None = None,
) -> ImageDataset:
    """Convert an image folder (one sub-folder per class) to the ``.npz`` layout.

    Writes ``x`` uint8 ``[N, H, W, 3]``, ``y`` int64 ``[N]`` and ``classes`` (the sorted
    sub-folder names: label ``k`` is ``classes[k]``) atomically; returns the loaded set.
    ``image_size`` resizes and center-crops images of mixed sizes (see
    :class:`ImageFolderDataset`); ``max_bytes`` as :meth:`ImageFolderDataset.to_memory`.

    Example:
        >>> data = folder_to_npz("data/train", "npz/train.npz")  # doctest: +SKIP
        >>> data.classes  # doctest: +SKIP
        ['cat', 'dog', 'fox']
    """
    data = ImageFolderDataset(root, image_size, resize=resize).to_memory(max_bytes)
    data.save_npz(out)
    return data


def _scan(root: Path, classes: Sequence[str] | None) -> tuple[list[str], list[tuple[Path, int]]]:
    """Find the class folders and their images, in a stable sorted order."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p.name)]
        hint = (
            f" ({len(loose)} images lie directly in it: move them into one sub-folder per class)"
            if loose
            else ""
        )
        raise DataError(f"{root}: no class sub-folders found{hint}")
    if classes is None:
        # Every folder is a class, empty or not, so labels do not shift when one is empty.
        classes = [d.name for d in class_dirs]
    else:
        classes = [str(c) for c in classes]
        unknown = [d.name for d in class_dirs if d.name not in classes]
        if unknown:
            raise DataError(
                f"{root}: sub-folders {unknown[:5]} are not among the {len(classes)} given classes"
            )
    label_of = {c: k for k, c in enumerate(classes)}
    samples: list[tuple[Path, int]] = []
    for class_dir in class_dirs:
        samples += [(path, label_of[class_dir.name]) for path in find_images(class_dir)]
    if not samples:
        raise DataError(
            f"{root}: no images found in its {len(class_dirs)} sub-folders "
            f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)})"
        )
    return classes, samples
