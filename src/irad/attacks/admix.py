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

from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from irad.attacks.base import Attack, AttackContext, Param, project_linf
from irad.attacks.registry import register_attack
from irad.checks import check_float, check_positive, check_positive_int

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

    parameters = MappingProxyType(
        {
            "steps": Param(10, check_positive_int),
            "alpha": Param(  # None: ε / T, see step_255
                None,
                lambda v, name: check_positive(v, f"{name} (in /255 units)", 255.0),
                optional=True,
            ),
            "decay": Param(1.0, lambda v, name: check_float(v, name, 0.0)),
            "num_scales": Param(5, check_positive_int),
            "num_mixes": Param(3, check_positive_int),
            "eta": Param(0.2, lambda v, name: check_positive(v, name, 1.0)),
        }
    )

    @property
    def stochastic(self) -> bool:
        return True

    @property
    def step_255(self) -> float:
        """The step size in /255: ``alpha``, or ε / T when ``alpha`` is None."""
        return self.eps_255 / self.steps if self.alpha is None else self.alpha

    def params(self) -> dict[str, Any]:
        return {**super().params(), "alpha": self.step_255}

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
        alpha = self.step_255 / 255.0
        momentum = torch.zeros_like(x)
        x_t = x.clone()
        for _ in range(self.steps):
            g = self._admix_gradient(x_t, x, y, ctx)
            l1 = g.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            momentum = self.decay * momentum + g / l1
            x_t = project_linf(x_t + alpha * momentum.sign(), x, self.eps).detach()
        return x_t
