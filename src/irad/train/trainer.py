"""One training loop for every irad model; the objective supplies the data, the loss and the model.

The :class:`Trainer` owns what every run needs (optimizer, per-step learning-rate schedule,
progress bars, checkpoints that resume mid-epoch, history, DDP); an :class:`Objective` owns what is
particular to one model (which batches, which loss, how to evaluate and save it). The classifier,
the implicit representation and SampleNet are three objectives on this one loop.

Files in ``config.out_dir``:

- ``last.safetensors`` + ``last.json``: the resumable state, written at every epoch end, every
  ``checkpoint_minutes``, and on Ctrl-C / SIGTERM. Tensors (model, optimizer state, RNG states)
  go in the safetensors file; everything else (config, progress, history, the optimizer's and
  scheduler's non-tensor state, seed, environment) in the JSON, which names the tensors it refers
  to as ``{"__tensor__": key}``.
- ``previous.safetensors`` + ``previous.json``: the state before the last save, kept until the
  new pair is committed (:func:`irad.checkpoint.save_state` with ``keep``). A kill while saving
  leaves ``last.*`` torn; resume then falls back to ``previous.*`` with a warning.
- ``.lock``: held while :meth:`Trainer.fit` runs (:class:`irad.utils.lock.RunLock`), so that a
  second run into the same folder fails at once instead of silently overwriting this one.
- ``history.jsonl``: one JSON line per finished epoch (train loss and metrics, evaluation
  metrics, seconds).
- ``model.safetensors`` + ``model.json``: the final weights, via ``objective.save_model``.
- ``summary.json``: config, environment, final metrics and time of the finished run.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from irad.checkpoint import (
    check_format,
    checkpoint_paths,
    format_name,
    load_into,
    load_newest,
    save_state,
)
from irad.errors import CheckpointError, ConfigError
from irad.train.config import TrainConfig, build_optimizer, build_scheduler
from irad.train.distributed import (
    batch_length,
    context_from_env,
    move_to_device,
    setup_distributed,
    shard_batch,
)
from irad.utils.env import environment_info, resolve_device, warn_if_bfloat16_emulated
from irad.utils.io import atomic_write_json, atomic_write_text
from irad.utils.lock import RunLock
from irad.utils.seed import seed_everything

#: Kind of the resumable state's checkpoint (format ``irad.training-state``).
CHECKPOINT_KIND = "training-state"
CHECKPOINT_VERSION = 1


@runtime_checkable
class Objective(Protocol):
    """What a model brings to the :class:`Trainer`.

    Required:
        module: the trainable ``nn.Module``. Its parameters that require grad are optimised; its
            whole ``state_dict`` is checkpointed. Frozen helpers (a surrogate classifier, a frozen
            encoder) may live outside it.
        batches(epoch, generator, start_batch): the epoch's batches from index ``start_batch``
            on. The order and any augmentation must be a function of ``generator`` (seeded by the
            trainer from ``seed`` and ``epoch``) and the batch index alone, so that a resumed run
            sees the same remaining batches. A batch is a tensor or a (nested) tuple/list/dict of
            tensors whose first dimension is the sample dimension; the trainer moves it to the
            device (and, under DDP, keeps this process's slice).
        steps_per_epoch(): number of batches ``batches`` yields for a whole epoch.
        loss(batch): ``(scalar loss, {metric name: value})``; values are floats or 0-d tensors
            (tensors avoid a GPU sync per step), averaged over the epoch as ``train_<name>``.
        evaluate(): metrics after each epoch (``{}`` for none); called on rank 0 with ``module``
            in eval mode. Use ``torch.no_grad()`` inside unless the evaluation needs gradients.
        model_config(): JSON-ready config that rebuilds ``module``; a resumed run must match it.
        save_model(prefix): write the final weights (safetensors + JSON); returns the weights path.

    Optional (used when present):
        batch_size: checked against ``TrainConfig.batch_size``.
        objective_config(): JSON-ready settings of the loss and data (label smoothing, task,
            data fingerprint); a resumed run must match it.
        to(device): move everything the objective holds (frozen helpers too); else the trainer
            moves ``module`` only.
        after_step(): called after every optimizer step (e.g. to update EMA weights kept in
            ``module`` as buffers or frozen parameters, so that they are checkpointed).
    """

    module: nn.Module

    def batches(
        self, epoch: int, generator: torch.Generator, start_batch: int
    ) -> Iterator[Any]: ...

    def steps_per_epoch(self) -> int: ...

    def loss(self, batch: Any) -> tuple[Tensor, dict[str, float | Tensor]]: ...

    def evaluate(self) -> dict[str, float]: ...

    def model_config(self) -> dict[str, Any]: ...

    def save_model(self, prefix: str | Path) -> Path: ...


class TrainingTerminated(KeyboardInterrupt):
    """SIGTERM arrived during :meth:`Trainer.fit` (a job scheduler's pre-emption, ``kill PID``)."""


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator handed to ``objective.batches`` for ``epoch``: a function of both alone.

    Example:
        >>> a, b = epoch_generator(0, 3), epoch_generator(0, 3)
        >>> torch.equal(torch.randperm(5, generator=a), torch.randperm(5, generator=b))
        True
    """
    # SeedSequence mixes (seed, epoch) so that nearby pairs give unrelated streams.
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


@dataclass
class _Progress:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = 0  # the epoch in progress (== epochs when the run is finished)
    batch: int = 0  # batches of that epoch already trained on
    global_step: int = 0
    epoch_sums: dict[str, float] = field(default_factory=dict)  # train loss/metric sums
    epoch_count: int = 0  # steps summed in epoch_sums
    epoch_samples: int = 0
    epoch_seconds: float = 0.0
    train_seconds: float = 0.0  # all epochs, all sessions
    last_lr: float | None = None  # the learning rate of the latest step
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "history"}
        d["epoch_sums"] = {k: float(v) for k, v in self.epoch_sums.items()}
        return d


class _ObjectiveForward(nn.Module):
    """``forward(batch) = objective.loss(batch)``, so that DDP wraps the whole loss computation.

    DDP syncs gradients of the parameters of the module it wraps, and needs its own ``forward``
    to be the entry point of each step; the objective keeps calling its plain ``module``.
    """

    def __init__(self, objective: Objective) -> None:
        super().__init__()
        self.module = objective.module
        self._loss = objective.loss

    def forward(self, batch: Any) -> tuple[Tensor, dict[str, float | Tensor]]:
        return self._loss(batch)


class Trainer:
    """Fit an :class:`Objective` under a :class:`TrainConfig`.

    Args:
        objective: model, data and loss.
        config: optimizer, schedule, epochs, seed, output folder, device.
        log: where progress lines go (default: above the tqdm bar on stderr, rank 0 only).

    Example:
        >>> from irad.data import ImageDataset
        >>> from irad.models import build_classifier
        >>> from irad.train import ClassifierObjective
        >>> data = ImageDataset(  # 16 random 8x8 images, a stand-in for a real data set
        ...     torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8), torch.arange(16) % 10)
        >>> objective = ClassifierObjective(build_classifier("resnet20"), data, batch_size=8)
        >>> trainer = Trainer(objective, TrainConfig(epochs=2, batch_size=8, out_dir="runs/x"))
        >>> summary = trainer.fit()
        >>> summary["epochs"], summary["global_step"], summary["model"]
        (2, 4, 'runs/x/model.safetensors')
        >>> summary = trainer.fit(resume=True)  # after an interruption: continues from last.*
    """

    def __init__(
        self,
        objective: Objective,
        config: TrainConfig,
        *,
        log: Callable[[str], None] | None = None,
    ) -> None:
        missing = [
            name
            for name in (
                "batches",
                "steps_per_epoch",
                "loss",
                "evaluate",
                "model_config",
                "save_model",
            )
            if not callable(getattr(objective, name, None))
        ]
        if not isinstance(getattr(objective, "module", None), nn.Module):
            missing.insert(0, "module (an nn.Module)")
        if missing:
            raise ConfigError(
                f"{type(objective).__name__} is not a training objective: it lacks "
                f"{', '.join(missing)} (see irad.train.Objective)"
            )
        self.objective = objective
        self.config = config
        self._log_fn = log

    # -- paths ---------------------------------------------------------------------------------
    @property
    def out_dir(self) -> Path:
        return Path(self.config.out_dir)

    @property
    def checkpoint_prefix(self) -> Path:
        return self.out_dir / "last"

    @property
    def previous_prefix(self) -> Path:
        """The state before the last save, kept until the new one is committed."""
        return self.out_dir / "previous"

    def _log(self, message: str) -> None:
        if not self._ctx.is_main:
            return
        if self._log_fn is not None:
            self._log_fn(message)
        else:
            tqdm.write(message, file=sys.stderr)

    # -- the run -------------------------------------------------------------------------------
    def fit(self, resume: bool = False, *, overwrite: bool = False) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs and save the final model; returns a summary.

        Args:
            resume: continue from ``out_dir/last.*`` (mid-epoch if it was saved mid-epoch); if
                there is no checkpoint yet, start a new run. The checkpoint's config, model config
                and objective config must match this run's (``out_dir``, ``device``,
                ``checkpoint_minutes`` and ``progress`` may change).
            overwrite: without ``resume``, replace an existing run in ``out_dir`` instead of
                refusing to.

        Returns:
            ``{"out_dir", "model", "epochs", "global_step", "train_seconds", "final",
            "history", "seed"}`` with ``final`` the last epoch's record.

        Raises:
            RunFolderBusy: another process is using ``out_dir`` (:class:`irad.utils.lock.RunLock`,
                taken by rank 0 before anything is read or written).
            ConfigError: ``out_dir`` holds a run and neither flag is set; the checkpoint's
                settings differ from this run's; the loss diverged.
            CheckpointError: no complete checkpoint to resume from, or it does not fit the model.
        """
        env_ctx = context_from_env()
        self._device = resolve_device(self.config.device, env_ctx.local_rank)
        if self.config.precision == "bf16" and env_ctx.is_main:
            warn_if_bfloat16_emulated(self._device, "training with precision bf16")
        lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if env_ctx.is_main:
            lock = RunLock(self.out_dir, purpose=f"training ({type(self.objective).__name__})")
        with lock:
            self._ctx = setup_distributed(self._device)
            try:
                with _sigterm_as_interrupt():
                    return self._fit(resume, overwrite)
            finally:
                self._ctx.close()

    def _fit(self, resume: bool, overwrite: bool) -> dict[str, Any]:
        cfg, obj, ctx = self.config, self.objective, self._ctx
        spe = int(obj.steps_per_epoch())
        if cfg.max_steps_per_epoch is not None:
            spe = min(spe, cfg.max_steps_per_epoch)
        if spe < 1:
            raise ConfigError(
                "the objective yields no batch per epoch (is the training set smaller than one "
                "batch? lower the batch size or use more data)"
            )
        obj_bs = getattr(obj, "batch_size", None)
        if obj_bs is not None and obj_bs != cfg.batch_size:
            raise ConfigError(
                f"the objective draws batches of {obj_bs} but TrainConfig.batch_size is "
                f"{cfg.batch_size}; build both with the same batch size"
            )
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"batch_size {cfg.batch_size} does not split over {ctx.world_size} processes; "
                f"use a multiple of {ctx.world_size}"
            )
        self._spe = spe
        if callable(getattr(obj, "to", None)):
            obj.to(self._device)
        else:
            obj.module.to(self._device)
        # Global RNGs drive dropout and the like; batch order and augmentation use their own.
        seed_everything(cfg.seed + ctx.rank)
        self._env = environment_info(self._device)
        self._optimizer = build_optimizer(obj.module.parameters(), cfg)
        self._scheduler = build_scheduler(self._optimizer, cfg, cfg.epochs * spe)
        self._progress = _Progress()
        self._consistent = True

        has_checkpoint = any(
            path.exists()
            for prefix in (self.checkpoint_prefix, self.previous_prefix)
            for path in checkpoint_paths(prefix)
        )
        if resume and has_checkpoint:
            self._restore()
        else:
            if resume:
                self._log(f"no checkpoint in {self.out_dir} yet: starting a new run")
            self._prepare_out_dir(overwrite)
        ctx.barrier()  # nobody starts while rank 0 inspects or clears out_dir

        train_module: nn.Module = _ObjectiveForward(obj)
        if ctx.is_distributed:
            ids = [self._device.index] if self._device.type == "cuda" else None
            train_module = DistributedDataParallel(train_module, device_ids=ids)
        self._train_module = train_module

        p = self._progress
        self._log(
            f"training {obj.model_config().get('name', type(obj.module).__name__)}: "
            f"{cfg.epochs} epochs x {spe} steps, batch {cfg.batch_size}, {cfg.optimizer} "
            f"lr {cfg.lr:g} ({cfg.schedule}), seed {cfg.seed}, on {self._device}"
            + (f" x {ctx.world_size} processes" if ctx.is_distributed else "")
            + f" -> {self.out_dir}"
        )
        if p.epoch >= cfg.epochs:
            self._log(f"{self.out_dir} is already complete ({p.epoch} epochs)")
        elif p.global_step:
            self._log(
                f"resuming at epoch {p.epoch + 1}, batch {p.batch}/{spe} (step {p.global_step})"
            )

        self._last_save = time.monotonic()
        try:
            for epoch in range(p.epoch, cfg.epochs):
                if p.batch < spe:
                    self._train_epoch(epoch)
                self._finish_epoch(epoch)
        except KeyboardInterrupt:
            if ctx.is_main and self._consistent:
                self._save_checkpoint()
                self._log(
                    f"interrupted: saved {self.checkpoint_prefix}.* at epoch {p.epoch + 1}, "
                    f"batch {p.batch}; continue with resume=True (--resume)"
                )
            raise

        model_path = self.out_dir / "model.safetensors"
        summary = {
            "out_dir": str(self.out_dir),
            "model": str(model_path),
            "epochs": cfg.epochs,
            "global_step": p.global_step,
            "train_seconds": p.train_seconds,
            "final": p.history[-1] if p.history else {},
            "history": p.history,
            "seed": cfg.seed,
        }
        if ctx.is_main:
            model_path = Path(obj.save_model(self.out_dir / "model"))
            summary["model"] = str(model_path)
            atomic_write_json(
                self.out_dir / "summary.json",
                {
                    **summary,
                    "config": cfg.to_dict(),
                    "model_config": obj.model_config(),
                    "objective_config": self._objective_config(),
                    "world_size": ctx.world_size,
                    "environment": self._env,
                },
            )
            self._log(f"saved {model_path}")
        ctx.barrier()
        return summary

    def _train_epoch(self, epoch: int) -> None:
        cfg, obj, ctx, p = self.config, self.objective, self._ctx, self._progress
        obj.module.train()
        batches = obj.batches(epoch, epoch_generator(cfg.seed, epoch), p.batch)
        params = [q for q in obj.module.parameters() if q.requires_grad]
        after_step = getattr(obj, "after_step", None)
        bar = tqdm(
            total=self._spe,
            initial=p.batch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="step",
            disable=not (ctx.is_main and cfg.progress),
            dynamic_ncols=True,
            mininterval=0.5,
            file=sys.stderr,
        )
        started = time.monotonic()
        seconds_before, samples_before = p.epoch_seconds, p.epoch_samples
        last_postfix = 0.0
        autocast = torch.autocast(
            self._device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"
        )
        try:
            for batch in batches:
                if p.batch >= self._spe:
                    break
                n = batch_length(batch)
                batch = move_to_device(shard_batch(batch, ctx.rank, ctx.world_size), self._device)
                self._optimizer.zero_grad(set_to_none=True)
                with autocast:
                    loss, metrics = self._train_module(batch)
                if not isinstance(loss, Tensor) or loss.ndim != 0:
                    raise ConfigError(
                        f"{type(obj).__name__}.loss must return (scalar tensor, dict), got a "
                        f"{type(loss).__name__}"
                        + (f" of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else "")
                    )
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                # From here until the counters move, the saved state would be half a step.
                self._consistent = False
                p.last_lr = self._lr()
                self._optimizer.step()
                self._scheduler.step()
                if after_step is not None:
                    after_step()
                p.global_step += 1
                p.batch += 1
                p.epoch_count += 1
                p.epoch_samples += n
                sums = p.epoch_sums
                sums["loss"] = sums.get("loss", 0.0) + loss.detach().float()
                for k, v in metrics.items():
                    v = v.detach().float() if isinstance(v, Tensor) else float(v)
                    sums[k] = sums.get(k, 0.0) + v
                self._consistent = True

                now = time.monotonic()
                p.epoch_seconds = seconds_before + (now - started)
                if not bar.disable and now - last_postfix >= 1.0:
                    last_postfix = now
                    means = self._epoch_means(check=True, epoch=epoch)
                    rate = (p.epoch_samples - samples_before) / max(now - started, 1e-9)
                    bar.set_postfix(
                        {k: f"{v:.4g}" for k, v in means.items()}
                        | {"lr": f"{p.last_lr:.3g}", "samples/s": f"{rate:.0f}"},
                        refresh=False,
                    )
                bar.update(1)
                if ctx.is_main and cfg.snapshot_steps and p.global_step % cfg.snapshot_steps == 0:
                    self._epoch_means(check=True, epoch=epoch)  # never keep NaN weights
                    obj.save_model(self.out_dir / "snapshots" / f"step-{p.global_step:06d}")
                if ctx.is_main and self._checkpoint_due(now):
                    self._epoch_means(check=True, epoch=epoch)  # never checkpoint NaN weights
                    self._save_checkpoint()
        finally:
            bar.close()
            p.train_seconds += p.epoch_seconds - seconds_before
        if p.batch < self._spe:
            raise RuntimeError(
                f"{type(obj).__name__}.batches yielded {p.batch} batches in epoch {epoch + 1} "
                f"but steps_per_epoch() promised {self._spe}"
            )

    def _finish_epoch(self, epoch: int) -> None:
        cfg, obj, ctx, p = self.config, self.objective, self._ctx, self._progress
        train = self._epoch_means(check=True, epoch=epoch, reduce=True)
        obj.module.eval()
        started = time.monotonic()
        evaluation = dict(obj.evaluate()) if ctx.is_main else {}
        eval_seconds = time.monotonic() - started
        ctx.barrier()
        record: dict[str, Any] = {"epoch": epoch + 1, "global_step": p.global_step}
        record["lr"] = p.last_lr  # of the epoch's last step
        record.update({f"train_{k}": v for k, v in train.items()})
        record.update({k: float(v) for k, v in evaluation.items()})
        record["train_seconds"] = round(p.epoch_seconds, 3)
        record["eval_seconds"] = round(eval_seconds, 3)
        record["samples_per_second"] = round(p.epoch_samples / max(p.epoch_seconds, 1e-9), 1)
        self._consistent = False  # the record and the position move together
        p.history.append(record)
        p.epoch, p.batch = epoch + 1, 0
        p.epoch_sums, p.epoch_count, p.epoch_samples, p.epoch_seconds = {}, 0, 0, 0.0
        self._consistent = True
        if ctx.is_main:
            self._save_checkpoint()
            lines = "".join(json.dumps(r) + "\n" for r in p.history)
            atomic_write_text(self.out_dir / "history.jsonl", lines)
            shown = " ".join(
                f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "global_step")
            )
            self._log(f"epoch {epoch + 1}/{cfg.epochs}: {shown}")

    # -- helpers -------------------------------------------------------------------------------
    def _lr(self) -> float:
        return float(self._optimizer.param_groups[0]["lr"])

    def _checkpoint_due(self, now: float) -> bool:
        minutes = self.config.checkpoint_minutes
        return minutes is not None and now - self._last_save >= 60.0 * minutes

    def _epoch_means(
        self, *, check: bool = False, epoch: int = 0, reduce: bool = False
    ) -> dict[str, float]:
        p = self._progress
        keys = sorted(p.epoch_sums)
        values = [float(p.epoch_sums[k]) for k in keys] + [float(p.epoch_count)]
        if reduce and self._ctx.is_distributed:
            totals = torch.tensor(values, dtype=torch.float64, device=self._device)
            values = self._ctx.all_reduce_sum(totals).tolist()
        count = max(values[-1], 1.0)
        means = {k: v / count for k, v in zip(keys, values[:-1], strict=True)}
        if check and "loss" in means and not math.isfinite(means["loss"]):
            raise ConfigError(
                f"training diverged: the mean loss of epoch {epoch + 1} is {means['loss']} at "
                f"step {p.global_step}; lower the learning rate (now {self.config.lr:g}), set "
                "grad_clip, or check the data"
            )
        return means

    def _objective_config(self) -> dict[str, Any]:
        hook = getattr(self.objective, "objective_config", None)
        return _json_normal(hook()) if callable(hook) else {}

    def _prepare_out_dir(self, overwrite: bool) -> None:
        names = ("last.safetensors", "last.json", "previous.safetensors", "previous.json")
        names += ("history.jsonl", "summary.json", "model.safetensors", "model.json")
        existing = [n for n in names if (self.out_dir / n).exists()]
        if not existing or not self._ctx.is_main:
            return
        if not overwrite:
            raise ConfigError(
                f"{self.out_dir} already holds a training run ({', '.join(existing)}): pass "
                "resume=True (--resume) to continue it, overwrite=True (--overwrite) to start "
                "over, or choose another out_dir (--out)"
            )
        for n in existing:
            (self.out_dir / n).unlink()
        self._log(f"overwrite: removed {', '.join(existing)} from {self.out_dir}")

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self) -> None:
        cfg, obj, p = self.config, self.objective, self._progress
        tensors: dict[str, Tensor] = {f"model.{k}": v for k, v in obj.module.state_dict().items()}
        meta = {
            "format": format_name(CHECKPOINT_KIND),
            "format_version": CHECKPOINT_VERSION,
            "config": cfg.to_dict(),
            "model_config": _json_normal(obj.model_config()),
            "objective_config": self._objective_config(),
            "steps_per_epoch": self._spe,
            "progress": p.to_dict(),
            "history": p.history,
            "optimizer": _pack(self._optimizer.state_dict(), "optimizer", tensors),
            "scheduler": _pack(self._scheduler.state_dict(), "scheduler", tensors),
            "rng": _capture_rng(tensors),
            "seed": cfg.seed,
            "world_size": self._ctx.world_size,
            "saved_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "environment": self._env,
        }
        # The previous state stays on disk until this one is committed (a kill never loses it).
        save_state(self.checkpoint_prefix, tensors, meta, keep=self.previous_prefix)
        self._last_save = time.monotonic()

    def _restore(self) -> None:
        cfg, obj = self.config, self.objective
        try:
            prefix, tensors, meta, skipped = load_newest(
                [self.checkpoint_prefix, self.previous_prefix]
            )
        except CheckpointError as err:
            raise CheckpointError(
                f"cannot resume {self.out_dir}: {err}. Start over with overwrite=True (--overwrite)"
            ) from None
        for problem in skipped:
            warnings.warn(
                f"{problem}; resuming from the previous checkpoint {prefix}.* instead",
                stacklevel=3,
            )
        source = f"{prefix}.safetensors"
        check_format(meta, CHECKPOINT_KIND, f"{prefix}.json", CHECKPOINT_VERSION)
        token = tensors.pop("checkpoint.token", None)  # pairs written before irad.checkpoint
        if "token" in meta and (token is None or int(token[0]) != meta["token"]):
            raise CheckpointError(
                f"{prefix}.safetensors and {prefix}.json come from different saves (the process "
                "was probably killed between the two writes); the run cannot resume from them: "
                "start over with overwrite=True (--overwrite)"
            )
        problems: list[str] = []
        diffs = cfg.differences(meta.get("config", {}))
        problems += [f"{k}: checkpoint {old!r}, now {new!r}" for k, (new, old) in diffs.items()]
        for key, now in (
            ("model_config", _json_normal(obj.model_config())),
            ("objective_config", self._objective_config()),
        ):
            saved = meta.get(key, {})
            if saved != now:
                changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
                problems += [
                    f"{key}.{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in changed
                ]
        if meta.get("steps_per_epoch") != self._spe:
            problems.append(
                f"steps_per_epoch: checkpoint {meta.get('steps_per_epoch')}, now {self._spe} "
                "(the training data or batch size changed)"
            )
        if problems:
            raise ConfigError(
                f"cannot resume {self.out_dir}: this run's settings differ from the checkpoint's "
                f"({'; '.join(problems)}). Resume with the original settings, or start a new run "
                "with another out_dir (--out) or overwrite=True (--overwrite)"
            )
        model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        load_into(obj.module, model, source)
        try:
            self._optimizer.load_state_dict(_unpack(meta["optimizer"], tensors))
            self._scheduler.load_state_dict(_unpack(meta["scheduler"], tensors))
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"{source}: the optimizer or scheduler state does not load: {err}"
            ) from err
        if self._ctx.is_main:
            _restore_rng(meta["rng"], tensors)
        else:  # only rank 0's RNG state is saved; give the others a fresh, reproducible one
            seed_everything(cfg.seed + self._ctx.rank + 1_000_003 * meta["progress"]["global_step"])
        progress = dict(meta["progress"])
        self._progress = _Progress(**progress, history=list(meta.get("history", [])))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`TrainingTerminated` while training, so a checkpoint is saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise TrainingTerminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- state (de)serialisation: tensors to safetensors, the rest to JSON ------------------------


