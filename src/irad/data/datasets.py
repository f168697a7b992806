"""In-memory labelled image sets: uint8 NHWC storage, float NCHW in [0, 1] on the way out."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from irad.checks import check_choice, check_seed
from irad.data.npz import read_npz, write_npz
from irad.errors import DataError, InputError

#: How a subset of ``n`` images is picked (:func:`select_subset`, the CLI's ``--subset``).
SUBSET_METHODS = ("first", "random", "stratified")


class FewClassesWarning(UserWarning):
    """A "first n" subset holds far fewer classes than its data set (sorted by class?)."""


def _stratified_rows(labels: Tensor, n: int, seed: int | None) -> Tensor:
    """``n`` rows with every class in proportion to its size (largest shares first).

    Each row gets the key ``(rank in its class + 0.5) / class size`` (ranks in data-set order,
    or in a seeded random order); the ``n`` smallest keys win, ties in that same order. So each
    class gets ``n * size / total`` rows up to rounding, and the subsets are nested in ``n``.
    """
    total = labels.numel()
    if seed is None:
        order = torch.arange(total)
    else:
        order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))
    ordered = labels[order]
    key = torch.empty(total, dtype=torch.float64)
    for label in torch.unique(ordered).tolist():
        where = (ordered == label).nonzero().flatten()
        key[where] = (torch.arange(where.numel(), dtype=torch.float64) + 0.5) / where.numel()
    return order[torch.sort(key, stable=True).indices[:n]].sort().values


def warn_if_few_classes(labels: Tensor, rows: Tensor, what: str) -> None:
    """Warn (:class:`FewClassesWarning`) when ``rows``, the first rows of a data set, hold
    less than half the classes they could: the usual sign of a data set sorted by class."""
    if rows.numel() == 0 or labels.numel() == 0:
        return
    present = int(torch.unique(labels).numel())
    got = int(torch.unique(labels.index_select(0, rows)).numel())
    if 2 * got < min(present, rows.numel()):
        warnings.warn(
            f"{what}: the first {rows.numel()} images hold only {got} of the {present} classes "
            "of the data set (it is probably sorted by class), so a score on them says little; "
            "pick a random or stratified subset instead (--subset random or --subset "
            "stratified on the command line; subset(n, seed=0) or subset(n, seed=0, "
            "stratify=True) in Python)",
            FewClassesWarning,
            stacklevel=3,
        )


def select_indices(
    total: int,
    n: int | None = None,
    *,
    seed: int | None = None,
    indices: Sequence[int] | Tensor | None = None,
    labels: Tensor | None = None,
    stratify: bool = False,
) -> tuple[Tensor, str]:
    """Pick the rows of a subset and describe how they were picked.

    ``n`` alone takes the first ``n`` rows; ``n`` with ``seed`` takes a seeded random ``n`` rows
    (kept in data-set order, and nested: the subset for a smaller ``n`` and the same seed is
    contained in the one for a larger ``n``); ``stratify=True`` (needs ``labels``) takes every
    class in proportion to its size, the rows of each class first-come or, with ``seed``, in a
    seeded random order (nested too); ``indices`` takes exactly those rows.

    Returns ``(rows, description)`` with ``rows`` an int64 tensor.

    Example:
        >>> labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
        >>> select_indices(8, 4, labels=labels, stratify=True)
        (tensor([0, 1, 4, 5]), 'stratified 4')
    """
    if indices is not None:
        if n is not None or seed is not None or stratify:
            raise InputError("subset: pass either indices or n (with an optional seed), not both")
        rows = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if rows.numel() and (int(rows.min()) < -total or int(rows.max()) >= total):
            raise InputError(
                f"subset: indices must lie in [0, {total}), got values in "
                f"[{int(rows.min())}, {int(rows.max())}]"
            )
        rows = torch.where(rows < 0, rows + total, rows)
        return rows, f"indices ({rows.numel()} rows)"
    if n is None:
        if seed is not None or stratify:
            raise InputError("subset: a seed or stratify needs a size n (subset(n, seed=...))")
        return torch.arange(total), "all"
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise InputError(f"subset: n must be a non-negative integer, got {n!r}")
    if n > total:
        raise InputError(f"subset: asked for {n} images but the data set has only {total}")
    if stratify:
        if labels is None or labels.numel() != total:
            raise InputError("subset: stratify=True needs the label of every row")
        rows = _stratified_rows(labels, n, seed)
        return rows, f"stratified {n}" + ("" if seed is None else f", seed {seed}")
    if seed is None:
        return torch.arange(n), f"first {n}"
    generator = torch.Generator().manual_seed(int(seed))
    rows = torch.randperm(total, generator=generator)[:n].sort().values
    return rows, f"random {n}, seed {seed}"


def subset_rows(
    dataset: Any,
    n: int | None,
    *,
    seed: int | None,
    indices: Sequence[int] | Tensor | None,
    stratify: bool,
) -> tuple[Tensor, str]:
    """:func:`select_indices` for a data set with labels ``.y``, plus the first-``n`` warning.

    The one implementation behind every ``subset`` method (in-memory sets, image folders,
    adversarial pairs).
    """
    rows, how = select_indices(
        len(dataset), n, seed=seed, indices=indices, labels=dataset.y, stratify=stratify
    )
    if how.startswith("first "):
        warn_if_few_classes(dataset.y, rows, str(getattr(dataset, "description", "subset")))
    return rows, how


def select_subset(dataset: Any, n: int | None, method: str = "first", seed: int = 0) -> Any:
    """The subset of ``n`` images picked by ``method`` (one of :data:`SUBSET_METHODS`).

    ``"first"``: the first ``n`` in data-set order; ``"random"``: a seeded random ``n``;
    ``"stratified"``: every class in proportion to its size, seeded. ``n=None`` keeps the whole
    data set (in its order, whatever the method). Works for every data set with
    ``subset(n, seed=..., stratify=...)``: :class:`ImageDataset`, image folders, pairs.

    Example:
        >>> ds = ImageDataset(torch.zeros(6, 2, 2, 3, dtype=torch.uint8), [0, 0, 0, 1, 1, 1])
        >>> select_subset(ds, 2, "stratified").y.tolist()
        [0, 1]
    """
    method = check_choice(method, "subset method (--subset)", SUBSET_METHODS)
    seed = check_seed(seed, "subset seed (--subset-seed)")
    if n is None:
        return dataset
    if method == "first":
        return dataset.subset(n)
    return dataset.subset(n, seed=seed, stratify=method == "stratified")


def dataset_record(dataset: Any) -> dict[str, Any]:
    """What a training run records about its data (name, description, size, fingerprint), so
    that a resumed run can check it trains on the same images."""
    fingerprint = getattr(dataset, "fingerprint", None)
    return {
        "name": getattr(dataset, "name", type(dataset).__name__),
        "description": getattr(dataset, "description", None),
        "size": len(dataset),
        "fingerprint": fingerprint() if callable(fingerprint) else None,
    }


def _as_uint8_images(x: object) -> Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if x.dtype != torch.uint8:
        raise InputError(f"ImageDataset.x must be uint8 [N, H, W, 3], got dtype {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != 3:
        hint = " (it looks like NCHW: use x.permute(0, 2, 3, 1))" if x.ndim == 4 else ""
        raise InputError(f"ImageDataset.x must have shape [N, H, W, 3], got {tuple(x.shape)}{hint}")
    return x


def _as_labels(y: object, n: int) -> Tensor:
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InputError(f"ImageDataset.y must be integer labels, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != n:
        raise InputError(f"ImageDataset.y must have shape [{n}], got {tuple(y.shape)}")
    y = y.to(torch.int64)
    if n and int(y.min()) < 0:
        raise InputError(f"ImageDataset.y must be non-negative class ids, got {int(y.min())}")
    return y


class ImageDataset:
    """Labelled images held in memory as uint8 ``[N, H, W, 3]`` (the compact on-disk layout).

    Items and batches come out as float ``[3, H, W]`` in [0, 1], the input every irad classifier,
    defense and attack expects.

    Args:
        x: uint8 images ``[N, H, W, 3]`` (tensor or NumPy array).
        y: integer labels ``[N]``.
        classes: class names; label ``k`` is ``classes[k]``. Default: ``"0" ... "K-1"``.
        name: short name used in reports, e.g. ``"cifar10/test"``.
        description: how the set was made (subsets append to it).
        source_indices: row of each image in the full data set it was cut from (default: 0..N-1).

    Shape:
        - ``x``: ``(N, H, W, 3)`` uint8; ``y``: ``(N,)`` int64.
        - ``dataset[i]``: ``((3, H, W) float in [0, 1], int)``.
        - ``tensors()``: ``((N, 3, H, W) float in [0, 1], (N,) int64)``.

    Example:
        >>> ds = ImageDataset(torch.zeros(4, 8, 8, 3, dtype=torch.uint8), torch.arange(4) % 2)
        >>> x, label = ds[1]
        >>> tuple(x.shape), label
        ((3, 8, 8), 1)
        >>> len(ds.subset(2, seed=0))
        2
    """

    def __init__(
        self,
        x: Tensor | np.ndarray,
        y: Tensor | np.ndarray | Sequence[int],
        classes: Sequence[str] | None = None,
        name: str = "images",
        *,
        description: str | None = None,
        source_indices: Tensor | None = None,
    ) -> None:
        self.x = _as_uint8_images(x)
        self.y = _as_labels(y, self.x.shape[0])
        n_labels = int(self.y.max()) + 1 if len(self.y) else 0
        if classes is None:
            classes = [str(k) for k in range(n_labels)]
        self.classes = [str(c) for c in classes]
        if n_labels > len(self.classes):
            raise InputError(
                f"{name}: label {n_labels - 1} has no class name "
                f"(only {len(self.classes)} classes given)"
            )
        self.name = name
        self.description = description or name
        self.source_indices = (
            torch.arange(len(self.y)) if source_indices is None else source_indices.to(torch.int64)
        )
        self._fingerprint: str | None = None

    # -- sequence protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {self.name} with {len(self)} images")
        return self.x[i].permute(2, 0, 1).float().div_(255), int(self.y[i])

    def __repr__(self) -> str:
        _, h, w = self.image_shape
        return (
            f"ImageDataset({self.description!r}, {len(self)} images {h}x{w}, "
            f"{self.num_classes} classes)"
        )

    # -- properties ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(3, H, W)``: the shape of one item."""
        return 3, int(self.x.shape[1]), int(self.x.shape[2])

    # -- derived sets and tensors ---------------------------------------------------------------
    def subset(
        self,
        n: int | None = None,
        *,
        seed: int | None = None,
        indices: Sequence[int] | Tensor | None = None,
        stratify: bool = False,
    ) -> ImageDataset:
        """A deterministic subset: the first ``n``, a seeded random ``n``, every class in
        proportion (``stratify=True``), or given ``indices`` (see :func:`select_indices`).

        The result records how it was made in ``.description`` (e.g.
        ``"cifar10/test[random 1000, seed 0]"``) and the original row of each image in
        ``.source_indices``. A first-``n`` subset that holds far fewer classes than the data set
        (a data set sorted by class) gives a :class:`FewClassesWarning`.
        """
        rows, how = subset_rows(self, n, seed=seed, indices=indices, stratify=stratify)
        return ImageDataset(
            self.x[rows],
            self.y[rows],
            self.classes,
            self.name,
            description=f"{self.description}[{how}]",
            source_indices=self.source_indices[rows],
        )

    def take(self, rows: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
        """Images ``rows`` as a batch ``(x float [B, 3, H, W] in [0, 1], y int64 [B])``."""
        rows = torch.as_tensor(rows, dtype=torch.int64).reshape(-1)
        # index_select: much faster than fancy indexing for this gather of whole images.
        x = self.x.index_select(0, rows).permute(0, 3, 1, 2).float().div_(255)
        return x, self.y.index_select(0, rows)

    def tensors(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """All images as ``(x float [N, 3, H, W] in [0, 1], y int64 [N])``."""
        if not dtype.is_floating_point:
            raise InputError(f"tensors: dtype must be a floating-point dtype, got {dtype}")
        return self.x.permute(0, 3, 1, 2).to(dtype).div_(255), self.y.clone()

    def fingerprint(self) -> str:
        """sha256 over shape, pixels and labels: a cache key that changes when the data does."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(f"ImageDataset:{tuple(self.x.shape)}".encode())
            h.update(self.x.contiguous().numpy().tobytes())
            h.update(self.y.contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    # -- files ---------------------------------------------------------------------------------
    @classmethod
    def from_npz(
        cls,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        classes: Sequence[str] | None = None,
    ) -> ImageDataset:
        """Load an ``.npz`` with ``x`` uint8 ``[N, H, W, 3]`` and ``y`` int ``[N]``.

        Class names come from the file's optional ``classes`` array, else ``classes``, else
        ``"0" ... "K-1"``. Raises :class:`~irad.errors.DataError` naming the file and the problem
        when the file is missing, corrupt, or holds the wrong keys, dtypes or shapes.
        """
        path = Path(path)
        x, y, file_classes = read_npz(path, num_classes=len(classes) if classes else None)
        if file_classes is not None and classes is not None and list(file_classes) != list(classes):
            raise DataError(
                f"{path}: its class names {file_classes[:3]}... differ from the expected "
                f"{list(classes)[:3]}...; is this file from another data set?"
            )
        return cls(
            torch.from_numpy(x),
            torch.from_numpy(y),
            file_classes if file_classes is not None else classes,
            name or path.stem,
            description=name or str(path),
        )

    def save_npz(self, path: str | os.PathLike[str]) -> Path:
        """Write ``x``, ``y`` and ``classes`` to an uncompressed ``.npz`` atomically."""
        return write_npz(path, self.x.numpy(), self.y.numpy(), self.classes)
