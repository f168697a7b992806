"""Thin wrappers around torchattacks (3.5) for the attacks it implements.

Each class only translates irad's parameters (ε and step sizes in /255 units, validated) into the
torchattacks constructor; :class:`TorchattacksAttack` handles what torchattacks needs around it:

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

import numbers
from typing import Any, ClassVar

import torch
import torchattacks
from torch import Tensor, nn

from irad.attacks.base import (
    Attack,
    AttackContext,
    check_choice,
    check_positive,
    check_positive_int,
    quiet_stdout,
)
from irad.attacks.registry import register_attack
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


def _step(value: object, name: str = "alpha") -> float:
    return check_positive(value, f"{name} (in /255 units)", upper=255.0)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


def _real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    return float(value)


def _targets(value: object, num_classes: int) -> int:
    n = DEFAULT_TARGET_CLASSES if value is None else check_positive_int(value, "n_target_classes")
    return min(n, num_classes - 1)


class TorchattacksAttack(Attack):
    """Base of the wrappers: subclasses set ``ta_class`` and return its kwargs in ``ta_kwargs``."""

    ta_class: ClassVar[type[torchattacks.attack.Attack]]

    @property
    def implementation(self) -> str:
        return f"torchattacks.{self.ta_class.__name__} (torchattacks {torchattacks.__version__})"

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        """Keyword arguments of ``ta_class`` besides ``model`` and ``eps`` (fractions of 1)."""
        return {}

    def perturb(self, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:
        attack = make_torchattack(
            self.ta_class, ctx.model, x.device, eps=self.eps, **self.ta_kwargs(ctx)
        )
        return attack(x, y)


class _Iterative(TorchattacksAttack):
    """Shared ``steps`` / ``alpha`` handling for the iterative sign-gradient attacks."""

    def __init__(
        self, model: nn.Module, eps: float, *, steps: int, alpha: float, seed: int
    ) -> None:
        super().__init__(model, eps, seed=seed)
        self.steps = check_positive_int(steps, "steps")
        self.alpha_255 = _step(alpha)

    def params(self) -> dict[str, Any]:
        return {"steps": self.steps, "alpha": self.alpha_255}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {"steps": self.steps, "alpha": self.alpha_255 / 255.0}


@register_attack("fgsm")
class FGSM(TorchattacksAttack):
    """FGSM (Goodfellow et al. 2015): one step of size ε along the gradient sign."""

    ta_class = torchattacks.FGSM

    def __init__(self, model: nn.Module, eps: float = 8.0, *, seed: int = 0) -> None:
        super().__init__(model, eps, seed=seed)


@register_attack("bim")
class BIM(_Iterative):
    """BIM / I-FGSM (Kurakin et al. 2017): ``steps`` sign steps of ``alpha``, no random start."""

    ta_class = torchattacks.BIM

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)


@register_attack("pgd")
class PGD(_Iterative):
    """PGD (Madry et al. 2018) with cross-entropy loss.

    Defaults are the oblivious PGD-20 (20 steps of 2/255 from a random start); the paper's BPDA
    setting is ``steps=10, alpha=1, random_start=False`` (see ``irad.attacks.PAPER_BPDA``).
    """

    ta_class = torchattacks.PGD

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 20,
        alpha: float = 2.0,
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)
        self.random_start = _flag(random_start, "random_start")

    @property
    def stochastic(self) -> bool:
        return self.random_start

    def params(self) -> dict[str, Any]:
        return {**super().params(), "random_start": self.random_start}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {**super().ta_kwargs(ctx), "random_start": self.random_start}


@register_attack("rfgsm")
class RFGSM(_Iterative):
    """R+FGSM (Tramèr et al. 2018), torchattacks' iterative form: a random sign step, then PGD."""

    ta_class = torchattacks.RFGSM

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)

    @property
    def stochastic(self) -> bool:
        return True


@register_attack("tpgd")
class TPGD(_Iterative):
    """TRADES PGD (Zhang et al. 2019): PGD on the KL divergence to the clean prediction.

    The labels are not used (the attack moves away from the model's own clean prediction).
    """

    ta_class = torchattacks.TPGD

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float = 2.0,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)

    @property
    def stochastic(self) -> bool:
        return True  # starts from x + 0.001 * N(0, 1)

    def perturb(self, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:
        attack = make_torchattack(
            self.ta_class, ctx.model, x.device, eps=self.eps, **self.ta_kwargs(ctx)
        )
        return attack(x)


@register_attack("eotpgd")
class EOTPGD(_Iterative):
    """EOT-PGD (Liu et al. 2019): PGD whose gradient is summed over ``eot_iter`` forward passes.

    Useful against a random model only; on a deterministic one it equals PGD.
    """

    ta_class = torchattacks.EOTPGD

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float = 2.0,
        eot_iter: int = 2,
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)
        self.eot_iter = check_positive_int(eot_iter, "eot_iter")
        self.random_start = _flag(random_start, "random_start")

    @property
    def stochastic(self) -> bool:
        return self.random_start

    def params(self) -> dict[str, Any]:
        return {**super().params(), "eot_iter": self.eot_iter, "random_start": self.random_start}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {
            **super().ta_kwargs(ctx),
            "eot_iter": self.eot_iter,
            "random_start": self.random_start,
        }


