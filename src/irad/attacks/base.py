"""The ``Attack`` base class: one place for the bookkeeping every L∞ attack shares.

Each attack implements only :meth:`Attack.perturb` (its algorithm). The base class

* checks the images, labels and the model's logits (clear :class:`~irad.errors.InputError` s);
* keeps ε in /255 for records and as a fraction for the maths;
* puts the model in eval mode, freezes its parameters (attacks need input gradients only) and
  restores both afterwards, also when the attack fails;
* enables autograd even when called under ``torch.no_grad()``;
* seeds every call: the global torch RNG is forked and seeded (for torchattacks, which draws from
  it) and a :class:`torch.Generator` seeded the same way is handed to the attack, so the output is
  a function of ``(x, y, seed)`` alone, does not disturb the caller's RNG and is identical when a
  run resumes mid-way;
* projects every result onto the ε-ball around ``x`` intersected with [0, 1].
"""

from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irad.checks import check_images, check_labels, check_logits, check_positive, check_seed
from irad.errors import InputError, IradError
from irad.utils.seed import seeded

__all__ = [
    "Attack",
    "AttackContext",
    "LogitsChecked",
    "Param",
    "attack_mode",
    "is_deterministic",
    "project_linf",
    "quiet_stdout",
    "straight_through",
]


# ---------------------------------------------------------------------------------------------
# Small tensor helpers shared by the attacks and the threat models


class _StraightThrough(torch.autograd.Function):
    """Forward returns ``value``; backward hands the output gradient to ``carrier`` unchanged."""

    @staticmethod
    def forward(ctx: Any, carrier: Tensor, value: Tensor) -> Tensor:
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def straight_through(carrier: Tensor, value: Tensor) -> Tensor:
    """Return a tensor equal to ``value`` whose gradient flows to ``carrier`` as the identity.

    This is the core of BPDA (Athalye et al. 2018): ``straight_through(x, defense(x))`` has the
    defense's output in the forward pass and the identity as its backward pass.

    Shape:
        - carrier, value: the same shape; output: that shape.

    Example:
        >>> x = torch.rand(2, 3, 4, 4, requires_grad=True)
        >>> y = straight_through(x, x.detach().round())
        >>> y.sum().backward(); bool((x.grad == 1).all())
        True
    """
    if carrier.shape != value.shape:
        raise InputError(
            f"straight-through needs equal shapes, got {tuple(carrier.shape)} and "
            f"{tuple(value.shape)} (a defense must return images of its input's shape)"
        )
    return _StraightThrough.apply(carrier, value.detach())


