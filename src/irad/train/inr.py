"""Stage 1: train the implicit representation (FEAT + φ) with an L1 loss on one of five tasks.

Sec. 4.2 and A.1: Adam, lr 1e-4, betas (0, 0.9), batch 128, L1 between the representation's
colours at the query points and the clean colours. The task (:mod:`irad.train.tasks`) decides
what the encoder sees: the clean image, a ×2 smaller one, a masked one, a noisy one, or the PGD
adversarial image (the paper's choice, Table 7). A list of tasks is cycled batch by batch.

Example:
    >>> from irad.models.implicit_presets import get_preset
    >>> from irad.train import TrainConfig, Trainer
    >>> preset = get_preset("cpu")
    >>> pairs = PairDataset("pairs/cifar10-r20")  # from `irad prepare-pairs`  # doctest: +SKIP
    >>> objective = ImplicitRepresentationObjective.from_preset(
    ...     preset, pairs, task="pgd-denoising")  # doctest: +SKIP
    >>> config = TrainConfig.from_options(preset.inr.config_fields(), out_dir="runs/inr-cpu")
    >>> config.optimizer, config.betas
    ('adam', (0.0, 0.9))
    >>> Trainer(objective, config).fit()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from irad.checks import check_batch_size
from irad.defenses.reconstruction import ImplicitReconstruction
from irad.errors import ConfigError, InputError
from irad.models.implicit_presets import ImplicitPreset, get_preset
from irad.models.liif import ImplicitRepresentation
from irad.train.pairs import PairDataset
from irad.train.tasks import ReconstructionTask, build_task


def _batch_generator(seed: int, index: int) -> torch.Generator:
    # Per-batch stream: a function of the epoch's seed and the batch index only (resumable).
    return torch.Generator().manual_seed((seed * 1_000_003 + index) & ((1 << 63) - 1))


def _psnr(a: Tensor, b: Tensor) -> float:
    """Mean PSNR in dB over the batch (the one PSNR, :func:`irad.evaluate.quality.psnr`)."""
    from irad.evaluate.quality import psnr  # lazy: training does not need the evaluation package

    return float(psnr(a, b.clamp(0, 1)).mean())


class _CleanOnly:
    """Adapter: an ``ImageDataset`` as a source of ``(clean, None)`` batches."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def take(self, rows: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        x, y = self.dataset.take(rows)
        return x, None, y


