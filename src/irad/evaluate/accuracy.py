"""Clean accuracy (and mean cross-entropy) of a classifier on a data set: the one loop, used by
``irad classify`` and by training's per-epoch evaluation."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from irad.checks import check_batch_size, check_labels
from irad.data import iterate_batches
from irad.errors import InputError


@dataclass(frozen=True)
class AccuracyResult:
    """Counts and timing of one accuracy run.

    Attributes:
        correct: images classified correctly.
        total: images evaluated.
        accuracy: ``correct / total``, a fraction in [0, 1] (see :attr:`percent`).
        seconds: wall time of the loop (data, transfer and forward passes).
        images_per_second: ``total / seconds``.
        loss: mean cross-entropy of the logits (float32) over the images.
    """

    correct: int
    total: int
    accuracy: float
    seconds: float
    images_per_second: float
    loss: float = float("nan")

    @property
    def percent(self) -> float:
        """Accuracy in percent."""
        return 100.0 * self.accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy(
    classifier: nn.Module,
    dataset: Any,
    batch_size: int = 500,
    device: str | torch.device | None = "cpu",
    progress: bool = True,
    *,
    channels_last: bool = False,
) -> AccuracyResult:
    """Top-1 accuracy and mean cross-entropy of ``classifier`` on every image of ``dataset``,
    in its fixed order.

    The classifier is moved to ``device`` (None: it stays where its parameters are) and run in
    eval mode under ``torch.inference_mode``; its previous train/eval mode is restored
    afterwards.

    Args:
        classifier: a module from images in [0, 1] to logits (an :class:`irad.models.Classifier`
            also checks its input).
        dataset: an :mod:`irad.data` data set (anything :func:`irad.data.iterate_batches` takes).
        batch_size: images per forward pass.
        device: where to run.
        progress: show a tqdm bar with the running accuracy.
        channels_last: feed the images in channels-last memory format.

    Shape:
        - Batches: images ``(B, 3, H, W)`` in [0, 1], labels ``(B,)``; logits ``(B, classes)``.

    Example:
        >>> from irad.data import ImageDataset, load_dataset
        >>> from irad.models import load_classifier
        >>> clf = load_classifier("resnet20-12fca82f.th")  # doctest: +SKIP
        >>> result = accuracy(clf, load_dataset("cifar10"))  # doctest: +SKIP
        >>> f"{result.percent:.2f} %"  # doctest: +SKIP
        '91.73 %'

        A classifier that always answers class 0, on three images of class 0 and one of class 1:

        >>> always_0 = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
        >>> _ = always_0[1].weight.data.zero_(), always_0[1].bias.data.copy_(torch.tensor([1., 0.]))
        >>> images = torch.zeros(4, 4, 4, 3, dtype=torch.uint8)
        >>> result = accuracy(always_0, ImageDataset(images, torch.tensor([0, 0, 0, 1])))
        >>> result.correct, result.total, result.percent
        (3, 4, 75.0)
    """
    check_batch_size(batch_size)
    total_images = len(dataset)
    if total_images == 0:
        raise InputError("the data set is empty: there is nothing to measure accuracy on")
    if device is None:
        tensor = next(iter(classifier.parameters()), None)
        device = tensor.device if tensor is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = classifier.training
    classifier.to(device).eval()
    correct = total = 0
    loss_sum = 0.0
    bar = tqdm(
        total=total_images, unit="img", desc="accuracy", disable=not progress, dynamic_ncols=True
    )
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            for x, y in iterate_batches(dataset, batch_size):
                check_labels(y, x.shape[0])
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = classifier(x).float()
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
                total += int(y.shape[0])
                bar.update(int(y.shape[0]))
                bar.set_postfix(acc=f"{100.0 * correct / total:.2f}%", refresh=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        bar.close()
        classifier.train(was_training)
    seconds = time.perf_counter() - start
    return AccuracyResult(
        correct=correct,
        total=total,
        accuracy=correct / total,
        seconds=seconds,
        images_per_second=total / seconds if seconds > 0 else float("inf"),
        loss=loss_sum / total,
    )
