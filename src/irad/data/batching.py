"""Mini-batches in a seeded order that can be resumed mid-epoch."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from irad.checks import check_batch_size, check_int
from irad.data.folder import stack_images
from irad.errors import InputError


def num_batches(dataset: Sequence[Any], batch_size: int, drop_last: bool = False) -> int:
    """How many batches :func:`iterate_batches` yields for these settings."""
    check_batch_size(batch_size)
    n = len(dataset)
    return n // batch_size if drop_last else -(-n // batch_size)


def batch_seed(seed: int, batch: int) -> int:
    """A 63-bit seed for batch ``batch`` of a run seeded with ``seed``.

    Hashing (rather than ``seed + batch``) keeps the streams of neighbouring seeds apart, and
    deriving it from the batch index makes a resumed run draw the same augmentation.
    """
    digest = hashlib.sha256(f"irad-batch:{seed}:{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _take(dataset: Sequence[Any], rows: Tensor) -> tuple[Tensor, Tensor]:
    take = getattr(dataset, "take", None)
    if take is not None:
        return take(rows)
    # Any sequence of (image [3, H, W], label) pairs works, just more slowly.
    items = [dataset[i] for i in rows.tolist()]
    x = stack_images([im for im, _ in items], [f"item {i}" for i in rows.tolist()])
    return x, torch.as_tensor([int(label) for _, label in items], dtype=torch.int64)


def _accepts_generator(fn: Callable[..., Tensor]) -> bool:
    # An nn.Module's __call__ takes **kwargs; what counts is its forward.
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def iterate_batches(
    dataset: Sequence[Any],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int | None = None,
    augment: Callable[..., Tensor] | None = None,
    drop_last: bool = False,
    start_batch: int = 0,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` batches of ``dataset`` in order, or in a seeded shuffled order.

    ``shuffle=True`` draws the order from ``seed`` alone (a fresh ``torch.Generator``, so the
    global RNG does not matter; with ``seed=None`` one seed is drawn from the global RNG).
    ``augment`` is called per batch as ``augment(x, generator=g)`` (or ``augment(x)`` if it takes
    no generator) with ``g`` seeded from ``(seed, batch index)``. ``start_batch=k`` skips the
    first ``k`` batches of the same order: a run resumed at batch ``k`` sees exactly the batches
    and augmentations that the uninterrupted run would have.

    An :class:`~irad.data.ImageDataset` is batched by tensor indexing (fast); an
    :class:`~irad.data.ImageFolderDataset` loads its images per batch.

    Shape:
        yields ``x``: ``(B, 3, H, W)`` float in [0, 1]; ``y``: ``(B,)`` int64, ``B <= batch_size``.

    Example:
        >>> from irad.data import ImageDataset
        >>> ds = ImageDataset(torch.zeros(10, 4, 4, 3, dtype=torch.uint8), torch.arange(10))
        >>> [len(y) for _, y in iterate_batches(ds, 4)]
        [4, 4, 2]
        >>> full = [y for _, y in iterate_batches(ds, 4, shuffle=True, seed=0)]
        >>> resumed = [y for _, y in iterate_batches(ds, 4, shuffle=True, seed=0, start_batch=2)]
        >>> torch.equal(full[2], resumed[0])
        True
    """
    total = num_batches(dataset, batch_size, drop_last)
    check_int(start_batch, f"start_batch (of {total} batches)", 0, total)
    if augment is not None and not callable(augment):
        raise InputError(f"augment must be callable, got {type(augment).__name__}")
    if seed is None and (shuffle or augment is not None):
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return _batches(dataset, batch_size, shuffle, seed, augment, total, start_batch)


def _batches(
    dataset: Sequence[Any],
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    augment: Callable[..., Tensor] | None,
    total: int,
    start_batch: int,
) -> Iterator[tuple[Tensor, Tensor]]:
    n = len(dataset)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    else:
        order = torch.arange(n)
    with_generator = augment is not None and _accepts_generator(augment)
    for b in range(start_batch, total):
        x, y = _take(dataset, order[b * batch_size : (b + 1) * batch_size])
        if augment is not None:
            if with_generator:
                g = torch.Generator().manual_seed(batch_seed(int(seed), b))
                x = augment(x, generator=g)
            else:
                x = augment(x)
        yield x, y


def channel_stats(
    dataset: Sequence[Any],
    *,
    max_images: int | None = 10_000,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of a data set's pixels in [0, 1].

    What a classifier trained on the data normalises its input with (``build_classifier(...,
    mean=..., std=...)``). Over every image, or a seeded random ``max_images`` of them
    (``None``: all; data sets with a ``subset`` method) so that a large folder is not read
    whole; sums in float64.

    Returns:
        ``(mean, std)``, three floats each (R, G, B), rounded to 4 decimals.

    Example:
        >>> from irad.data import ImageDataset
        >>> ds = ImageDataset(torch.full((2, 4, 4, 3), 51, dtype=torch.uint8), [0, 1])
        >>> channel_stats(ds)
        ([0.2, 0.2, 0.2], [0.0, 0.0, 0.0])
    """
    if max_images is not None and len(dataset) > max_images and hasattr(dataset, "subset"):
        dataset = dataset.subset(max_images, seed=seed)
    if len(dataset) == 0:
        raise InputError("channel_stats: the data set is empty")
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    for x, _ in iterate_batches(dataset, batch_size):
        x = x.double()
        total += x.sum(dim=(0, 2, 3))
        squares += x.pow(2).sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp_min(0).sqrt()
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]