class ImplicitRepresentationObjective:
    """L1 reconstruction on a task; an :class:`irad.train.Objective` for the one trainer.

    Args:
        representation: the model to train (``module``).
        data: a :class:`~irad.train.pairs.PairDataset` (needed for ``pgd-denoising``; the other
            tasks use its clean images), or an ``ImageDataset`` of clean images.
        task: a task, a task name, or a list of them (cycled by batch index).
        batch_size: images per step (must equal ``TrainConfig.batch_size``).
        sample_q: random query pixels per image (``None``: all), for tasks given by name.
        eval_data: pairs for the per-epoch evaluation (PSNR of RECONS(adv), RECONS(clean) and
            adv against clean); ``None``: none.
        eval_n: evaluate on the first ``eval_n`` pairs of ``eval_data``.
        preset: preset name recorded in the saved model.
        fast: train through the fast path of the implicit representation (default; the same
            loss and gradients as the per-query reference path up to float rounding, about one
            ensemble term per query on the pixel-centre queries of most tasks).
        task_kwargs: settings of tasks given by name (e.g. ``{"sigma": 8}``).

    Shape:
        - batches: ``(inputs (B, 3, h, w), coords (B, Q, 2), cells (B, Q, 2), targets (B, Q, 3))``.
    """

    def __init__(
        self,
        representation: ImplicitRepresentation,
        data: PairDataset | Any,
        task: str | ReconstructionTask | Sequence[str | ReconstructionTask] = "pgd-denoising",
        *,
        batch_size: int = 128,
        sample_q: int | None = None,
        eval_data: PairDataset | None = None,
        eval_n: int = 256,
        preset: str = "custom",
        task_kwargs: dict[str, Any] | None = None,
        chunk_size: int | None = None,
        fast: bool = True,
    ) -> None:
        tasks = [task] if isinstance(task, (str, ReconstructionTask)) else list(task)
        if not tasks:
            raise ConfigError("give at least one training task")
        self.tasks = [
            t
            if isinstance(t, ReconstructionTask)
            else build_task(t, sample_q=sample_q, **_kwargs_for(t, task_kwargs or {}))
            for t in tasks
        ]
        is_pairs = isinstance(data, PairDataset)
        if not is_pairs and any(t.needs_pairs for t in self.tasks):
            raise ConfigError(
                "pgd-denoising needs adversarial pairs: pass a PairDataset (irad prepare-pairs)"
            )
        check_batch_size(batch_size)
        if len(data) < batch_size:
            raise InputError(
                f"the training data holds {len(data)} images, fewer than one batch of "
                f"{batch_size}; lower the batch size"
            )
        self.module = representation
        self.representation = representation
        self.data = data
        self._source = data if is_pairs else _CleanOnly(data)
        self.batch_size = batch_size
        self.eval_data = eval_data
        self.eval_n = eval_n
        self.preset = preset
        self.chunk_size = chunk_size
        self.fast = fast
        self.last_evaluation: dict[str, float] = {}

    @classmethod
    def from_preset(
        cls,
        preset: str | ImplicitPreset,
        data: PairDataset | Any,
        task: str | ReconstructionTask | Sequence[str | ReconstructionTask] = "pgd-denoising",
        **kwargs: Any,
    ) -> ImplicitRepresentationObjective:
        """A fresh representation of the preset's sizes, with its batch size and ``sample_q``."""
        p = get_preset(preset)
        kwargs.setdefault("batch_size", p.inr.batch_size)
        kwargs.setdefault("sample_q", p.inr_sample_q)
        kwargs.setdefault("chunk_size", p.chunk_size)
        rep = ImplicitRepresentation(p.representation_config())
        return cls(rep, data, task, preset=p.name, **kwargs)

    # -- Objective -----------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return len(self._source) // self.batch_size

    def batches(
        self, epoch: int, generator: torch.Generator, start_batch: int
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        order = torch.randperm(len(self._source), generator=torch.Generator().manual_seed(seed))
        for k in range(start_batch, self.steps_per_epoch()):
            rows = order[k * self.batch_size : (k + 1) * self.batch_size]
            clean, adv, _ = self._source.take(rows)
            task = self.tasks[k % len(self.tasks)]
            b = task(clean, adv, generator=_batch_generator(seed, k))
            yield b.inputs, b.coords, b.cells, b.targets

    def loss(self, batch: tuple[Tensor, Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        inputs, coords, cells, targets = batch
        rep = self.representation
        # No clamp: the L1 loss keeps its gradient for predictions outside [0, 1].
        field_ = rep.field(inputs, fast=self.fast)
        pred = rep.query(field_, coords, cells, clamp=False, chunk_size=None, fast=self.fast)
        loss = (pred - targets).abs().mean()
        return loss, {"l1": loss.detach()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.eval_data is None or self.eval_n <= 0:
            return {}
        n = min(self.eval_n, len(self.eval_data))
        device = next(self.representation.parameters()).device
        clean, adv, _ = self.eval_data.take(range(n))
        clean, adv = clean.to(device), adv.to(device)
        rec_adv = torch.cat([self._render(adv[s : s + 128]) for s in range(0, n, 128)])
        rec_clean = torch.cat([self._render(clean[s : s + 128]) for s in range(0, n, 128)])
        self.last_evaluation = {
            "psnr_adv": _psnr(clean, adv),
            "psnr_recons_adv": _psnr(clean, rec_adv),
            "psnr_recons_clean": _psnr(clean, rec_clean),
        }
        return dict(self.last_evaluation)

    def _render(self, x: Tensor) -> Tensor:
        kw = {"chunk_size": self.chunk_size} if self.chunk_size else {}
        return self.representation(x, **kw)

    def defense(self) -> ImplicitReconstruction:
        """The model being trained as the DISCO-style defense that its checkpoint loads as."""
        out = ImplicitReconstruction(self.representation, preset=None, chunk_size=self.chunk_size)
        out.preset = self.preset
        return out

    def model_config(self) -> dict[str, Any]:
        return self.defense().checkpoint_config()

    def objective_config(self) -> dict[str, Any]:
        """Settings a resumed run must share: tasks, batching, training data."""
        data = self.data
        if isinstance(data, PairDataset):
            ident = {"pairs_run_key": data.manifest.get("run_key"), "rows": data.selection_key}
        else:
            fp = getattr(data, "fingerprint", None)
            ident = {
                "description": getattr(data, "description", None),
                "fingerprint": fp() if callable(fp) else None,
            }
        return {
            "objective": "implicit-representation",
            "loss": "l1",
            "tasks": [t.config() for t in self.tasks],
            "batch_size": self.batch_size,
            "drop_last": True,
            "train_data": {**ident, "size": len(data)},
        }

    def save_model(self, prefix: str | Path) -> Path:
        training = {**self.objective_config(), "last_evaluation": self.last_evaluation}
        return self.defense().save(prefix, metadata={"training": training})


def _kwargs_for(task: str, task_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``task_kwargs`` that the named task accepts."""
    import inspect

    from irad.train.tasks import TASKS

    accepted = set(inspect.signature(TASKS.get(task)).parameters)
    return {k: v for k, v in task_kwargs.items() if k in accepted}


__all__ = ["ImplicitRepresentationObjective"]