def _pack(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-ready copy of ``obj`` whose tensors move to ``tensors`` as ``{"__tensor__": key}``."""
    if isinstance(obj, Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _pack(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        # Optimizer state is keyed by parameter index; JSON objects only have string keys.
        return {"__items__": [[k, _pack(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_pack(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise CheckpointError(f"cannot store {prefix} of type {type(obj).__name__} in a checkpoint")


def _unpack(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            key = obj["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"the checkpoint lacks the tensor {key!r}")
            return tensors[key]
        if set(obj) == {"__items__"}:
            return {k: _unpack(v, tensors) for k, v in obj["__items__"]}
        return {k: _unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unpack(v, tensors) for v in obj]
    return obj


def _capture_rng(tensors: dict[str, Tensor]) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, gauss_next = random.getstate()
    cuda = 0
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states = torch.cuda.get_rng_state_all()
        for i, s in enumerate(states):
            tensors[f"rng.cuda.{i}"] = s
        cuda = len(states)
    return {
        "python": [version, list(internal), gauss_next],
        "numpy": [name, int(pos), int(has_gauss), float(cached)],
        "cuda_devices": cuda,
    }


def _restore_rng(rng: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, pos, has_gauss, cached = rng["numpy"]
    keys = tensors["rng.numpy"].numpy().astype(np.uint32)
    np.random.set_state((name, keys, pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    n = rng.get("cuda_devices", 0)
    if n and torch.cuda.is_available() and torch.cuda.device_count() == n:
        torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(n)])


def _json_normal(obj: Any) -> Any:
    """What ``obj`` reads back as after a JSON round trip (tuples -> lists, keys -> str)."""
    return json.loads(json.dumps(obj, default=str))
