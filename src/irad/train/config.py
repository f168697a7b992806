"""What a training run is: :class:`TrainConfig`, and the optimizers and schedules it names.

The config is plain data (a dataclass that round-trips through JSON). Optimizers and learning-rate
schedules are built by name from two registries, so the CLI, the Python API and a checkpoint's
recorded config all take the same path.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from irad.checks import (
    check_batch_size,
    check_choice,
    check_float,
    check_positive,
    check_positive_int,
    check_seed,
)
from irad.errors import ConfigError
from irad.registry import Registry

OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")
SCHEDULES: Registry[LRScheduler] = Registry("schedule")

# Fields that may change between a run and its resumption: they affect where and how often the
# run writes, not what it computes. Every other field must match the checkpoint's.
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {"out_dir", "device", "checkpoint_minutes", "snapshot_steps", "progress"}
)


@dataclass
class TrainConfig:
    """Settings of one training run (any objective: classifier, implicit representation, ...).

    Args:
        epochs: passes over the training data.
        batch_size: samples per optimisation step, summed over all processes under DDP.
        lr: learning rate; the peak rate for ``onecycle`` and ``cosine``.
        optimizer: ``"sgd"`` or ``"adam"``.
        momentum, nesterov: SGD momentum (kept constant; the schedule only moves the rate).
        weight_decay: L2 penalty (SGD) or Adam's coupled weight decay.
        betas: Adam's ``(beta1, beta2)``.
        schedule: ``"onecycle"`` (torch ``OneCycleLR``: from ``lr/25`` up to ``lr``, then a cosine
            down to ``lr/25e4``), ``"cosine"`` (optional linear warm-up, then a cosine to 0) or
            ``"constant"`` (optional linear warm-up, then flat). Stepped after every batch.
        warmup: fraction of all steps spent rising to ``lr``; ``None`` takes the schedule's
            default (0.25 for ``onecycle``, 0 otherwise).
        seed: seeds the weights' initialisation (by the caller), the data order and augmentation
            of every epoch, and the global RNGs (dropout).
        out_dir: run folder: ``last.{safetensors,json}``, ``history.jsonl``, ``model.*``.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        checkpoint_minutes: also checkpoint mid-epoch when this many minutes have passed since
            the last checkpoint (``0``: after every step; ``None``: at epoch ends only).
        max_steps_per_epoch: cut every epoch short after this many steps (quick runs, tests).
        snapshot_steps: also save the model (as ``model.*`` is saved at the end) every this many
            steps, to ``out_dir/snapshots/step-NNNNNN``: held-out curves against training steps.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        precision: ``"fp32"``, or ``"bf16"`` autocast for the forward pass and loss.
        progress: show tqdm progress bars.

    Example:
        >>> cfg = TrainConfig(epochs=5, lr=0.2, out_dir="runs/resnet20")
        >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.2
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "onecycle"
    warmup: float | None = None
    seed: int = 0
    out_dir: str | Path = "runs/train"
    device: str = "auto"
    checkpoint_minutes: float | None = 5.0
    max_steps_per_epoch: int | None = None
    snapshot_steps: int | None = None
    grad_clip: float | None = None
    precision: str = "fp32"
    progress: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        self.out_dir = str(self.out_dir)
        self.optimizer = OPTIMIZERS.canonical(self.optimizer)  # unknown names list the known
        self.schedule = SCHEDULES.canonical(self.schedule)
        try:
            b1, b2 = self.betas
        except (TypeError, ValueError) as err:
            raise ConfigError(f"betas must be two numbers, got {self.betas!r}") from err
        self.betas = tuple(check_float(b, "betas", 0, 1, high_open=True) for b in (b1, b2))
        self.epochs = check_positive_int(self.epochs, "epochs")
        self.batch_size = check_batch_size(self.batch_size)
        if self.max_steps_per_epoch is not None:
            self.max_steps_per_epoch = check_positive_int(
                self.max_steps_per_epoch, "max_steps_per_epoch"
            )
        self.lr = check_positive(self.lr, "lr")
        self.momentum = check_float(self.momentum, "momentum", 0, 1, high_open=True)
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ConfigError("nesterov needs momentum > 0 (set momentum, or nesterov=False)")
        self.weight_decay = check_float(self.weight_decay, "weight_decay", 0)
        if self.warmup is not None:
            self.warmup = check_float(
                self.warmup, "warmup (a fraction of all steps)", 0, 1, high_open=True
            )
        if self.snapshot_steps is not None:
            self.snapshot_steps = check_positive_int(self.snapshot_steps, "snapshot_steps")
        if self.checkpoint_minutes is not None:
            self.checkpoint_minutes = check_float(self.checkpoint_minutes, "checkpoint_minutes", 0)
        if self.grad_clip is not None:
            self.grad_clip = check_positive(self.grad_clip, "grad_clip")
        self.precision = check_choice(self.precision, "precision", ("fp32", "bf16"))
        self.seed = check_seed(self.seed)

    @classmethod
    def from_options(
        cls,
        defaults: Mapping[str, Any] | None = None,
        /,
        *,
        beta1: float | None = None,
        beta2: float | None = None,
        **options: Any,
    ) -> TrainConfig:
        """A config from ``defaults`` (e.g. a preset stage's settings) and the options given.

        The one place where command-line flags become a config: an option that is ``None``
        (not given) keeps the default; ``beta1`` / ``beta2`` replace one half of ``betas``.

        Example:
            >>> defaults = {"epochs": 10, "lr": 5e-4, "optimizer": "adam", "betas": (0.0, 0.9)}
            >>> cfg = TrainConfig.from_options(defaults, epochs=None, lr=1e-3, beta2=0.99)
            >>> cfg.epochs, cfg.lr, cfg.betas
            (10, 0.001, (0.0, 0.99))
        """
        fields = {**(defaults or {}), **{k: v for k, v in options.items() if v is not None}}
        if beta1 is not None or beta2 is not None:
            b1, b2 = fields.get("betas", cls.__dataclass_fields__["betas"].default)
            fields["betas"] = (b1 if beta1 is None else beta1, b2 if beta2 is None else beta2)
        return cls.from_dict(fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        kw = dict(d)
        if "betas" in kw:
            kw["betas"] = tuple(kw["betas"])
        return cls(**kw)

    def differences(self, other: TrainConfig | dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Fields that matter for the trajectory and differ: ``{name: (self's, other's)}``."""
        mine = self.to_dict()
        theirs = other.to_dict() if isinstance(other, TrainConfig) else dict(other)
        return {
            k: (mine.get(k), theirs.get(k))
            for k in sorted(set(mine) | set(theirs))
            if k not in RESUMABLE_CHANGES and mine.get(k) != theirs.get(k)
        }

    def resolved_warmup(self) -> float:
        """The warm-up fraction actually used (the schedule's default when ``warmup`` is None)."""
        if self.warmup is not None:
            return self.warmup
        return 0.25 if self.schedule == "onecycle" else 0.0


def preset_settings(table: Mapping[str, dict[str, Any]], preset: str, kind: str) -> dict[str, Any]:
    """The settings of ``preset`` in a preset ``table`` (case-insensitive), or a clear error.

    Example:
        >>> preset_settings({"cpu": {"epochs": 3}}, "CPU", "diffusion")
        {'epochs': 3}
    """
    key = str(preset).strip().lower()
    if key not in table:
        raise ConfigError(f"unknown {kind} preset {preset!r}; known: {', '.join(table)}")
    return table[key]


#: What the Adam-trained presets (diffusion, STL, NRP) share; each adds epochs, batch, lr.
ADAM_COSINE: dict[str, Any] = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "betas": (0.9, 0.999),
    "schedule": "cosine",
    "warmup": 0.0,
}


# -- optimizers -------------------------------------------------------------------------------


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable[nn.Parameter], config: TrainConfig) -> Optimizer:
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


@OPTIMIZERS.register("adam")
def _adam(params: Iterable[nn.Parameter], config: TrainConfig) -> Optimizer:
    return torch.optim.Adam(
        params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )


def build_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> Optimizer:
    """The optimizer ``config.optimizer`` over ``params`` (only those that require grad).

    Example:
        >>> opt = build_optimizer(nn.Linear(2, 2).parameters(), TrainConfig(optimizer="adam"))
        >>> type(opt).__name__
        'Adam'
    """
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ConfigError("the objective's module has no parameter that requires grad")
    return OPTIMIZERS.get(config.optimizer)(trainable, config)


# -- learning-rate schedules --------------------------------------------------------------------


@dataclass
class WarmupCosine:
    """LR factor: linear warm-up from ~0 to 1 over ``warmup_steps``, then a cosine to 0.

    A small picklable callable (not a lambda) so that ``LambdaLR.state_dict`` records it as data.
    """

    total_steps: int
    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        decay = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / decay)
        return 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class WarmupConstant:
    """LR factor: linear warm-up from ~0 to 1 over ``warmup_steps``, then 1."""

    warmup_steps: int = 0

    def __call__(self, step: int) -> float:
        return (step + 1) / (self.warmup_steps + 1) if step < self.warmup_steps else 1.0