@register_attack("ffgsm")
class FFGSM(TorchattacksAttack):
    """Fast FGSM (Wong et al. 2020): uniform random start in the ε-ball, one step of ``alpha``."""

    ta_class = torchattacks.FFGSM

    def __init__(
        self, model: nn.Module, eps: float = 8.0, *, alpha: float = 10.0, seed: int = 0
    ) -> None:
        super().__init__(model, eps, seed=seed)
        self.alpha_255 = _step(alpha)

    @property
    def stochastic(self) -> bool:
        return True

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha_255}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {"alpha": self.alpha_255 / 255.0}


@register_attack("mifgsm")
class MIFGSM(_Iterative):
    """MI-FGSM (Dong et al. 2018): sign steps on an L1-normalised gradient momentum."""

    ta_class = torchattacks.MIFGSM

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float = 2.0,
        decay: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)
        self.decay = _real(decay, "decay")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "decay": self.decay}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {**super().ta_kwargs(ctx), "decay": self.decay}


@register_attack("jitter")
class Jitter(_Iterative):
    """Jitter (Schwinn et al. 2021): PGD on a noisy, scaled-softmax MSE loss."""

    ta_class = torchattacks.Jitter

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float = 2.0,
        scale: float = 10.0,
        std: float = 0.1,
        random_start: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)
        self.scale = check_positive(scale, "scale")
        self.std = _real(std, "std")
        if self.std < 0:
            raise InputError(f"std must be >= 0, got {std}")
        self.random_start = _flag(random_start, "random_start")

    @property
    def stochastic(self) -> bool:
        return self.random_start or self.std > 0

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "scale": self.scale,
            "std": self.std,
            "random_start": self.random_start,
        }

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {
            **super().ta_kwargs(ctx),
            "scale": self.scale,
            "std": self.std,
            "random_start": self.random_start,
        }


class _VarianceTuned(_Iterative):
    """VMI-/VNI-FGSM (Wang & He 2021): momentum with a gradient-variance correction.

    ``neighbors`` is torchattacks' ``N`` (points sampled around the iterate), ``beta`` the
    neighbourhood radius in multiples of ε. Neighbours may fall outside [0, 1]; the model sees
    them clamped (identity gradient), see :class:`~irad.attacks.base.LogitsChecked`.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        alpha: float = 2.0,
        decay: float = 1.0,
        neighbors: int = 5,
        beta: float = 1.5,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, steps=steps, alpha=alpha, seed=seed)
        self.decay = _real(decay, "decay")
        self.neighbors = check_positive_int(neighbors, "neighbors")
        self.beta = check_positive(beta, "beta")

    @property
    def stochastic(self) -> bool:
        return True

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "decay": self.decay,
            "neighbors": self.neighbors,
            "beta": self.beta,
        }

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {
            **super().ta_kwargs(ctx),
            "decay": self.decay,
            "N": self.neighbors,
            "beta": self.beta,
        }


@register_attack("vmifgsm")
class VMIFGSM(_VarianceTuned):
    __doc__ = _VarianceTuned.__doc__
    ta_class = torchattacks.VMIFGSM


@register_attack("vnifgsm")
class VNIFGSM(_VarianceTuned):
    __doc__ = _VarianceTuned.__doc__
    ta_class = torchattacks.VNIFGSM


class _APGDBase(TorchattacksAttack):
    """Shared settings of APGD and APGD-T (Croce & Hein 2020)."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        *,
        steps: int,
        n_restarts: int,
        eot_iter: int,
        rho: float,
        seed: int,
    ) -> None:
        super().__init__(model, eps, seed=seed)
        self.steps = check_positive_int(steps, "steps")
        self.n_restarts = check_positive_int(n_restarts, "n_restarts")
        self.eot_iter = check_positive_int(eot_iter, "eot_iter")
        self.rho = check_positive(rho, "rho", upper=1.0)

    @property
    def stochastic(self) -> bool:
        return True  # random start in the ε-ball

    def params(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "n_restarts": self.n_restarts,
            "eot_iter": self.eot_iter,
            "rho": self.rho,
        }

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {
            "norm": "Linf",
            "steps": self.steps,
            "n_restarts": self.n_restarts,
            "eot_iter": self.eot_iter,
            "rho": self.rho,
            "seed": ctx.seed,
            "verbose": False,
        }


def _need_three_classes(name: str, num_classes: int) -> None:
    # The DLR loss divides by the gap between the first and third largest logits.
    if num_classes < 3:
        raise InputError(f"{name} uses the DLR loss, which needs >= 3 classes; got {num_classes}")


