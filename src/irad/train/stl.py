"""Learn STL's convolutional dictionary on clean images: alternating sparse coding and a
gradient step on the filters.

Each step codes the batch's detail (the Tikhonov high-pass of clean training images) with the
current dictionary held fixed (FISTA, no gradient), then takes one optimizer step on the
dictionary for the same objective ``½ ||D z - x_high||² + λ ||z||₁`` and puts every filter back on
the unit sphere (:meth:`ConvSparseCoder.normalize_`, in ``after_step``). This is online
convolutional dictionary learning (Mairal et al. 2009's alternation, with a stochastic
dictionary step), where Sun et al. used SPORCO's batch ADMM learner: the same problem, solved in
minibatches on the one trainer.

Training codes random ``crop × crop`` windows of the high-pass (computed on the whole image, so
the crops have no artificial borders): the filters are local, and a 16x16 window costs a
quarter of a 32x32 image.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from irad.checks import check_batch_size, check_int
from irad.data import dataset_record, iterate_batches, num_batches
from irad.errors import InputError
from irad.models.sparse_coding import ConvSparseCoder
from irad.train.config import ADAM_COSINE, TrainConfig, preset_settings


def _random_crops(x: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """One random ``size × size`` window per image (``size`` at most the image side)."""
    b, _, h, w = x.shape
    top = torch.randint(0, h - size + 1, (b,), generator=generator).tolist()
    left = torch.randint(0, w - size + 1, (b,), generator=generator).tolist()
    return torch.stack(
        [
            x[i, :, t : t + size, s : s + size]
            for i, (t, s) in enumerate(zip(top, left, strict=True))
        ]
    )


class DictionaryObjective:
    """Convolutional dictionary learning for STL; an :class:`irad.train.Objective`.

    Args:
        model: the :class:`~irad.models.sparse_coding.ConvSparseCoder` whose dictionary is
            learned (its ``config`` gives λ, the iterations and the low-pass).
        train_set: clean images in [0, 1] (an :mod:`irad.data` data set).
        eval_set: held-out clean images; after each epoch, the reconstruction PSNR of the whole
            transform and the sparse-coding objective are measured on them. ``None``: none.
        batch_size: images per step (must equal ``TrainConfig.batch_size``).
        crop: side of the random window coded per image (``0``: the whole image).

    Shape:
        - batches: the high-pass windows ``(B, 3, crop, crop)``.

    Example:
        >>> from irad.models.sparse_coding import SparseCodingConfig
        >>> objective = DictionaryObjective(ConvSparseCoder(SparseCodingConfig.from_preset(
        ...     "cpu")), load_dataset("cifar10", "train"), batch_size=32)  # doctest: +SKIP
        >>> Trainer(objective, TrainConfig(optimizer="adam", lr=3e-3, batch_size=32,
        ...     out_dir="runs/stl-cpu")).fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: ConvSparseCoder,
        train_set: Any,
        eval_set: Any | None = None,
        *,
        batch_size: int = 32,
        crop: int = 16,
    ) -> None:
        if not isinstance(model, ConvSparseCoder):
            raise InputError(f"model must be a ConvSparseCoder, got {type(model).__name__}")
        self.batch_size = check_batch_size(batch_size)
        if len(train_set) < self.batch_size:
            raise InputError(
                f"the training set has {len(train_set)} images, fewer than one batch of "
                f"{self.batch_size}; lower the batch size"
            )
        side = min(train_set[0][0].shape[-2:])
        self.crop = check_int(crop, f"crop (pixels; 0 = whole image, at most {side})", 0, side)
        if 0 < self.crop < model.config.kernel_size:
            raise InputError(
                f"crop ({self.crop}) is smaller than the dictionary's filters "
                f"({model.config.kernel_size}); use crop >= kernel_size, or 0 for whole images"
            )
        self.module = model
        self.train_set = train_set
        self.eval_set = eval_set
        self.last_evaluation: dict[str, float] = {}

    @property
    def model(self) -> ConvSparseCoder:
        return self.module

    # -- Objective -----------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return num_batches(self.train_set, self.batch_size, drop_last=True)

    def batches(self, epoch: int, generator: torch.Generator, start_batch: int) -> Iterator[Tensor]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        images = iterate_batches(
            self.train_set, self.batch_size, shuffle=True, seed=seed, drop_last=True,
            start_batch=start_batch,
        )  # fmt: skip
        for index, (x, _) in enumerate(images, start=start_batch):
            with torch.no_grad():
                _, high = self.model.split(x)
            if self.crop:
                # windows are a function of (epoch seed, batch index): a resumed run draws the same
                g = torch.Generator().manual_seed((seed + 7919 * (index + 1)) % 2**63)
                high = _random_crops(high, self.crop, g)
            yield high

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        high = batch
        with torch.no_grad():  # the sparse-coding half of the alternation
            z = self.model.encode(high)
        objective = self.model.objective(high, z).mean()
        with torch.no_grad():
            mse = (self.model.decode(z, high.shape[1]) - high).pow(2).mean()
            density = (z != 0).float().mean()
        return objective, {"detail_mse": mse, "density": density}

    @torch.no_grad()
    def after_step(self) -> None:
        self.model.normalize_()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.eval_set is None:
            return {}
        from irad.evaluate.quality import psnr  # lazy: training does not need evaluation

        model = self.model.eval()
        device = model.dictionary.device
        sums = {"eval_psnr": 0.0, "eval_objective": 0.0, "eval_density": 0.0}
        count = 0
        for x, _ in iterate_batches(self.eval_set, 64):
            x = x.to(device)
            low, high = model.split(x)
            z = model.encode(high)
            out = (low + model.decode(z, x.shape[1])).clamp(0, 1)
            sums["eval_psnr"] += float(psnr(out, x).sum())
            sums["eval_objective"] += float(model.objective(high, z).sum())
            sums["eval_density"] += float((z != 0).float().flatten(1).mean(1).sum()) / x.shape[1]
            count += x.shape[0]
        self.last_evaluation = {k: v / max(count, 1) for k, v in sums.items()}
        return dict(self.last_evaluation)

    def model_config(self) -> dict[str, Any]:
        return self.model.checkpoint_config()

    def objective_config(self) -> dict[str, Any]:
        return {
            "objective": "stl-dictionary",
            "loss": "convolutional_bpdn",
            "crop": self.crop,
            "batch_size": self.batch_size,
            "train_set": dataset_record(self.train_set),
        }

    def save_model(self, prefix: str | Path) -> Path:
        training = {**self.objective_config(), "last_evaluation": dict(self.last_evaluation)}
        return self.model.save(prefix, metadata={"training": training})