@SCHEDULES.register("onecycle", "one-cycle")
def _onecycle(optimizer: Optimizer, config: TrainConfig, total_steps: int) -> LRScheduler:
    # Momentum stays as configured (cycle_momentum=False): with Adam, cycling would overwrite
    # beta1, e.g. the paper's beta1 = 0 for the implicit representation.
    if total_steps < 2:
        raise ConfigError("the onecycle schedule needs at least 2 steps; use constant")
    # OneCycleLR divides by the length of each phase in steps: keep both phases > 0 long
    # (this only moves the warm-up of runs a few steps long).
    pct = min(max(config.resolved_warmup(), 1.5 / total_steps), 1.0 - 0.5 / total_steps)
    return OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=pct, cycle_momentum=False
    )


@SCHEDULES.register("cosine")
def _cosine(optimizer: Optimizer, config: TrainConfig, total_steps: int) -> LRScheduler:
    warmup = round(config.resolved_warmup() * total_steps)
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup))


@SCHEDULES.register("constant")
def _constant(optimizer: Optimizer, config: TrainConfig, total_steps: int) -> LRScheduler:
    return LambdaLR(optimizer, WarmupConstant(round(config.resolved_warmup() * total_steps)))


def build_scheduler(optimizer: Optimizer, config: TrainConfig, total_steps: int) -> LRScheduler:
    """The schedule ``config.schedule`` for a run of ``total_steps`` optimizer steps.

    The trainer calls ``scheduler.step()`` after every optimizer step, so the rate follows the
    step count, not the epoch.

    Example:
        >>> opt = build_optimizer(nn.Linear(2, 2).parameters(), TrainConfig(lr=0.1))
        >>> sched = build_scheduler(opt, TrainConfig(lr=0.1, schedule="constant"), 100)
        >>> sched.get_last_lr()
        [0.1]
    """
    if total_steps < 1:
        raise ConfigError(f"a schedule needs at least one step, got total_steps={total_steps}")
    return SCHEDULES.get(config.schedule)(optimizer, config, total_steps)
