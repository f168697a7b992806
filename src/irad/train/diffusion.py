"""Train the score model of diffusion purification: ε-prediction MSE with EMA weights.

Each image of a batch gets a step ``t`` drawn uniformly from ``[1, t_max]`` and Gaussian noise;
the UNet predicts that noise from ``x_t`` (Ho et al. 2020's simple loss). Purification never
diffuses further than ``t*`` (DiffPure: ``t = 100``), so a model trained on ``t <= t_max`` only
spends its whole capacity on the noise levels purification uses: that is what makes a purifier
trained on a CPU in about an hour usable.

The exponential moving average of the weights (``ema_decay``, with the usual warm-up
``min(decay, (1 + n) / (10 + n))``) is kept inside the trained module as frozen parameters, so
every checkpoint holds it and a resumed run continues it exactly; the saved model is the EMA.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.checks import check_batch_size
from irad.data import RandomCropFlip, dataset_record, iterate_batches, num_batches
from irad.errors import ConfigError, InputError
from irad.models.diffusion import DiffusionModel
from irad.train.config import ADAM_COSINE, TrainConfig, preset_settings


class _ModelWithEMA(nn.Module):
    """The trained model beside its frozen exponential moving average."""

    def __init__(self, model: DiffusionModel) -> None:
        super().__init__()
        self.model = model
        self.ema = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))


def _psnr(a: Tensor, b: Tensor) -> float:
    """Mean PSNR in dB over the batch (the one PSNR, :func:`irad.evaluate.quality.psnr`)."""
    from irad.evaluate.quality import psnr  # lazy: training does not need the evaluation package

    return float(psnr(b, a.clamp(0, 1)).mean())


class DiffusionObjective:
    """ε-prediction MSE on ``t ~ U{1..t_max}``; an :class:`irad.train.Objective`.

    Args:
        model: the :class:`~irad.models.diffusion.DiffusionModel` to train (its
            ``config.t_max`` bounds the training steps).
        train_set: an :mod:`irad.data` data set of images in [0, 1].
        eval_set: held-out images; after each epoch, the EMA model's one-shot denoising PSNR at
            ``eval_steps`` (fixed noise) is measured on them. ``None``: no evaluation.
        batch_size: images per step (must equal ``TrainConfig.batch_size``).
        ema_decay: decay of the weights' moving average, in [0, 1).
        flip: random horizontal flips of training images (DDPM's only augmentation).
        eval_steps: the ``t`` values of the evaluation.

    Shape:
        - batches: ``(x (B, 3, H, W) in [0, 1], t (B,) int64, noise (B, 3, H, W))``.

    Example:
        >>> from irad.models.diffusion import DiffusionConfig, DiffusionModel
        >>> model = DiffusionModel(DiffusionConfig.from_preset("cpu"))
        >>> objective = DiffusionObjective(model, load_dataset("cifar10", "train"),
        ...     batch_size=64)  # doctest: +SKIP
        >>> Trainer(objective, TrainConfig(optimizer="adam", lr=2e-4, batch_size=64,
        ...     out_dir="runs/diffusion")).fit()  # doctest: +SKIP
    """

    def __init__(
        self,
        model: DiffusionModel,
        train_set: Any,
        eval_set: Any | None = None,
        *,
        batch_size: int = 64,
        ema_decay: float = 0.999,
        flip: bool = True,
        eval_steps: tuple[int, ...] = (20, 100),
    ) -> None:
        if not isinstance(model, DiffusionModel):
            raise InputError(f"model must be a DiffusionModel, got {type(model).__name__}")
        batch_size = check_batch_size(batch_size)
        if len(train_set) < batch_size:
            raise InputError(
                f"the training set has {len(train_set)} images, fewer than one batch of "
                f"{batch_size}; lower the batch size"
            )
        if not 0.0 <= ema_decay < 1.0:
            raise InputError(f"ema_decay must be in [0, 1), got {ema_decay}")
        for t in eval_steps:
            model.check_timestep(t, "eval step")
        self.module = _ModelWithEMA(model)
        self.train_set = train_set
        self.eval_set = eval_set
        self.batch_size = batch_size
        self.ema_decay = float(ema_decay)
        self.augment = RandomCropFlip(padding=0, flip=True) if flip else None
        self.eval_steps = tuple(int(t) for t in eval_steps)
        self.last_evaluation: dict[str, float] = {}

    @property
    def model(self) -> DiffusionModel:
        return self.module.model

    @property
    def ema(self) -> DiffusionModel:
        return self.module.ema

    # -- Objective -----------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return num_batches(self.train_set, self.batch_size, drop_last=True)

    def batches(
        self, epoch: int, generator: torch.Generator, start_batch: int
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        t_max = self.model.config.t_max
        images = iterate_batches(
            self.train_set,
            self.batch_size,
            shuffle=True,
            seed=seed,
            augment=self.augment,
            drop_last=True,
            start_batch=start_batch,
        )
        for index, (x, _) in enumerate(images, start=start_batch):
            # Steps and noise are a function of (epoch seed, batch index): a resumed run draws
            # the same ones.
            g = torch.Generator().manual_seed((seed + 7919 * (index + 1)) % 2**63)
            t = torch.randint(1, t_max + 1, (x.shape[0],), generator=g)
            yield x, t, torch.randn(x.shape, generator=g)

    def loss(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, t, noise = batch
        x_t = self.model.diffuse(x * 2 - 1, t, noise)
        loss = F.mse_loss(self.model.eps(x_t, t), noise)
        return loss, {}

    @torch.no_grad()
    def after_step(self) -> None:
        n = int(self.module.ema_updates)
        decay = min(self.ema_decay, (1 + n) / (10 + n))
        for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - decay)
        self.module.ema_updates += 1

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.eval_set is None:
            return {}
        ema = self.ema.eval()
        device = next(ema.parameters()).device
        sums: dict[str, float] = {}
        count = 0
        g = torch.Generator().manual_seed(0)
        for x, _ in iterate_batches(self.eval_set, 128):
            x = x.to(device)
            for t in self.eval_steps:
                noise = torch.randn(x.shape, generator=g).to(device)
                x_t = ema.diffuse(x * 2 - 1, t, noise)
                x0 = ((ema.predict_x0(x_t, t).clamp(-1, 1) + 1) / 2).float()
                noisy = ((x_t + 1) / 2).clamp(0, 1)
                for key, value in (
                    (f"psnr_t{t}", _psnr(x0, x)),
                    (f"psnr_noisy_t{t}", _psnr(noisy, x)),
                    (f"mse_t{t}", float(F.mse_loss(ema.eps(x_t, t), noise))),
                ):
                    sums[key] = sums.get(key, 0.0) + value * x.shape[0]
            count += x.shape[0]
        self.last_evaluation = {k: v / count for k, v in sums.items()}
        return dict(self.last_evaluation)

    def model_config(self) -> dict[str, Any]:
        return self.model.checkpoint_config()

    def objective_config(self) -> dict[str, Any]:
        return {
            "objective": "diffusion",
            "loss": "epsilon_mse",
            "t_range": [1, self.model.config.t_max],
            "ema_decay": self.ema_decay,
            "flip": self.augment is not None,
            "batch_size": self.batch_size,
            "train_set": dataset_record(self.train_set),
        }

    def save_model(self, prefix: str | Path) -> Path:
        """Write the EMA weights as a :class:`DiffusionModel` checkpoint."""
        training = {
            **self.objective_config(),
            "ema_updates": int(self.module.ema_updates),
            "last_evaluation": {k: v for k, v in self.last_evaluation.items() if math.isfinite(v)},
        }
        return self.ema.save(prefix, metadata={"training": training})


#: Training settings of each preset. `cpu`: Adam at 1e-3 with a cosine decay, batch 64, 5 epochs
#: (3,905 steps; 0.8 s per step with 2 threads on the idle 2-core CPU of the CPU protocol, so
#: about 52 min, and 2-4 times longer when other jobs share the cores); `paper`: DDPM's CIFAR-10
#: recipe (Adam 2e-4, batch 128, EMA 0.9999, warm-up; 800k steps in DDPM: set --epochs).
DIFFUSION_TRAINING: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "ema_decay": 0.9, "warmup": 0.0},
    "cpu": {"epochs": 5, "batch_size": 64, "lr": 1e-3, "ema_decay": 0.999, "warmup": 0.02},
    "paper": {"epochs": 2048, "batch_size": 128, "lr": 2e-4, "ema_decay": 0.9999, "warmup": 0.01},
}


def diffusion_train_config(
    preset: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    ema_decay: float | None = None,
    **train: Any,
) -> tuple[TrainConfig, float]:
    """``(TrainConfig, ema_decay)`` of ``preset`` with the given overrides (``None``: keep).

    Example:
        >>> config, ema = diffusion_train_config("cpu", epochs=2, out_dir="runs/d")
        >>> config.epochs, config.batch_size, config.optimizer, ema
        (2, 64, 'adam', 0.999)
    """
    settings = preset_settings(DIFFUSION_TRAINING, preset, "diffusion")
    defaults = {**ADAM_COSINE, **{k: settings[k] for k in ("epochs", "batch_size", "lr", "warmup")}}
    config = TrainConfig.from_options(
        defaults, epochs=epochs, batch_size=batch_size, lr=lr, **train
    )
    return config, settings["ema_decay"] if ema_decay is None else float(ema_decay)


def export_ema(run_dir: str | Path, prefix: str | Path) -> Path:
    """Write the EMA weights held in a training run's resumable checkpoint (``run_dir/last.*``)
    as a :class:`DiffusionModel` checkpoint at ``prefix``, with where they came from.

    For a run stopped before its last epoch: the metadata records the step reached and the
    run's schedule, so the weights say exactly what they are (``--resume`` continues the run).
    """
    from irad.checkpoint import load_into, load_state

    run = Path(run_dir)
    tensors, state = load_state(run / "last")
    if state.get("objective_config", {}).get("objective") != "diffusion":
        raise ConfigError(f"{run} does not hold a diffusion training run (irad train-diffusion)")
    model = DiffusionModel.from_checkpoint_config(state["model_config"])
    ema = {k[len("model.ema.") :]: v for k, v in tensors.items() if k.startswith("model.ema.")}
    load_into(model, ema, str(run / "last"))
    progress = state.get("progress", {})
    history = state.get("history", [])
    training = {
        **state["objective_config"],
        "run": str(run),
        "train_config": state.get("config"),
        "global_step": progress.get("global_step"),
        "total_steps": state["config"]["epochs"] * state["steps_per_epoch"],
        "epoch": progress.get("epoch"),
        "batch_in_epoch": progress.get("batch"),
        "ema_updates": int(tensors["model.ema_updates"]),
        "last_evaluation": history[-1] if history else {},
        "saved_utc": state.get("saved_utc"),
    }
    return model.save(prefix, metadata={"training": training})
