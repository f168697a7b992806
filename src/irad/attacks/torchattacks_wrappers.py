"""Thin wrappers around torchattacks (3.5) for the attacks it implements.

Each class declares its parameters once (:attr:`TorchattacksAttack.parameters`: default, check,
and how torchattacks takes it); the constructor, :meth:`~irad.attacks.base.Attack.params` (the
record and the cache key) and the torchattacks keyword arguments all derive from that
declaration. :class:`TorchattacksAttack` handles what torchattacks needs around it:

* the model is wrapped in :class:`~irad.attacks.base.LogitsChecked` (logits checked, inputs
  clamped to [0, 1] with an identity gradient), whose class name keeps torchattacks from
  applying its own normalisation; a check after construction makes sure none is set;
* the torchattacks object is built per call on the images' device, so models without parameters
  (torchattacks finds the device through ``model.parameters()``) work and its "Failed to set
  device" message is swallowed;
* torchattacks draws from (and APGD/FAB/Square re-seed) the global RNG; the base class forks and
  seeds it per call, so the caller's RNG is left untouched and results are reproducible.

Defaults follow torchattacks (what the paper's Fig. 4 / Table 10 list most likely ran), except
``pgd`` (20 steps, the oblivious PGD-20 of the CPU protocol) and the number of target classes
of the targeted attacks (at most 9, as in the reference AutoAttack).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import torch
import torchattacks
from torch import Tensor, nn

from irad.attacks.apgd import ActiveSetAPGD, active_set_allowed
from irad.attacks.base import Attack, AttackContext, Param, quiet_stdout
from irad.attacks.registry import register_attack
from irad.checks import (
    check_bool,
    check_choice,
    check_float,
    check_positive,
    check_positive_int,
)
from irad.errors import InputError

__all__ = [
    "APGD",
    "APGDT",
    "BIM",
    "EOTPGD",
    "FAB",
    "FFGSM",
    "FGSM",
    "MIFGSM",
    "PGD",
    "RFGSM",
    "TPGD",
    "VMIFGSM",
    "VNIFGSM",
    "Jitter",
    "Square",
    "TorchattacksAttack",
    "TorchattacksParam",
    "make_torchattack",
]

#: Targeted attacks use the top-9 other classes, as the reference AutoAttack does.
DEFAULT_TARGET_CLASSES = 9


def make_torchattack(
    cls: type[torchattacks.attack.Attack], model: nn.Module, device: torch.device, **kwargs: Any
) -> torchattacks.attack.Attack:
    """Construct a torchattacks attack on ``device`` and make sure it does not normalise."""
    with quiet_stdout():
        attack = cls(model, **kwargs)
    attack.set_device(device)
    if attack.normalization_used is not None or attack._normalization_applied is not None:
        raise RuntimeError(
            f"torchattacks.{cls.__name__} set up input normalisation; irad models take [0, 1]"
        )
    return attack


@dataclass(frozen=True)
class TorchattacksParam(Param):
    """A :class:`~irad.attacks.base.Param` that torchattacks' constructor also takes.

    Attributes:
        key: torchattacks' keyword for it (``None``: the parameter's own name).
        convert: ``convert(value, ctx)`` gives what torchattacks takes (``None``: the value).
    """

    key: str | None = None
    convert: Callable[[Any, AttackContext], Any] | None = None


def _target_classes(value: int | None, ctx: AttackContext) -> int:
    """torchattacks' ``n_classes``: it attacks ``n_classes - 1`` target classes."""
    n = DEFAULT_TARGET_CLASSES if value is None else value
    return min(n, ctx.num_classes - 1) + 1


def _frozen(**entries: Any) -> Mapping[str, Any]:
    """A read-only mapping, in the order given (declarations are class-level constants)."""
    return MappingProxyType(entries)


# The parameter kinds the wrappers share.
def _count(default: int) -> TorchattacksParam:
    return TorchattacksParam(default, check_positive_int)


def _alpha(default: float) -> TorchattacksParam:
    """A step size, given in /255 units; torchattacks takes it as a fraction of 1."""
    return TorchattacksParam(
        default,
        lambda v, name: check_positive(v, f"{name} (in /255 units)", 255.0),
        convert=lambda v, ctx: v / 255.0,
    )


