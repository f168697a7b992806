"""Threat models: what the adversary knows, and which module its attack differentiates through.

Each threat model is an object of the registry :data:`THREATS` (built by name with
:func:`threat_model`); the evaluation harness asks it, never compares names:

====================== ======== ======== ====================================================
threat                 white    EOT      surface returned by :meth:`ThreatModel.surface`
                       box
====================== ======== ======== ====================================================
``oblivious``          no       no       the classifier alone; the defense is applied to the
                                         finished adversarial images (so they can be cached
                                         and shared by every defense)
``bpda``               yes      no       ``classifier(BPDA(defense)(x))``: forward through
                                         the defense, backward as the identity (Athalye et
                                         al. 2018)
``bpda-eot``           yes      yes      :class:`EOT` over ``eot_samples`` draws of the
                                         ``bpda`` surface when the defense is random
``adaptive``           yes      yes      ``classifier(defense(x))`` with the defense's real
                                         gradients, EOT over ``eot_samples`` draws when the
                                         defense is random; a defense that declares
                                         ``differentiable = False`` is run forward as itself
                                         and backward through
                                         ``defense.differentiable_surrogate()``
====================== ======== ======== ====================================================

EOT is driven by the defense's ``stochastic`` flag alone (a chain of defenses is random if any
part is), so a new random defense needs no change here. :meth:`ThreatModel.adapt` adapts an
attack to a defense: against a random defense a white-box threat asks the attack class for its
random-model settings (AutoAttack switches ``standard`` to ``rand``, EOT 20), against a
deterministic one for its deterministic-model settings (APGD's active set, which leaves fooled
images out of later steps: the white-box attack is judged by the model it attacks), and an
attack that averages gradients itself (AutoAttack ``rand``, ``eotpgd``, ``eot_iter > 1``) gets
a surface without a second EOT layer.

The paper's BPDA attack is PGD with 10 steps of 1/255 and no random start
(:data:`PAPER_BPDA`, :func:`paper_bpda_attack`); the CPU protocol adds a strong variant with 100
steps and EOT for random defenses (:data:`STRONG_BPDA`, :func:`strong_bpda_attack`). The paper's
Table 5 is ``adaptive`` with AutoAttack (``version="rand"`` for random defenses).

EOT here averages *logits* over the samples (``reduce="logits"``), the usual choice in adaptive
evaluations of random pre-processing defenses; ``reduce="probs"`` averages softmax
probabilities instead and returns their log, so that cross-entropy on the output is
``-log E[p_y]``. Either is a module returning logits, so every attack works on it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irad.attacks.base import Attack, straight_through
from irad.attacks.registry import ATTACKS, attack_parameters, build_attack
from irad.checks import check_choice, check_logits, check_positive_int
from irad.defenses.base import DefendedClassifier
from irad.errors import ConfigError, InputError
from irad.registry import Registry

__all__ = [
    "BPDA",
    "EOT",
    "PAPER_BPDA",
    "STRONG_BPDA",
    "STRONG_BPDA_EOT_SAMPLES",
    "THREATS",
    "THREAT_MODELS",
    "AttackPlan",
    "ThreatModel",
    "attack_surface",
    "is_stochastic",
    "paper_bpda_attack",
    "strong_bpda_attack",
    "threat_model",
]

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
        self.reduce = check_choice(reduce, "reduce", ("logits", "probs"))

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


def is_stochastic(module: Any) -> bool:
    """Whether ``module`` declares itself random (``stochastic = True``; chains and wrappers
    pass their parts' flag on)."""
    return bool(getattr(module, "stochastic", False))


@dataclass(frozen=True)
class AttackPlan:
    """An attack as a threat model runs it on one defense.

    Attributes:
        params: the attack's parameters (the requested ones, adapted to the defense).
        eot_samples: forward passes averaged per gradient by the surface (1: no EOT layer).
        adapted: the parameters that the threat model changed, e.g. ``{"version": "rand"}``.
    """

    params: dict[str, Any]
    eot_samples: int = 1
    adapted: dict[str, Any] = field(default_factory=dict)


class ThreatModel:
    """What the adversary knows, as an object the harness asks (see the module table).

    Subclasses set the class attributes and :meth:`_defense_stage`; register them in
    :data:`THREATS` with :func:`register_threat`.

    Attributes:
        name: the registry name, as written on the command line.
        white_box: the attack sees the defense (its surface contains it). When False, the attack
            runs on the classifier alone, once for all defenses, which are then applied to the
            finished adversarial images.
        uses_eot: random defenses (``defense.stochastic``) are attacked through :class:`EOT`.
        real_gradients: the backward pass goes through the defense itself (else BPDA's
            identity, or no defense at all).
        with_eot: the name of the threat that adds EOT to this one (what a random defense
            needs), or None.
        description: one line for reports.

    Example:
        >>> from irad.defenses import Identity
        >>> threat = threat_model("bpda-eot")
        >>> threat.white_box, threat.uses_eot, threat.eot_samples(Identity(), 10)
        (True, True, 1)
    """

    name: ClassVar[str] = ""
    white_box: ClassVar[bool] = True
    uses_eot: ClassVar[bool] = False
    real_gradients: ClassVar[bool] = False
    with_eot: ClassVar[str | None] = None
    description: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"threat_model({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def eot_samples(self, defense: nn.Module, requested: int) -> int:
        """EOT samples per gradient on ``defense``: ``requested`` if this threat uses EOT and
        the defense is random, else 1 (averaging identical outputs only costs time)."""
        samples = check_positive_int(requested, "eot_samples")
        return samples if self.uses_eot and is_stochastic(defense) else 1

    def surface(
        self, defense: nn.Module, classifier: nn.Module, *, eot_samples: int = 1
    ) -> nn.Module:
        """The module the attack differentiates through: images in [0, 1] -> logits.

        Args:
            defense: an :class:`irad.defenses.Defense` (images -> images in [0, 1]).
            classifier: images in [0, 1] -> logits.
            eot_samples: forward passes averaged per gradient when this threat uses EOT and
                the defense is random; ignored otherwise.
        """
        for obj, what in ((defense, "defense"), (classifier, "classifier")):
            if not isinstance(obj, nn.Module):
                raise InputError(f"the {what} must be an nn.Module, got {type(obj).__name__}")
        samples = self.eot_samples(defense, eot_samples)
        stage = self._defense_stage(defense)
        if stage is None:
            return classifier
        surface: nn.Module = DefendedClassifier(stage, classifier)
        return EOT(surface, samples) if samples > 1 else surface

    def _defense_stage(self, defense: nn.Module) -> nn.Module | None:
        """The defense as the surface sees it (None: the surface is the classifier alone)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def adapt(
        self, attack: str, params: Mapping[str, Any], defense: nn.Module, *, eot_samples: int
    ) -> AttackPlan:
        """How the attack ``attack`` with ``params`` is run on ``defense`` under this threat.

        Against a random defense, a white-box threat asks the attack class for its settings
        for random models (``for_random_model``: AutoAttack's ``rand`` version), against a
        deterministic one for those of deterministic models (``for_deterministic_model``:
        APGD's active set, which leaves fooled images out of later steps). An attack that
        averages gradients itself (``averages_gradients``; by default ``eot_iter > 1``) gets a
        surface without a second EOT layer.

        Example:
            >>> from irad.defenses import build_defense
            >>> plan = threat_model("adaptive").adapt(
            ...     "autoattack", {}, build_defense("randomization"), eot_samples=10)
            >>> plan.params, plan.eot_samples
            ({'version': 'rand'}, 1)
        """
        requested = dict(params)
        run = dict(requested)
        factory = ATTACKS.get(attack) if attack in ATTACKS else None
        if self.white_box:
            # A white-box attack's images are judged by the model it attacks (forward through
            # the real defense): on a deterministic one, an attack may stop on fooled images.
            hook = "for_random_model" if is_stochastic(defense) else "for_deterministic_model"
            adapt = getattr(factory, hook, None)
            if callable(adapt):
                run = dict(adapt(run))
        if _averages_gradients(attack, factory, run):
            samples = 1
        else:
            samples = self.eot_samples(defense, eot_samples)
        adapted = {k: v for k, v in run.items() if k not in requested or requested[k] != v}
        return AttackPlan(run, samples, adapted)


def _averages_gradients(name: str, factory: Any, params: Mapping[str, Any]) -> bool:
    """Whether the attack averages gradients over random draws itself (its own EOT)."""
    own = getattr(factory, "averages_gradients", None)
    if callable(own):
        return bool(own(params))
    defaults = attack_parameters(name) if factory is not None else {}
    eot_iter = params.get("eot_iter", defaults.get("eot_iter", 1))
    return isinstance(eot_iter, int) and not isinstance(eot_iter, bool) and eot_iter > 1


#: Every threat model, by name (build one with :func:`threat_model`).
THREATS: Registry[ThreatModel] = Registry("threat")


def register_threat(cls: type[ThreatModel]) -> type[ThreatModel]:
    """Class decorator: register a :class:`ThreatModel` subclass under ``cls.name``."""
    THREATS.register(cls.name)(cls)
    return cls


@register_threat
class Oblivious(ThreatModel):
    """The attack sees the classifier alone; the defense is applied to its finished images."""

    name = "oblivious"
    white_box = False
    description = "the attack sees the classifier alone"

    def _defense_stage(self, defense: nn.Module) -> nn.Module | None:
        return None


@register_threat
class BPDAThreat(ThreatModel):
    """Through the defense with BPDA's identity backward pass; no EOT."""

    name = "bpda"
    with_eot = "bpda-eot"
    description = "through the defense, backward as the identity (BPDA)"

    def _defense_stage(self, defense: nn.Module) -> nn.Module | None:
        return BPDA(defense)


@register_threat
class BPDAWithEOT(BPDAThreat):
    """BPDA, with EOT over draws of a random defense."""

    name = "bpda-eot"
    uses_eot = True
    with_eot = None
    description = "through the defense, backward as the identity (BPDA), EOT for random ones"


@register_threat
class Adaptive(ThreatModel):
    """Through the defense with its real gradients (its surrogate's when it declares none)."""

    name = "adaptive"
    uses_eot = True
    real_gradients = True
    description = "through the defense with its gradients, EOT for random ones"

    def _defense_stage(self, defense: nn.Module) -> nn.Module | None:
        if getattr(defense, "differentiable", True):
            return defense
        surrogate = defense.differentiable_surrogate()
        if surrogate is defense:
            warnings.warn(
                f"{type(defense).__name__} declares differentiable=False but has no "
                "differentiable surrogate; the adaptive attack uses its own (likely "
                "uninformative) gradients; consider threat 'bpda'",
                RuntimeWarning,
                stacklevel=4,
            )
            return defense
        return BPDA(defense, surrogate=surrogate)


#: Names of the built-in threat models, weakest first.
THREAT_MODELS: tuple[str, ...] = tuple(
    cls.name for cls in (Oblivious, BPDAThreat, BPDAWithEOT, Adaptive)
)


def threat_model(threat: str | ThreatModel) -> ThreatModel:
    """The threat model named ``threat`` (a :class:`ThreatModel` is returned as is).

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    if isinstance(threat, ThreatModel):
        return threat
    if not isinstance(threat, str) or threat not in THREATS:
        known = list(THREAT_MODELS) + [n for n in THREATS.names() if n not in THREAT_MODELS]
        raise ConfigError(f"unknown threat {threat!r}; choose one of: {', '.join(known)}")
    return THREATS.build(threat)


def attack_surface(
    threat: str | ThreatModel, defense: nn.Module, classifier: nn.Module, *, eot_samples: int = 1
) -> nn.Module:
    """The module an attack differentiates through under ``threat`` (see the module table).

    ``threat_model(threat).surface(defense, classifier, eot_samples=...)``.

    Example:
        >>> from irad.defenses import Identity
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
        >>> attack_surface("bpda", Identity(), net)(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 10])
    """
    return threat_model(threat).surface(defense, classifier, eot_samples=eot_samples)


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

    Builds its own ``bpda-eot`` surface (plain BPDA for a deterministic defense).
    """
    surface = attack_surface("bpda-eot", defense, classifier, eot_samples=eot_samples)
    params = {k: v for k, v in STRONG_BPDA.items() if k != "name"}
    return build_attack(STRONG_BPDA["name"], surface, eps=eps, seed=seed, **params)
