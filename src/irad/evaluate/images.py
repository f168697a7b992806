"""The evaluation images: an irad data set (first ``n`` images) or a pair of tensors, in
fixed-order batches, with the fingerprint that keys every cached result; and the check that
their labels mean what the classifier's outputs mean (:func:`check_classes`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from irad.checks import check_count, check_images, check_labels
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

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "n": self.n,
            "fingerprint": self.fingerprint,
        }


def classifier_classes(classifier: nn.Module) -> list[str] | None:
    """The classifier's class names in output order, where known: a ``classes`` attribute, a
    ``classes`` entry in its config, or the CIFAR data set it was trained on (irad training
    records it)."""
    names = getattr(classifier, "classes", None)
    config = getattr(classifier, "config", None)
    if names is None and isinstance(config, dict):
        names = config.get("classes")
        if names is None:
            from irad.data import CIFAR10_CLASSES, CIFAR100_CLASSES

            train_set = (config.get("training") or {}).get("train_set") or {}
            source = str(train_set.get("name", "")).split("/")[0].lower()
            names = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}.get(source)
    return [str(c) for c in names] if names is not None else None


def _declared(classes: Sequence[str] | None) -> bool:
    """Whether class names were given (not the default "0", "1", ... made from the labels)."""
    return classes is not None and list(classes) != [str(k) for k in range(len(classes))]


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def check_classes(images: EvalImages, classifier: nn.Module) -> None:
    """Refuse data whose labels do not mean the classifier's outputs.

    Label ``k`` is scored as correct when the classifier's output ``k`` is the largest, so the
    data set's classes must be the classifier's, in the same order. Refused: a label beyond the
    classifier's outputs; class names that differ from the classifier's (where both are known);
    a data set that names its classes but has another number of them (a folder with only
    ``cat/`` and ``dog/`` in front of a 10-class classifier would be scored as classes 0 and 1).

    Raises:
        ConfigError: naming both class lists and the fix.
    """
    outputs = getattr(classifier, "num_classes", None)
    if not isinstance(outputs, int):
        x, _ = next(iter(images.batches(1)))
        device = next((p.device for p in classifier.parameters()), torch.device("cpu"))
        with torch.no_grad():
            outputs = int(classifier(x.to(device)).shape[-1])
    if images.max_label >= outputs:
        raise ConfigError(
            f"the labels of {images.name} go up to {images.max_label} but the classifier has "
            f"{outputs} outputs (classes 0 to {outputs - 1}): this data set was not made for "
            "this classifier"
        )
    data = images.classes
    if not _declared(data):
        return
    assert data is not None
    known = classifier_classes(classifier)
    fix = (
        "Evaluate on a data set with the classifier's classes in its label order; an image "
        "folder takes its classes from its sub-folders, sorted, empty ones included, so give it "
        "one sub-folder per class of the classifier"
    )
    if known is not None and list(known) != list(data):
        raise ConfigError(
            f"the classes of {images.name} ({_listing(data)}) are not the classifier's "
            f"({_listing(known)}): label k would be scored as the classifier's class k. {fix}"
        )
    if known is None and len(data) != outputs:
        raise ConfigError(
            f"{images.name} has {len(data)} classes ({_listing(data)}) but the classifier has "
            f"{outputs} outputs: label k would be scored as output k, whatever class that is. "
            f"{fix}{_cifar10_hint(outputs)}"
        )


def _cifar10_hint(outputs: int) -> str:
    if outputs != 10:
        return ""
    from irad.data import CIFAR10_CLASSES

    return f" (CIFAR-10: {', '.join(CIFAR10_CLASSES)})"