def _flag(default: bool) -> TorchattacksParam:
    return TorchattacksParam(default, check_bool)


def _real(default: float, low: float | None = None) -> TorchattacksParam:
    return TorchattacksParam(default, lambda v, name: check_float(v, name, low))


def _fraction(default: float, high: float | None = None) -> TorchattacksParam:
    """A number in ``(0, high]`` (``(0, inf)`` without ``high``)."""
    upper = float("inf") if high is None else high
    return TorchattacksParam(default, lambda v, name: check_positive(v, name, upper))


def _choice(default: str, *choices: str) -> TorchattacksParam:
    return TorchattacksParam(default, lambda v, name: check_choice(v, name, choices))


def _targets() -> TorchattacksParam:
    """How many target classes (``None``: 9, as AutoAttack), capped at ``classes - 1``."""
    return TorchattacksParam(
        None, check_positive_int, optional=True, key="n_classes", convert=_target_classes
    )


def _need_three_classes(name: str, num_classes: int) -> None:
    # The DLR loss divides by the gap between the first and third largest logits.
    if num_classes < 3:
        raise InputError(f"{name} uses the DLR loss, which needs >= 3 classes; got {num_classes}")


class TorchattacksAttack(Attack):
    """Base of the wrappers: subclasses set ``ta_class`` and declare ``parameters``.

    ``ta_fixed`` holds keyword arguments of ``ta_class`` that are not parameters (e.g.
    ``norm="Linf"``); with ``ta_seed`` the call's seed is passed as ``seed``.
    """

    ta_class: ClassVar[type[torchattacks.attack.Attack]]
    parameters: ClassVar[Mapping[str, Param]] = _frozen()
    ta_fixed: ClassVar[Mapping[str, Any]] = _frozen()
    ta_seed: ClassVar[bool] = False

    @property
    def implementation(self) -> str:
        return f"torchattacks.{self.ta_class.__name__} (torchattacks {torchattacks.__version__})"

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        """Keyword arguments of ``ta_class`` besides ``model`` and ``eps`` (fractions of 1)."""
        kwargs = dict(self.ta_fixed)
        for name, param in self.parameters.items():
            if not isinstance(param, TorchattacksParam):
                continue  # irad's own setting, not torchattacks'
            value = getattr(self, name)
            kwargs[param.key or name] = param.convert(value, ctx) if param.convert else value
        if self.ta_seed:
            kwargs["seed"] = ctx.seed
        return kwargs

    def perturb(self, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:
        attack = make_torchattack(
            self.ta_class, ctx.model, x.device, eps=self.eps, **self.ta_kwargs(ctx)
        )
        return attack(x, y)


@register_attack("fgsm")
class FGSM(TorchattacksAttack):
    """FGSM (Goodfellow et al. 2015): one step of size ε along the gradient sign."""

    ta_class = torchattacks.FGSM


@register_attack("bim")
class BIM(TorchattacksAttack):
    """BIM / I-FGSM (Kurakin et al. 2017): ``steps`` sign steps of ``alpha``, no random start."""

    ta_class = torchattacks.BIM
    parameters = _frozen(steps=_count(10), alpha=_alpha(2.0))


@register_attack("pgd")
class PGD(TorchattacksAttack):
    """PGD (Madry et al. 2018) with cross-entropy loss.

    Defaults are the oblivious PGD-20 (20 steps of 2/255 from a random start); the paper's BPDA
    setting is ``steps=10, alpha=1, random_start=False`` (see ``irad.attacks.PAPER_BPDA``).
    """

    ta_class = torchattacks.PGD
    parameters = _frozen(steps=_count(20), alpha=_alpha(2.0), random_start=_flag(True))

    @property
    def stochastic(self) -> bool:
        return self.random_start


@register_attack("rfgsm")
class RFGSM(TorchattacksAttack):
    """R+FGSM (Tramèr et al. 2018), torchattacks' iterative form: a random sign step, then PGD."""

    ta_class = torchattacks.RFGSM
    parameters = _frozen(steps=_count(10), alpha=_alpha(2.0))

    @property
    def stochastic(self) -> bool:
        return True


@register_attack("tpgd")
class TPGD(TorchattacksAttack):
    """TRADES PGD (Zhang et al. 2019): PGD on the KL divergence to the clean prediction.

    The labels are not used (the attack moves away from the model's own clean prediction).
    """

    ta_class = torchattacks.TPGD
    parameters = _frozen(steps=_count(10), alpha=_alpha(2.0))

    @property
    def stochastic(self) -> bool:
        return True  # starts from x + 0.001 * N(0, 1)

    def perturb(self, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:
        attack = make_torchattack(
            self.ta_class, ctx.model, x.device, eps=self.eps, **self.ta_kwargs(ctx)
        )
        return attack(x)


@register_attack("eotpgd")
class EOTPGD(TorchattacksAttack):
    """EOT-PGD (Liu et al. 2019): PGD whose gradient is summed over ``eot_iter`` forward passes.

    Useful against a random model only; on a deterministic one it equals PGD.
    """

    ta_class = torchattacks.EOTPGD
    parameters = _frozen(
        steps=_count(10),
        alpha=_alpha(2.0),
        eot_iter=_count(2),
        random_start=_flag(True),
    )

    @property
    def stochastic(self) -> bool:
        return self.random_start


@register_attack("ffgsm")
class FFGSM(TorchattacksAttack):
    """Fast FGSM (Wong et al. 2020): uniform random start in the ε-ball, one step of ``alpha``."""

    ta_class = torchattacks.FFGSM
    parameters = _frozen(alpha=_alpha(10.0))

    @property
    def stochastic(self) -> bool:
        return True


@register_attack("mifgsm")
class MIFGSM(TorchattacksAttack):
    """MI-FGSM (Dong et al. 2018): sign steps on an L1-normalised gradient momentum."""

    ta_class = torchattacks.MIFGSM
    parameters = _frozen(steps=_count(10), alpha=_alpha(2.0), decay=_real(1.0))


@register_attack("jitter")
class Jitter(TorchattacksAttack):
    """Jitter (Schwinn et al. 2021): PGD on a noisy, scaled-softmax MSE loss."""

    ta_class = torchattacks.Jitter
    parameters = _frozen(
        steps=_count(10),
        alpha=_alpha(2.0),
        scale=_fraction(10.0),
        std=_real(0.1, low=0.0),
        random_start=_flag(True),
    )

    @property
    def stochastic(self) -> bool:
        return self.random_start or self.std > 0


class _VarianceTuned(TorchattacksAttack):
    """VMI-/VNI-FGSM (Wang & He 2021): momentum with a gradient-variance correction.

    ``neighbors`` is torchattacks' ``N`` (points sampled around the iterate), ``beta`` the
    neighbourhood radius in multiples of ε. Neighbours may fall outside [0, 1]; the model sees
    them clamped (identity gradient), see :class:`~irad.attacks.base.LogitsChecked`.
    """

    parameters = _frozen(
        steps=_count(10),
        alpha=_alpha(2.0),
        decay=_real(1.0),
        neighbors=TorchattacksParam(5, check_positive_int, key="N"),
        beta=_fraction(1.5),
    )

    @property
    def stochastic(self) -> bool:
        return True


@register_attack("vmifgsm")
class VMIFGSM(_VarianceTuned):
    __doc__ = _VarianceTuned.__doc__
    ta_class = torchattacks.VMIFGSM


@register_attack("vnifgsm")
class VNIFGSM(_VarianceTuned):
    __doc__ = _VarianceTuned.__doc__
    ta_class = torchattacks.VNIFGSM


# Settings shared by APGD and APGD-T (Croce & Hein 2020).
_APGD_PARAMETERS = _frozen(
    steps=_count(10), n_restarts=_count(1), eot_iter=_count(1), rho=_fraction(0.75, 1.0)
)


@register_attack("apgd")
class APGD(TorchattacksAttack):
    """APGD (Croce & Hein 2020), untargeted, cross-entropy (``loss="ce"``) or DLR loss.

    torchattacks' default of 10 steps is kept; AutoAttack runs it with 100. Runs as
    :class:`~irad.attacks.apgd.ActiveSetAPGD`: torchattacks' algorithm, bit for bit, unless
    ``active_set=True``, where images leave the batch once misclassified (the same images
    fooled, each fooled image's first fooling iterate kept). The white-box threat models turn
    it on for deterministic defenses (:meth:`for_deterministic_model`); it stays off on a random
    model and with ``eot_iter > 1``.
    """

    ta_class = ActiveSetAPGD
    execution_settings = frozenset({"active_set"})
    parameters = _frozen(
        **_APGD_PARAMETERS,
        loss=_choice("ce", "ce", "dlr"),
        active_set=Param(False, check_bool, recorded_at_default=False),
    )
    ta_fixed = _frozen(norm="Linf", verbose=False)
    ta_seed = True

    @property
    def stochastic(self) -> bool:
        return True  # random start in the ε-ball

    @property
    def implementation(self) -> str:
        version = torchattacks.__version__
        if not self.active_set:  # torchattacks' algorithm bit for bit: records stay as they were
            return f"torchattacks.APGD (torchattacks {version})"
        return f"irad ActiveSetAPGD over torchattacks.APGD (torchattacks {version})"

    @classmethod
    def for_deterministic_model(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters when the attacked model is deterministic and is also the model that
        judges the result (a white-box threat): the active set, unless ``active_set`` is given
        or the gradient is an EOT average (``eot_iter > 1``, which it does not apply to)."""
        if "active_set" in params or params.get("eot_iter", 1) != 1:
            return {**params}
        return {**params, "active_set": True}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        if self.loss == "dlr":
            _need_three_classes("apgd with loss='dlr'", ctx.num_classes)
        return super().ta_kwargs(ctx)

    def perturb(self, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:
        prune = self.active_set and active_set_allowed(ctx, x, self.eot_iter)
        attack = make_torchattack(
            self.ta_class, ctx.model, x.device, eps=self.eps, prune=prune, **self.ta_kwargs(ctx)
        )
        return attack(x, y)


@register_attack("apgdt")
class APGDT(TorchattacksAttack):
    """APGD-T (Croce & Hein 2020): targeted DLR loss against each of the top other classes.

    ``n_target_classes`` defaults to 9 (the reference AutoAttack), capped at ``classes - 1``.
    """

    ta_class = torchattacks.APGDT
    parameters = _frozen(**_APGD_PARAMETERS, n_target_classes=_targets())
    ta_fixed = _frozen(norm="Linf", verbose=False)
    ta_seed = True

    @property
    def stochastic(self) -> bool:
        return True  # random start in the ε-ball

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        _need_three_classes("apgdt", ctx.num_classes)
        return super().ta_kwargs(ctx)


@register_attack("fab")
class FAB(TorchattacksAttack):
    """FAB (Croce & Hein 2020), a minimum-norm attack; only results within ε are kept.

    ``multi_targeted=True`` is AutoAttack's FAB-T (against each of ``n_target_classes`` classes).
    """

    ta_class = torchattacks.FAB
    parameters = _frozen(
        steps=_count(10),
        n_restarts=_count(1),
        alpha_max=_fraction(0.1, 1.0),
        eta=_fraction(1.05),
        beta=_fraction(0.9, 1.0),
        multi_targeted=_flag(False),
        n_target_classes=_targets(),
    )
    ta_fixed = _frozen(norm="Linf", verbose=False)
    ta_seed = True

    @property
    def stochastic(self) -> bool:
        return self.n_restarts > 1  # restarts after the first start at a random point


@register_attack("square")
class Square(TorchattacksAttack):
    """Square Attack (Andriushchenko et al. 2020): black-box random search, ``n_queries`` queries.

    It uses the model's outputs only, never its gradients.
    """

    ta_class = torchattacks.Square
    parameters = _frozen(
        n_queries=_count(5000),
        n_restarts=_count(1),
        p_init=_fraction(0.8, 1.0),
        loss=_choice("margin", "margin", "ce"),
    )
    ta_fixed = _frozen(norm="Linf", resc_schedule=True, verbose=False)
    ta_seed = True

    @property
    def stochastic(self) -> bool:
        return True
