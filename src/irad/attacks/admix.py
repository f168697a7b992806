"""Admix (Wang, He, Wang & He, ICCV 2021), a transfer attack; not in torchattacks.

Admix is MI-FGSM whose gradient at each step is averaged over ``num_mixes × num_scales`` copies
of the current iterate ``x_t``: each copy adds a small share ``η`` of an image ``x'`` of another
class and is then scaled by ``γ_i = 1 / 2^i`` (scale invariance, Lin et al. 2020):

    ḡ = 1 / (m1 m2) Σ_{x' ∈ X'} Σ_{i < m1} ∇_x J(γ_i (x_t + η x'), y)
    g_{t+1} = μ g_t + ḡ / ||ḡ||_1,        x_{t+1} = Π_ε(x_t + α sign(g_{t+1}))

Defaults are the paper's: ``steps`` T = 10, ``alpha`` α = ε / T, ``decay`` μ = 1.0,
``num_scales`` m1 = 5, ``num_mixes`` m2 = 3, ``eta`` η = 0.2. As in the reference code, images
live in [-1, 1] for the mixing and scaling (``γ_i`` shrinks towards mid-grey, ``x'`` adds a
zero-mean share); in [0, 1] terms a copy is ``0.5 + γ_i (x_t + η (x' - 0.5) - 0.5)``, and the
model sees it clamped to [0, 1] (identity gradient). The partners ``x'`` are drawn, afresh at
every step and for every image, from the other images of the batch with a different label (any
other image if none has one; the image itself in a batch of one), from the call's seeded
generator, so the attack is reproducible.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.attacks.base import (
    Attack,
    AttackContext,
    check_positive,
    check_positive_int,
    project_linf,
)
from irad.attacks.registry import register_attack
from irad.errors import InputError

__all__ = ["Admix", "admix_partners"]


def admix_partners(y: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Draw ``count`` partner indices per image: another image of the batch, of another class.

    Shape:
        - y: ``(B,)`` labels; output: ``(count, B)`` indices into the batch.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> p = admix_partners(torch.tensor([0, 0, 1]), 3, g)
        >>> bool((p[:, 2] != 2).all() and (p[:, :2] == 2).all())
        True
    """
    b = y.shape[0]
    eye = torch.eye(b, dtype=torch.bool, device=y.device)
    weights = (y[:, None] != y[None, :]).float()
    # Rows without another class fall back to any other image, then to the image itself.
    no_other_class = weights.sum(1) == 0
    weights[no_other_class] = (~eye[no_other_class]).float()
    alone = weights.sum(1) == 0
    weights[alone] = eye[alone].float()
    picks = torch.multinomial(weights, count, replacement=True, generator=generator)
    return picks.t()


@register_attack("admix")
class Admix(Attack):
    """Admix-MI-FGSM (Wang et al. 2021); see the module docstring for the algorithm.

    Args:
        model, eps, seed: see :class:`~irad.attacks.base.Attack`.
        steps: iterations T (10).
        alpha: step size in /255; ``None`` means ε / T (the paper's choice).
        decay: momentum μ (1.0).
        num_scales: scale copies m1 (5), ``γ_i = 1 / 2^i`` for ``i < m1``.
        num_mixes: admixed partner images m2 (3) per step.
        eta: share η of the partner image (0.2).

    Shape:
        - x: ``(B, C, H, W)`` in [0, 1]; y: ``(B,)``; output: like x.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> attack = Admix(net, eps=8, steps=2, seed=1)
        >>> x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> torch.equal(attack(x, y), attack(x, y))
        True
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float | None = None,
        decay: float = 1.0,
        num_scales: int = 5,
        num_mixes: int = 3,
        eta: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, seed=seed)
        self.steps = check_positive_int(steps, "steps")
        if alpha is None:
            self.alpha_255 = self.eps_255 / self.steps
        else:
            self.alpha_255 = check_positive(alpha, "alpha (in /255 units)", upper=255.0)
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or decay < 0:
            raise InputError(f"decay must be a number >= 0, got {decay!r}")
        self.decay = float(decay)
        self.num_scales = check_positive_int(num_scales, "num_scales")
        self.num_mixes = check_positive_int(num_mixes, "num_mixes")
        self.eta = check_positive(eta, "eta", upper=1.0)

    @property
    def stochastic(self) -> bool:
        return True

    def params(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "alpha": self.alpha_255,
            "decay": self.decay,
            "num_scales": self.num_scales,
            "num_mixes": self.num_mixes,
            "eta": self.eta,
        }

    def _admix_gradient(self, x_t: Tensor, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:
        """ḡ: the loss gradient at ``x_t`` averaged over the admixed, scaled copies."""
        b = x.shape[0]
        x_t = x_t.detach().requires_grad_(True)
        partners = admix_partners(y, self.num_mixes, ctx.generator)
        gammas = torch.tensor(
            [0.5**i for i in range(self.num_scales)], dtype=x.dtype, device=x.device
        ).view(-1, 1, 1, 1, 1)
        labels = y.repeat(self.num_scales)
        grad = torch.zeros_like(x)
        for idx in partners:
            mixed = (2 * x_t - 1) + self.eta * (2 * x[idx] - 1)  # [-1, 1] coordinates
            copies = (gammas * mixed.unsqueeze(0) + 1) / 2  # (m1, B, C, H, W) in [0, 1] terms
            logits = ctx.model(copies.reshape(self.num_scales * b, *x.shape[1:]))
            loss = F.cross_entropy(logits, labels, reduction="sum")
            grad += torch.autograd.grad(loss, x_t)[0]
        return grad / (self.num_scales * self.num_mixes)

    def perturb(self, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:
        alpha = self.alpha_255 / 255.0
        momentum = torch.zeros_like(x)
        x_t = x.clone()
        for _ in range(self.steps):
            g = self._admix_gradient(x_t, x, y, ctx)
            l1 = g.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            momentum = self.decay * momentum + g / l1
            x_t = project_linf(x_t + alpha * momentum.sign(), x, self.eps).detach()
        return x_t