@register_attack("apgd")
class APGD(_APGDBase):
    """APGD (Croce & Hein 2020), untargeted, cross-entropy (``loss="ce"``) or DLR loss.

    torchattacks' default of 10 steps is kept; AutoAttack runs it with 100.
    """

    ta_class = torchattacks.APGD

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        loss: str = "ce",
        n_restarts: int = 1,
        eot_iter: int = 1,
        rho: float = 0.75,
        seed: int = 0,
    ) -> None:
        super().__init__(
            model, eps, steps=steps, n_restarts=n_restarts, eot_iter=eot_iter, rho=rho, seed=seed
        )
        self.loss = check_choice(loss, ("ce", "dlr"), "loss")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "loss": self.loss}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        if self.loss == "dlr":
            _need_three_classes("apgd with loss='dlr'", ctx.num_classes)
        return {**super().ta_kwargs(ctx), "loss": self.loss}


@register_attack("apgdt")
class APGDT(_APGDBase):
    """APGD-T (Croce & Hein 2020): targeted DLR loss against each of the top other classes.

    ``n_target_classes`` defaults to 9 (the reference AutoAttack), capped at ``classes - 1``.
    """

    ta_class = torchattacks.APGDT

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        n_restarts: int = 1,
        eot_iter: int = 1,
        rho: float = 0.75,
        n_target_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            model, eps, steps=steps, n_restarts=n_restarts, eot_iter=eot_iter, rho=rho, seed=seed
        )
        if n_target_classes is not None:
            check_positive_int(n_target_classes, "n_target_classes")
        self.n_target_classes = n_target_classes

    def params(self) -> dict[str, Any]:
        return {**super().params(), "n_target_classes": self.n_target_classes}

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        _need_three_classes("apgdt", ctx.num_classes)
        # torchattacks attacks n_classes - 1 targets.
        n_classes = _targets(self.n_target_classes, ctx.num_classes) + 1
        return {**super().ta_kwargs(ctx), "n_classes": n_classes}


@register_attack("fab")
class FAB(TorchattacksAttack):
    """FAB (Croce & Hein 2020), a minimum-norm attack; only results within ε are kept.

    ``multi_targeted=True`` is AutoAttack's FAB-T (against each of ``n_target_classes`` classes).
    """

    ta_class = torchattacks.FAB

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        steps: int = 10,
        n_restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        multi_targeted: bool = False,
        n_target_classes: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, seed=seed)
        self.steps = check_positive_int(steps, "steps")
        self.n_restarts = check_positive_int(n_restarts, "n_restarts")
        self.alpha_max = check_positive(alpha_max, "alpha_max", upper=1.0)
        self.eta = check_positive(eta, "eta")
        self.beta = check_positive(beta, "beta", upper=1.0)
        self.multi_targeted = _flag(multi_targeted, "multi_targeted")
        if n_target_classes is not None:
            check_positive_int(n_target_classes, "n_target_classes")
        self.n_target_classes = n_target_classes

    @property
    def stochastic(self) -> bool:
        return self.n_restarts > 1  # restarts after the first start at a random point

    def params(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "n_restarts": self.n_restarts,
            "alpha_max": self.alpha_max,
            "eta": self.eta,
            "beta": self.beta,
            "multi_targeted": self.multi_targeted,
            "n_target_classes": self.n_target_classes,
        }

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {
            "norm": "Linf",
            "steps": self.steps,
            "n_restarts": self.n_restarts,
            "alpha_max": self.alpha_max,
            "eta": self.eta,
            "beta": self.beta,
            "multi_targeted": self.multi_targeted,
            "n_classes": _targets(self.n_target_classes, ctx.num_classes) + 1,
            "seed": ctx.seed,
            "verbose": False,
        }


@register_attack("square")
class Square(TorchattacksAttack):
    """Square Attack (Andriushchenko et al. 2020): black-box random search, ``n_queries`` queries.

    It uses the model's outputs only, never its gradients.
    """

    ta_class = torchattacks.Square

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8.0,
        *,
        n_queries: int = 5000,
        n_restarts: int = 1,
        p_init: float = 0.8,
        loss: str = "margin",
        seed: int = 0,
    ) -> None:
        super().__init__(model, eps, seed=seed)
        self.n_queries = check_positive_int(n_queries, "n_queries")
        self.n_restarts = check_positive_int(n_restarts, "n_restarts")
        self.p_init = check_positive(p_init, "p_init", upper=1.0)
        self.loss = check_choice(loss, ("margin", "ce"), "loss")

    @property
    def stochastic(self) -> bool:
        return True

    def params(self) -> dict[str, Any]:
        return {
            "n_queries": self.n_queries,
            "n_restarts": self.n_restarts,
            "p_init": self.p_init,
            "loss": self.loss,
        }

    def ta_kwargs(self, ctx: AttackContext) -> dict[str, Any]:
        return {
            "norm": "Linf",
            "n_queries": self.n_queries,
            "n_restarts": self.n_restarts,
            "p_init": self.p_init,
            "loss": self.loss,
            "resc_schedule": True,
            "seed": ctx.seed,
            "verbose": False,
        }
