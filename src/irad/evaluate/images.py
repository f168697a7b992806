"""The evaluation images: an irad data set (first ``n`` images) or a pair of tensors, in
fixed-order batches, with the fingerprint that keys every cached result; and the check that
their labels mean what the classifier's outputs mean (:func:`check_classes`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from torch import Tensor, nn

from irad.checks import check_count, check_images, check_labels
from irad.data.classes import check_classes as _check_classes
from irad.errors import InputError


class EvalImages:
    """The evaluation images: an irad data set (first ``n`` images) or an ``(x, y)`` pair.

    Shape:
        - batches: ``x`` float ``(B, 3, H, W)`` in [0, 1], ``y`` int64 ``(B,)``.
    """

    def __init__(self, dataset: Any, n: int | None = None) -> None:
        self.dataset = dataset
        if isinstance(dataset, tuple | list):
            if len(dataset) != 2:
                raise InputError("a tensor data set must be a pair (images, labels)")
            x, y = dataset
            check_images(x, "evaluation images")
            check_labels(y, x.shape[0], "evaluation labels")
            if n is not None:
                check_count(n, "n", int(x.shape[0]), "images of the given tensors")
                x, y = x[:n], y[:n]
            self._x, self._y = x.float().cpu(), y.long().cpu()
            self.name = "tensors"
            self.description = f"first {self._x.shape[0]} of the given tensors"
            h = hashlib.sha256()
            h.update(str(tuple(self._x.shape)).encode())
            h.update(self._x.contiguous().numpy().tobytes())
            h.update(self._y.contiguous().numpy().tobytes())
            self.fingerprint = h.hexdigest()
            self.n = int(self._x.shape[0])
            self.classes: list[str] | None = None
            self.max_label = int(self._y.max()) if self.n else -1
            return
        if not hasattr(dataset, "__len__"):
            raise InputError(
                f"data set of type {type(dataset).__name__} is not supported: pass an irad data "
                "set (irad.data.load_dataset) or a pair (images [N,3,H,W] in [0,1], labels [N])"
            )
        name = str(getattr(dataset, "name", type(dataset).__name__))
        if n is not None:
            check_count(n, "n", len(dataset), f"images of {name}")
            if n < len(dataset):
                dataset = dataset.subset(n)
        self.dataset = dataset
        self._x = self._y = None
        self.n = len(dataset)
        self.name = str(getattr(dataset, "name", type(dataset).__name__))
        self.description = str(getattr(dataset, "description", f"{self.n} images"))
        fingerprint = getattr(dataset, "fingerprint", None)
        self.fingerprint = fingerprint() if callable(fingerprint) else self._hash_batches()
        classes = getattr(dataset, "classes", None)
        self.classes = [str(c) for c in classes] if classes is not None else None
        labels = getattr(dataset, "y", None)
        if isinstance(labels, Tensor):
            self.max_label = int(labels.max()) if labels.numel() else -1
        else:
            self.max_label = max((int(y.max()) for _, y in self.batches(256)), default=-1)

    def _hash_batches(self) -> str:
        h = hashlib.sha256()
        for x, y in self.batches(256):
            h.update(x.contiguous().numpy().tobytes())
            h.update(y.contiguous().numpy().tobytes())
        return h.hexdigest()

    def head(self, n: int) -> EvalImages:
        """The first ``n`` images (all of them when ``n >= self.n``)."""
        if n >= self.n:
            return self
        if self._x is not None:
            return EvalImages((self._x[:n], self._y[:n]))
        return EvalImages(self.dataset, n)

    def num_batches(self, batch_size: int) -> int:
        return -(-self.n // batch_size)

    def ranges(self, batch_size: int) -> list[tuple[int, int]]:
        """``(start, stop)`` image indices of each batch of :meth:`batches`."""
        return [(i, min(i + batch_size, self.n)) for i in range(0, self.n, batch_size)]

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self._x is not None:
            for start in range(0, self.n, batch_size):
                yield self._x[start : start + batch_size], self._y[start : start + batch_size]
            return
        from irad.data import iterate_batches

        yield from iterate_batches(self.dataset, batch_size)

    def batch(self, index: int, batch_size: int) -> tuple[Tensor, Tensor]:
        """Batch ``index`` of :meth:`batches` alone (an image folder loads only its images)."""
        start = index * batch_size
        if not 0 <= start < self.n:
            raise InputError(f"batch {index} of {batch_size} images is outside the {self.n} images")
        if self._x is not None:
            return self._x[start : start + batch_size], self._y[start : start + batch_size]
        from irad.data import iterate_batches

        return next(iter(iterate_batches(self.dataset, batch_size, start_batch=index)))

    def labels(self) -> list[int]:
        """The label of every image, in order."""
        if self._y is not None:
            return [int(v) for v in self._y.tolist()]
        labels = getattr(self.dataset, "y", None)
        if isinstance(labels, Tensor) and labels.shape[0] == self.n:
            return [int(v) for v in labels.tolist()]
        return [int(v) for _, y in self.batches(256) for v in y.tolist()]

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "n": self.n,
            "fingerprint": self.fingerprint,
        }


def check_classes(images: EvalImages, classifier: nn.Module) -> None:
    """Refuse evaluation images whose labels do not mean the classifier's outputs
    (:func:`irad.data.classes.check_classes`, the one check every command uses).

    Raises:
        ConfigError: naming both class lists and the fix.
    """
    _check_classes(
        classifier,
        images.classes,
        images.max_label,
        images.name,
        sample=lambda: next(iter(images.batches(1)))[0],
    )