def project_linf(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Project ``x_adv`` onto ``{z : ||z - x||_∞ <= eps} ∩ [0, 1]``.

    Shape:
        - x_adv, x: ``(B, C, H, W)``; output: the same.
    """
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


class LogitsChecked(nn.Module):
    """What attack code calls instead of the bare model.

    It clamps the input to [0, 1] with an identity gradient (some attacks, e.g. torchattacks'
    VMI-FGSM, query points outside the image domain, which irad models reject) and checks that
    the model returns ``(B, num_classes)`` logits. Its class name is not ``RobModel``, so
    torchattacks never applies its own normalisation. It is always in eval mode and ignores
    ``train()``: torchattacks restores "training" on the model it was given if that model was
    in training mode, which would otherwise put the wrapped model (BatchNorm!) in training mode
    for the rest of the attack; :func:`attack_mode` alone owns the model's mode.
    """

    def __init__(self, model: nn.Module, num_classes: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.num_classes = num_classes
        self.training = False

    def train(self, mode: bool = True) -> LogitsChecked:
        return self

    def forward(self, x: Tensor) -> Tensor:
        x = straight_through(x, x.detach().clamp(0.0, 1.0))
        return check_logits(self.model(x), x.shape[0], self.num_classes)


def is_deterministic(model: LogitsChecked, x: Tensor, probe: int = 8) -> bool:
    """Whether the attacked model is deterministic: it does not declare itself random
    (``stochastic``) and gives the same logits twice on the first ``probe`` images of ``x``
    (the reference AutoAttack's check, on a few images: randomness shows on any)."""
    if getattr(model.model, "stochastic", False):
        return False
    with torch.no_grad():
        return torch.equal(model(x[:probe]), model(x[:probe]))


# ---------------------------------------------------------------------------------------------
# Parameters, declared once per attack


@dataclass(frozen=True)
class Param:
    """One parameter of an attack, declared once on the class (see :attr:`Attack.parameters`).

    The declaration gives the constructor its keyword argument (with ``default``), the check of
    a given value (``check(value, name)`` from :mod:`irad.checks`, returning the value to keep)
    and the entry of :meth:`Attack.params`. The value is stored on the attack under the
    parameter's name, in user units (step sizes in /255).

    Attributes:
        default: the value when the argument is not given.
        check: validates and normalises a given value.
        optional: ``None`` is accepted (and kept) besides the values ``check`` accepts.
        recorded_at_default: :meth:`Attack.params` reports it also at its default. ``False``
            for a parameter added later whose default keeps the earlier behaviour, so that
            earlier records and cache keys stay valid.
    """

    default: Any
    check: Callable[[Any, str], Any]
    optional: bool = False
    recorded_at_default: bool = True


# ---------------------------------------------------------------------------------------------
# Model state and randomness during an attack


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters for the duration of an attack; both restored after.

    Freezing keeps attacks that call ``.backward()`` (torchattacks' FAB) from writing ``.grad``
    into the model and saves the parameter-gradient work.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)


@dataclass(frozen=True)
class AttackContext:
    """What :meth:`Attack.perturb` gets besides the images and labels.

    Attributes:
        generator: seeded generator on the images' device; draw all randomness from it.
        seed: the seed of this call (for third-party attacks that take a seed).
        num_classes: number of logits the model returns.
        model: the model wrapped in :class:`LogitsChecked` (use it for every forward pass).
    """

    generator: torch.Generator
    seed: int
    num_classes: int
    model: LogitsChecked


# ---------------------------------------------------------------------------------------------
# The base class


class Attack:
    """Base class of irad's L∞ attacks (torchattacks-style: the base owns the bookkeeping).

    Args:
        model: an ``nn.Module`` mapping images in [0, 1] to logits ``(B, num_classes)``; for a
            defended model, pass the surface from :func:`irad.attacks.attack_surface`.
        eps: L∞ budget in /255 units (``8`` means 8/255), in (0, 255].
        seed: seeds every call (override per call with ``attack(x, y, seed=...)``).

    Attributes:
        eps: the budget as a fraction of the pixel range (``eps_255 / 255``).
        eps_255: the budget in /255 units, as given.
        stochastic: whether the attack draws random numbers (its result depends on the seed).

    Shape:
        - x: ``(B, C, H, W)`` float in [0, 1]; y: ``(B,)`` int64 labels.
        - output: ``(B, C, H, W)`` in [0, 1] with ``|x_adv - x| <= eps`` everywhere.

    Example:
        >>> from irad.attacks import build_attack
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> attack = build_attack("pgd", net, eps=8, steps=5)
        >>> x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,))
        >>> bool(((attack(x, y) - x).abs() <= 8 / 255 + 1e-6).all())
        True
    """

    #: Registry name, set by ``ATTACKS.register``-decorated subclasses.
    name: ClassVar[str] = "attack"
    #: The attack's own parameters, declared once: the constructor takes them as keyword
    #: arguments (its signature is built from them), checks and stores them, and
    #: :meth:`params` reports them, in this order.
    parameters: ClassVar[Mapping[str, Param]] = {}
    #: Settings that change how the attack computes, not which images it fools (APGD's
    #: ``active_set``): evaluations leave them out of the attack's seeds, so that a run with
    #: and without them can be compared image by image.
    execution_settings: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, model: nn.Module, eps: float = 8.0, *, seed: int = 0, **params: Any) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(
                f"the model to attack must be a torch.nn.Module, got {type(model).__name__}"
            )
        self.model = model
        self.eps_255 = check_positive(eps, "eps (in /255 units)", 255.0)
        self.eps = self.eps_255 / 255.0
        self.seed = check_seed(seed)
        unknown = sorted(set(params) - set(self.parameters))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {unknown}")
        for key, param in self.parameters.items():
            value = params.get(key, param.default)
            if not (value is None and param.optional):
                value = param.check(value, key)
            setattr(self, key, value)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The signature that build_attack, attack_parameters and help texts read: the declared
        # parameters as keyword arguments. A subclass with its own __init__ keeps that one's.
        if cls.__init__ is not Attack.__init__:
            cls.__signature__ = None  # type: ignore[attr-defined]
            return
        positional, keyword = (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        )
        declared = [
            inspect.Parameter(k, keyword, default=p.default) for k, p in cls.parameters.items()
        ]
        cls.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter("model", positional),
                inspect.Parameter("eps", positional, default=8.0),
                *declared,
                inspect.Parameter("seed", keyword, default=0),
            ]
        )

    # -- what subclasses provide ----------------------------------------------------------

    def perturb(self, x: Tensor, y: Tensor, ctx: AttackContext) -> Tensor:  # pragma: no cover
        """The attack's algorithm: return adversarial images for ``(x, y)``.

        Called with the model in eval mode, autograd enabled and the RNG seeded; the result is
        projected onto the ε-ball and [0, 1] afterwards.
        """
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The attack's own settings, in user units (step sizes in /255), for :meth:`config`."""
        return {
            key: getattr(self, key)
            for key, param in self.parameters.items()
            if param.recorded_at_default or getattr(self, key) != param.default
        }

    @property
    def stochastic(self) -> bool:
        """Whether the attack draws random numbers, so that its result depends on the seed."""
        return False

    @property
    def implementation(self) -> str:
        """Which code runs the attack (recorded with results)."""
        return "irad"

    # -- shared machinery -----------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """Name, budget, parameters, seed and implementation, JSON-ready (for records and keys)."""
        return {
            "name": self.name,
            "eps": self.eps_255,
            **self.params(),
            "seed": self.seed,
            "stochastic": self.stochastic,
            "implementation": self.implementation,
        }

    def __call__(self, x: Tensor, y: Tensor, *, seed: int | None = None) -> Tensor:
        check_images(x, "images", channels=None)
        check_labels(y, x.shape[0])
        seed = self.seed if seed is None else check_seed(seed)
        x = x.detach()
        y = y.detach().to(x.device)
        with (
            attack_mode(self.model),
            seeded(seed, devices=[x.device]) as generator,
            torch.enable_grad(),
        ):
            num_classes = self._probe(x, y)
            ctx = AttackContext(
                generator, seed, num_classes, LogitsChecked(self.model, num_classes)
            )
            x_adv = self.perturb(x, y, ctx)
        if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
            raise RuntimeError(f"{type(self).__name__}.perturb returned the wrong shape")
        x_adv = x_adv.detach().to(x.dtype)
        finite = torch.isfinite(x_adv)
        if not bool(finite.all()):
            warnings.warn(
                f"attack {self.name!r} produced non-finite pixels (NaN gradients?); "
                "those pixels are reset to the clean image",
                RuntimeWarning,
                stacklevel=2,
            )
            x_adv = torch.where(finite, x_adv, x)
        return project_linf(x_adv, x, self.eps)

    def _probe(self, x: Tensor, y: Tensor) -> int:
        """One forward pass: check the logits and the labels before the attack proper."""
        try:
            with torch.no_grad():
                logits = self.model(x)
        except IradError:
            raise
        except RuntimeError as err:
            raise InputError(
                f"the model failed on images of shape {tuple(x.shape)}: {err}"
            ) from err
        check_logits(logits, x.shape[0])
        if not logits.is_floating_point():
            raise InputError(f"the model must return float logits, got dtype {logits.dtype}")
        num_classes = int(logits.shape[1])
        if num_classes < 2:
            raise InputError(f"the model returned {num_classes} logit per image; need >= 2")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise InputError(
                f"labels must lie in [0, {num_classes - 1}] for a model with {num_classes} "
                f"outputs, got labels in [{lo}, {hi}]"
            )
        return num_classes

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.config().items() if k not in ("name", "implementation")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in cfg.items())})"


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Swallow third-party prints (torchattacks prints when a model has no parameters)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
