"""The evaluation images: an irad data set (first ``n`` images) or a pair of tensors, in
fixed-order batches, with the fingerprint that keys every cached result."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from torch import Tensor

from irad.checks import check_images, check_labels
from irad.errors import ConfigError, InputError


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
                self._check_n(n, x.shape[0])
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
            return
        if not hasattr(dataset, "__len__"):
            raise InputError(
                f"data set of type {type(dataset).__name__} is not supported: pass an irad data "
                "set (irad.data.load_dataset) or a pair (images [N,3,H,W] in [0,1], labels [N])"
            )
        if n is not None:
            self._check_n(n, len(dataset))
            if n < len(dataset):
                dataset = dataset.subset(n)
        self.dataset = dataset
        self._x = self._y = None
        self.n = len(dataset)
        self.name = str(getattr(dataset, "name", type(dataset).__name__))
        self.description = str(getattr(dataset, "description", f"{self.n} images"))
        fingerprint = getattr(dataset, "fingerprint", None)
        self.fingerprint = fingerprint() if callable(fingerprint) else self._hash_batches()

    @staticmethod
    def _check_n(n: int, size: int) -> None:
        if n < 1 or n > size:
            raise ConfigError(f"n must be between 1 and the data set size {size}, got {n}")

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

    def batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self._x is not None:
            for start in range(0, self.n, batch_size):
                yield self._x[start : start + batch_size], self._y[start : start + batch_size]
            return
        from irad.data import iterate_batches

        yield from iterate_batches(self.dataset, batch_size)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "n": self.n,
            "fingerprint": self.fingerprint,
        }
