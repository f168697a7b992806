"""Threat models: which module an attack differentiates through.

====================== ===================================================================
threat                 surface returned by :func:`attack_surface`
====================== ===================================================================
``oblivious``          the classifier alone; the defense is applied to the finished
                       adversarial images (so they can be cached and shared by defenses)
``bpda``               ``classifier(BPDA(defense)(x))``: forward through the defense,
                       backward as the identity (Athalye et al. 2018)
``bpda-eot``           :class:`EOT` over ``eot_samples`` draws of the ``bpda`` surface
                       (for random defenses)
``adaptive``           ``classifier(defense(x))`` with the defense's real gradients, EOT over
                       ``eot_samples`` draws when the defense is random; a defense that
                       declares ``differentiable = False`` is run forward as itself and
                       backward through ``defense.differentiable_surrogate()`` (BPDA with a
                       surrogate)
====================== ===================================================================

The paper's BPDA attack is PGD with 10 steps of 1/255 and no random start
(:data:`PAPER_BPDA`, :func:`paper_bpda_attack`); the CPU protocol adds a strong variant with 100
steps and EOT for random defenses (:data:`STRONG_BPDA`, :func:`strong_bpda_attack`). The paper's
Table 5 is ``adaptive`` with AutoAttack (``version="rand"`` for random defenses).

EOT here averages *logits* over the samples (``reduce="logits"``), the usual choice in adaptive
evaluations of random pre-processing defenses; ``reduce="probs"`` averages softmax
probabilities instead and returns their log, so that cross-entropy on the output is
``-log E[p_y]``. Either is a module returning logits, so every attack works on it. Note that
AutoAttack's ``rand`` version and ``eotpgd`` already average *gradients* over
``eot_iter`` forward passes: with them, use ``eot_samples=1`` unless you want both.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from irad.attacks.base import Attack, check_choice, check_positive_int, straight_through
from irad.attacks.registry import build_attack
from irad.checks import check_logits
from irad.defenses.base import DefendedClassifier
from irad.errors import ConfigError, InputError

__all__ = [
    "BPDA",
    "EOT",
    "PAPER_BPDA",
    "STRONG_BPDA",
    "STRONG_BPDA_EOT_SAMPLES",
    "THREAT_MODELS",
    "attack_surface",
    "paper_bpda_attack",
    "strong_bpda_attack",
]

THREAT_MODELS: tuple[str, ...] = ("oblivious", "bpda", "bpda-eot", "adaptive")

#: The paper's BPDA attack (Sec. 6, Table 3): PGD, 10 steps of 1/255, no random start.
PAPER_BPDA: dict[str, Any] = {"name": "pgd", "steps": 10, "alpha": 1.0, "random_start": False}
#: The CPU protocol's strong BPDA variant: the same with 100 steps (and EOT for random defenses).
STRONG_BPDA: dict[str, Any] = {"name": "pgd", "steps": 100, "alpha": 1.0, "random_start": False}
#: EOT samples of the strong BPDA variant for random defenses.
STRONG_BPDA_EOT_SAMPLES = 10


class BPDA(nn.Module):
    """Backward Pass Differentiable Approximation (Athalye et al. 2018).

    The forward pass returns ``defense(x)`` exactly; the backward pass is the identity (the
    defense is treated as ``f(x) ≈ x``), or, given ``surrogate``, the gradient of
    ``surrogate(x)``. The defense runs under ``torch.no_grad()``.

    Args:
        defense: a module from images to images of the same shape.
        surrogate: optional differentiable stand-in used for the backward pass only.

    Shape:
        - Input: ``(B, C, H, W)`` in [0, 1]; output: the same shape.

    Example:
        >>> from irad.defenses import Identity
        >>> x = torch.rand(1, 3, 4, 4, requires_grad=True)
        >>> BPDA(Identity())(x).sum().backward(); bool((x.grad == 1).all())
        True
    """

    def __init__(self, defense: nn.Module, surrogate: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(defense, nn.Module):
            raise InputError(f"BPDA needs an nn.Module defense, got {type(defense).__name__}")
        self.defense = defense
        self.surrogate = surrogate

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.defense, "stochastic", False))

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            out = self.defense(x)
        carrier = x if self.surrogate is None else self.surrogate(x)
        return straight_through(carrier, out)


class EOT(nn.Module):
    """Expectation over Transformation: average ``module`` over ``samples`` forward passes.

    Each sample is a separate call, so a defense that draws one random transformation per
    call still gets ``samples`` independent draws. The gradient of the average is the average
    of the per-sample gradients.

    Args:
        module: images -> logits ``(B, K)``, usually random.
        samples: number of forward passes averaged (>= 1).
        reduce: ``"logits"`` (mean of logits, default) or ``"probs"`` (log of the mean softmax).

    Shape:
        - Input: ``(B, C, H, W)``; output: ``(B, K)``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
        >>> EOT(net, samples=4)(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 10])
    """

    def __init__(self, module: nn.Module, samples: int, reduce: str = "logits") -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise InputError(f"EOT needs an nn.Module, got {type(module).__name__}")
        self.module = module
        self.samples = check_positive_int(samples, "EOT samples")
        self.reduce = check_choice(reduce, ("logits", "probs"), "reduce")

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.module, "stochastic", False))

    def forward(self, x: Tensor) -> Tensor:
        outs = []
        for _ in range(self.samples):
            outs.append(check_logits(self.module(x), x.shape[0]))
        stacked = torch.stack(outs)
        if self.reduce == "logits":
            return stacked.mean(0)
        return torch.logsumexp(stacked.log_softmax(-1), dim=0) - math.log(self.samples)

    def extra_repr(self) -> str:
        return f"samples={self.samples}, reduce={self.reduce!r}"


def _eot(surface: nn.Module, defense: nn.Module, samples: int) -> nn.Module:
    # Averaging identical outputs only costs time: a deterministic defense gets one sample.
    if samples > 1 and getattr(defense, "stochastic", False):
        return EOT(surface, samples)
    return surface


def attack_surface(
    threat: str, defense: nn.Module, classifier: nn.Module, *, eot_samples: int = 1
) -> nn.Module:
    """The module an attack differentiates through under ``threat`` (see the module table).

    Args:
        threat: one of :data:`THREAT_MODELS`.
        defense: an :class:`irad.defenses.Defense` (images -> images in [0, 1]).
        classifier: images in [0, 1] -> logits.
        eot_samples: forward passes averaged by ``bpda-eot`` and ``adaptive`` when the defense
            is random (``defense.stochastic``); ignored by ``oblivious`` and ``bpda`` and for
            deterministic defenses.

    Returns:
        An ``nn.Module`` from images to logits with a ``stochastic`` attribute where relevant.

    Example:
        >>> from irad.defenses import Identity
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
        >>> attack_surface("bpda", Identity(), net)(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 10])
    """
    if threat not in THREAT_MODELS:
        raise ConfigError(f"unknown threat model {threat!r}; known: {', '.join(THREAT_MODELS)}")
    for obj, what in ((defense, "defense"), (classifier, "classifier")):
        if not isinstance(obj, nn.Module):
            raise InputError(f"the {what} must be an nn.Module, got {type(obj).__name__}")
    samples = check_positive_int(eot_samples, "eot_samples")
    if threat == "oblivious":
        return classifier
    if threat == "bpda":
        return DefendedClassifier(BPDA(defense), classifier)
    if threat == "bpda-eot":
        return _eot(DefendedClassifier(BPDA(defense), classifier), defense, samples)
    # adaptive
    stage: nn.Module = defense
    if not getattr(defense, "differentiable", True):
        surrogate = defense.differentiable_surrogate()
        if surrogate is defense:
            warnings.warn(
                f"{type(defense).__name__} declares differentiable=False but has no "
                "differentiable surrogate; the adaptive attack uses its own (likely "
                "uninformative) gradients; consider threat 'bpda'",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            stage = BPDA(defense, surrogate=surrogate)
    return _eot(DefendedClassifier(stage, classifier), defense, samples)


def paper_bpda_attack(surface: nn.Module, *, eps: float = 8.0, seed: int = 0) -> Attack:
    """The paper's BPDA attack on a ``bpda`` surface: PGD, 10 steps of 1/255, no random start.

    Example:
        >>> from irad.defenses import Identity
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
        >>> paper_bpda_attack(attack_surface("bpda", Identity(), net)).config()["steps"]
        10
    """
    params = {k: v for k, v in PAPER_BPDA.items() if k != "name"}
    return build_attack(PAPER_BPDA["name"], surface, eps=eps, seed=seed, **params)


def strong_bpda_attack(
    defense: nn.Module,
    classifier: nn.Module,
    *,
    eps: float = 8.0,
    eot_samples: int = STRONG_BPDA_EOT_SAMPLES,
    seed: int = 0,
) -> Attack:
    """The CPU protocol's strong BPDA: PGD, 100 steps of 1/255; EOT when the defense is random.

    Builds its own surface: ``bpda-eot`` with ``eot_samples`` for a random defense, else
    ``bpda``.
    """
    threat = "bpda-eot" if getattr(defense, "stochastic", False) else "bpda"
    surface = attack_surface(threat, defense, classifier, eot_samples=eot_samples)
    params = {k: v for k, v in STRONG_BPDA.items() if k != "name"}
    return build_attack(STRONG_BPDA["name"], surface, eps=eps, seed=seed, **params)
