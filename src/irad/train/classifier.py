"""The classifier objective: cross-entropy on augmented images, accuracy on a held-out subset."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.checks import check_batch_size, check_float
from irad.data import RandomCropFlip, dataset_record, iterate_batches, num_batches
from irad.errors import InputError
from irad.models import Classifier, save_classifier
from irad.utils.io import atomic_write_json


class ClassifierObjective:
    """Train an image classifier with cross-entropy; an :class:`irad.train.Objective`.

    Each epoch draws the training set in a seeded random order (full batches only, so that batch
    norm and DDP shards see equal batches), augments every batch with a seeded random crop and
    flip, and after the epoch measures accuracy and loss on ``eval_set``.

    Args:
        classifier: the model; an :class:`irad.models.Classifier` (from ``build_classifier``)
            so that the final weights can be saved with their config.
        train_set: an :mod:`irad.data` data set (``ImageDataset`` or ``ImageFolderDataset``).
        eval_set: evaluated after every epoch (``None``: no evaluation). Use a subset for speed.
        batch_size: images per step (must equal ``TrainConfig.batch_size``).
        label_smoothing: cross-entropy label smoothing in [0, 1).
        augment: ``augment(x, generator=g)`` for training batches; default
            ``RandomCropFlip(padding=4)``; ``None`` for none.
        eval_batch_size: images per forward pass during evaluation.
        eval_name: prefix of the evaluation metrics (``"test"`` gives ``test_acc``, ``test_loss``).
        channels_last: keep the classifier's weights and batches in channels-last memory layout
            (the same numbers, up to float round-off; convolutions ran ~20 % faster on a CPU).

    Shape:
        - batches: ``x`` ``(B, 3, H, W)`` float in [0, 1]; ``y`` ``(B,)`` int64.

    Example:
        >>> from irad.data import load_dataset
        >>> from irad.models import build_classifier
        >>> from irad.train import TrainConfig, Trainer
        >>> train = load_dataset("cifar10", "train")  # doctest: +SKIP
        >>> test = load_dataset("cifar10", "test").subset(1000)  # doctest: +SKIP
        >>> objective = ClassifierObjective(
        ...     build_classifier("resnet20"), train, test, batch_size=128)  # doctest: +SKIP
        >>> config = TrainConfig(batch_size=128, out_dir="runs/r20")
        >>> Trainer(objective, config).fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        classifier: nn.Module,
        train_set: Any,
        eval_set: Any | None = None,
        *,
        batch_size: int = 128,
        label_smoothing: float = 0.0,
        augment: Callable[..., Tensor] | str | None = "default",
        eval_batch_size: int = 500,
        eval_name: str = "test",
        channels_last: bool = False,
    ) -> None:
        if not isinstance(classifier, nn.Module):
            raise InputError(f"classifier must be an nn.Module, got {type(classifier).__name__}")
        check_float(label_smoothing, "label_smoothing", 0, 1, high_open=True)
        check_batch_size(batch_size)
        if len(train_set) < batch_size:
            raise InputError(
                f"the training set has {len(train_set)} images, fewer than one batch of "
                f"{batch_size}; lower the batch size"
            )
        num_classes = getattr(classifier, "num_classes", None)
        labels = getattr(train_set, "y", None)
        if num_classes is not None and isinstance(labels, Tensor) and labels.numel():
            top = int(labels.max())
            if top >= num_classes:
                raise InputError(
                    f"the training set has label {top} but the classifier predicts only "
                    f"{num_classes} classes; build it with num_classes={top + 1}"
                )
        self.module = classifier
        self.classifier = classifier
        self.train_set = train_set
        self.eval_set = eval_set
        self.batch_size = batch_size
        self.label_smoothing = float(label_smoothing)
        self.augment = RandomCropFlip(padding=4) if augment == "default" else augment
        self.eval_batch_size = eval_batch_size
        self.eval_name = eval_name
        self.channels_last = channels_last
        if channels_last:
            classifier.to(memory_format=torch.channels_last)
        self.last_evaluation: dict[str, float] = {}

    # -- Objective -----------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return num_batches(self.train_set, self.batch_size, drop_last=True)

    def batches(
        self, epoch: int, generator: torch.Generator, start_batch: int
    ) -> Iterator[tuple[Tensor, Tensor]]:
        # One seed per epoch from the trainer's generator: iterate_batches derives the order
        # from it and each batch's augmentation from (seed, batch index), so resuming at
        # start_batch reproduces the remaining batches exactly.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        return iterate_batches(
            self.train_set,
            self.batch_size,
            shuffle=True,
            seed=seed,
            augment=self.augment,
            drop_last=True,
            start_batch=start_batch,
        )

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = self.module(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return loss, {"acc": acc}

    def evaluate(self) -> dict[str, float]:
        if self.eval_set is None:
            return {}
        acc, loss = evaluate_classifier(
            self.module, self.eval_set, self.eval_batch_size, channels_last=self.channels_last
        )
        self.last_evaluation = {f"{self.eval_name}_acc": acc, f"{self.eval_name}_loss": loss}
        return dict(self.last_evaluation)

    def model_config(self) -> dict[str, Any]:
        config = getattr(self.classifier, "config", None)
        return dict(config) if isinstance(config, dict) else {"name": type(self.module).__name__}

    def objective_config(self) -> dict[str, Any]:
        """Settings a resumed run must share: loss, augmentation, batching, training data."""
        return {
            "objective": "classifier",
            "loss": "cross_entropy",
            "label_smoothing": self.label_smoothing,
            "augment": None if self.augment is None else repr(self.augment),
            "batch_size": self.batch_size,
            "drop_last": True,
            "train_set": dataset_record(self.train_set),
        }

    def save_model(self, prefix: str | Path) -> Path:
        if not isinstance(self.classifier, Classifier):
            raise InputError(
                f"saving needs an irad Classifier, got {type(self.classifier).__name__} "
                "(build it with irad.models.build_classifier)"
            )
        training = {**self.objective_config(), "last_evaluation": self.last_evaluation}
        if self.eval_set is not None:
            training["eval_set"] = getattr(self.eval_set, "description", None)
        return save_classifier(self.classifier, prefix, metadata={"training": training})


def evaluate_classifier(
    classifier: nn.Module, dataset: Any, batch_size: int = 500, *, channels_last: bool = False
) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``classifier`` on ``dataset``, in eval mode.

    Runs on the device of the classifier's parameters and restores its train/eval mode (the
    loop is :func:`irad.evaluate.accuracy.accuracy`).

    Shape:
        - batches: images ``(B, 3, H, W)`` in [0, 1], labels ``(B,)``.

    Example:
        >>> from irad.data import ImageDataset
        >>> from irad.models import build_classifier
        >>> test = ImageDataset(  # 4 random images, a stand-in for a test set
        ...     torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8), torch.arange(4))
        >>> acc, loss = evaluate_classifier(build_classifier("resnet20"), test)
        >>> 0.0 <= acc <= 1.0, loss > 0.0
        (True, True)
    """
    from irad.evaluate.accuracy import accuracy

    result = accuracy(
        classifier, dataset, batch_size, device=None, progress=False, channels_last=channels_last
    )
    return result.accuracy, result.loss


def write_evaluation(
    classifier: nn.Module, dataset: Any, out_dir: str | Path, *, channels_last: bool = False
) -> dict[str, Any]:
    """Evaluate ``classifier`` on the whole ``dataset``; write ``out_dir/evaluation.json``.

    Returns the record: data set, number of images, accuracy (a fraction), loss and seconds.
    """
    started = time.monotonic()
    acc, loss = evaluate_classifier(classifier, dataset, channels_last=channels_last)
    record = {
        "dataset": getattr(dataset, "description", None),
        "images": len(dataset),
        "accuracy": acc,
        "loss": loss,
        "seconds": round(time.monotonic() - started, 2),
    }
    atomic_write_json(Path(out_dir) / "evaluation.json", record)
    return record