#: Training settings of each preset: Adam on the filters with a cosine decay. `cpu`: 1 epoch of
#: CIFAR-10's 50,000 training images (1,562 steps of 32 windows of 16x16; ~2.5 s a step on one
#: shared CPU thread: about an hour). `paper`: whole 32x32 images, 5 epochs.
STL_TRAINING: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 1, "batch_size": 8, "lr": 1e-2, "crop": 8},
    "cpu": {"epochs": 1, "batch_size": 32, "lr": 3e-3, "crop": 16},
    "paper": {"epochs": 5, "batch_size": 64, "lr": 1e-3, "crop": 0},
}


def stl_train_config(
    preset: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    crop: int | None = None,
    **train: Any,
) -> tuple[TrainConfig, int]:
    """``(TrainConfig, crop)`` of ``preset`` with the given overrides (``None``: keep).

    Example:
        >>> config, crop = stl_train_config("cpu", out_dir="runs/stl")
        >>> config.batch_size, config.optimizer, crop
        (32, 'adam', 16)
    """
    s = preset_settings(STL_TRAINING, preset, "STL")
    defaults = {**ADAM_COSINE, **{k: s[k] for k in ("epochs", "batch_size", "lr")}}
    config = TrainConfig.from_options(
        defaults, epochs=epochs, batch_size=batch_size, lr=lr, **train
    )
    return config, s["crop"] if crop is None else crop
