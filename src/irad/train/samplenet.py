"""Stage 2: train SampleNet with the representation frozen (Sec. 4.3, A.1).

Loss: cross-entropy of a frozen classifier (the surrogate that crafted the pairs) on the
resampled clean image plus cross-entropy on the resampled adversarial image,
``CE(f(IRAD(x)), y) + CE(f(IRAD(x')), y)``; Adam lr 2e-4, betas (0, 0.9), batch 400 (paper
preset, CIFAR-10). Only SampleNet's MLP is trained: the implicit representation (and, in the
official layout, SampleNet's own encoder copy) stays frozen. The gradient reaches SampleNet
through the decoder's dependence on the sampling coordinates ``U = G + s``.

Full-image queries with gradients are memory hungry (every pixel, four neighbours, two MLPs);
``checkpoint=True`` (default) recomputes each chunk in the backward pass so memory stays bounded.

Example:
    >>> from irad.models import load_classifier
    >>> from irad.train import TrainConfig, Trainer
    >>> irad = IRAD.from_representation("runs/inr-cpu")  # from `irad train-inr`  # doctest: +SKIP
    >>> objective = SampleNetObjective(irad, load_classifier("resnet20-12fca82f.th"),
    ...     PairDataset("pairs/cifar10-r20"), batch_size=100)  # doctest: +SKIP
    >>> Trainer(objective, TrainConfig(optimizer="adam", lr=2e-4, betas=(0.0, 0.9),
    ...     weight_decay=0.0, schedule="constant", batch_size=100,
    ...     out_dir="runs/irad-cpu")).fit()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.checks import check_batch_size
from irad.defenses.irad import IRAD
from irad.errors import InputError
from irad.train.pairs import PairDataset


def _fingerprint(module: nn.Module) -> str:
    from irad.models import model_fingerprint

    return model_fingerprint(module)


class SampleNetObjective:
    """CE of a frozen classifier on IRAD(clean) and IRAD(adv): a :class:`irad.train.Objective`.

    Args:
        irad: the IRAD module; its representation is frozen here, its SampleNet trained.
        classifier: the frozen classifier (images in [0, 1] -> logits), e.g. the surrogate.
        pairs: training pairs (:class:`~irad.train.pairs.PairDataset`).
        batch_size: pairs per step (must equal ``TrainConfig.batch_size``).
        eval_pairs: pairs for the per-epoch evaluation (classifier accuracy on RECONS and IRAD of
            clean and adversarial images); ``None``: none.
        eval_n: evaluate on the first ``eval_n`` pairs.
        checkpoint: recompute chunks in the backward pass (bounded memory).

    Shape:
        - batches: ``(clean (B, 3, H, W), adv (B, 3, H, W), y (B,))``.
    """

    def __init__(
        self,
        irad: IRAD,
        classifier: nn.Module,
        pairs: PairDataset,
        *,
        batch_size: int = 400,
        eval_pairs: PairDataset | None = None,
        eval_n: int = 200,
        checkpoint: bool = True,
    ) -> None:
        if not isinstance(irad, IRAD):
            raise InputError(f"irad must be an IRAD module, got {type(irad).__name__}")
        check_batch_size(batch_size)
        if len(pairs) < batch_size:
            raise InputError(
                f"the pairs hold {len(pairs)} images, fewer than one batch of {batch_size}"
            )
        self.irad = irad
        self.classifier = classifier.eval()
        for p in classifier.parameters():
            p.requires_grad_(False)
        for p in irad.representation.parameters():
            p.requires_grad_(False)
        if irad.samplenet.has_encoder:  # the official layout's encoder copy stays frozen too
            for p in irad.samplenet.encoder.parameters():
                p.requires_grad_(False)
        self.module = irad.samplenet
        self.pairs = pairs
        self.batch_size = batch_size
        self.eval_pairs = eval_pairs
        self.eval_n = eval_n
        self.checkpoint = checkpoint
        self.last_evaluation: dict[str, float] = {}

    def to(self, device: torch.device | str) -> SampleNetObjective:
        self.irad.to(device)
        self.classifier.to(device)
        return self

    # -- Objective -----------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return len(self.pairs) // self.batch_size

    def batches(
        self, epoch: int, generator: torch.Generator, start_batch: int
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        order = torch.randperm(len(self.pairs), generator=torch.Generator().manual_seed(seed))
        for k in range(start_batch, self.steps_per_epoch()):
            yield self.pairs.take(order[k * self.batch_size : (k + 1) * self.batch_size])

    def loss(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        clean, adv, y = batch
        x = torch.cat([clean, adv])
        out = self.irad.resample(x, frozen_representation=True, checkpoint=self.checkpoint)
        logits = self.classifier(out)
        lc, la = logits.chunk(2)
        loss = F.cross_entropy(lc, y) + F.cross_entropy(la, y)
        return loss, {
            "acc_clean": (lc.detach().argmax(1) == y).float().mean(),
            "acc_adv": (la.detach().argmax(1) == y).float().mean(),
        }

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.eval_pairs is None or self.eval_n <= 0:
            return {}
        n = min(self.eval_n, len(self.eval_pairs))
        device = next(self.irad.parameters()).device
        recons = self.irad.reconstruction()
        hits: dict[str, int] = {}
        shift = 0.0
        for s in range(0, n, 100):
            clean, adv, y = (t.to(device) for t in self.eval_pairs.take(range(s, min(n, s + 100))))
            for name, x in (("clean", clean), ("adv", adv)):
                for tag, defense in (("recons", recons), ("irad", self.irad)):
                    pred = self.classifier(defense(x)).argmax(1)
                    key = f"acc_{tag}_{name}"
                    hits[key] = hits.get(key, 0) + int((pred == y).sum())
            shift += float(self.irad.shifts(adv).norm(dim=-1).mean()) * adv.shape[0]
        self.last_evaluation = {k: v / n for k, v in hits.items()}
        self.last_evaluation["mean_shift_px"] = shift / n
        return dict(self.last_evaluation)

    def model_config(self) -> dict[str, Any]:
        return self.irad.checkpoint_config()

    def objective_config(self) -> dict[str, Any]:
        """Settings a resumed run must share: frozen parts, loss, batching, pairs."""
        return {
            "objective": "samplenet",
            "loss": "ce(clean) + ce(adv)",
            "batch_size": self.batch_size,
            "drop_last": True,
            "representation": _fingerprint(self.irad.representation),
            "classifier": _fingerprint(self.classifier),
            "pairs": {
                "run_key": self.pairs.manifest.get("run_key"),
                "rows": self.pairs.selection_key,
                "size": len(self.pairs),
            },
        }

    def save_model(self, prefix: str | Path) -> Path:
        training = {**self.objective_config(), "last_evaluation": self.last_evaluation}
        return self.irad.save(prefix, metadata={"training": training})


__all__ = ["SampleNetObjective"]
