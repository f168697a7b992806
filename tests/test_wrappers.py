"""The torchattacks wrappers declare each parameter once; behaviour and records are unchanged.

``GOLDEN`` holds, for each attack and settings, what the wrappers recorded (``params()``, the
cache key's values) and passed to torchattacks before the parameters were declared once, with
``eps=8`` and ``seed=3`` on a 10-class model.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from irad.attacks import torchattacks_wrappers as wrappers
from irad.attacks.admix import Admix
from irad.attacks.base import Attack, AttackContext, LogitsChecked
from irad.attacks.registry import ATTACKS, attack_parameters, build_attack
from irad.errors import ConfigError, InputError

NET = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))

# (name, settings, params(), torchattacks kwargs or None, stochastic)
GOLDEN = [
    (
        "admix",
        {"alpha": 1.0},
        {"alpha": 1.0, "decay": 1.0, "eta": 0.2, "num_mixes": 3, "num_scales": 5, "steps": 10},
        None,
        True,
    ),
    (
        "admix",
        {},
        {"alpha": 0.8, "decay": 1.0, "eta": 0.2, "num_mixes": 3, "num_scales": 5, "steps": 10},
        None,
        True,
    ),
    (
        "apgdt",
        {"n_target_classes": 3},
        {"eot_iter": 1, "n_restarts": 1, "n_target_classes": 3, "rho": 0.75, "steps": 10},
        {
            "eot_iter": 1,
            "n_classes": 4,
            "n_restarts": 1,
            "norm": "Linf",
            "rho": 0.75,
            "seed": 3,
            "steps": 10,
            "verbose": False,
        },
        True,
    ),
    (
        "apgdt",
        {},
        {"eot_iter": 1, "n_restarts": 1, "n_target_classes": None, "rho": 0.75, "steps": 10},
        {
            "eot_iter": 1,
            "n_classes": 10,
            "n_restarts": 1,
            "norm": "Linf",
            "rho": 0.75,
            "seed": 3,
            "steps": 10,
            "verbose": False,
        },
        True,
    ),
    (
        "apgd",
        {"loss": "dlr", "rho": 0.5},
        {"eot_iter": 1, "loss": "dlr", "n_restarts": 1, "rho": 0.5, "steps": 10},
        {
            "eot_iter": 1,
            "loss": "dlr",
            "n_restarts": 1,
            "norm": "Linf",
            "rho": 0.5,
            "seed": 3,
            "steps": 10,
            "verbose": False,
        },
        True,
    ),
    (
        "apgd",
        {},
        {"eot_iter": 1, "loss": "ce", "n_restarts": 1, "rho": 0.75, "steps": 10},
        {
            "eot_iter": 1,
            "loss": "ce",
            "n_restarts": 1,
            "norm": "Linf",
            "rho": 0.75,
            "seed": 3,
            "steps": 10,
            "verbose": False,
        },
        True,
    ),
    (
        "bim",
        {"alpha": 1, "steps": 3},
        {"alpha": 1.0, "steps": 3},
        {"alpha": 0.00392156862745098, "steps": 3},
        False,
    ),
    ("bim", {}, {"alpha": 2.0, "steps": 10}, {"alpha": 0.00784313725490196, "steps": 10}, False),
    (
        "eotpgd",
        {"eot_iter": 5},
        {"alpha": 2.0, "eot_iter": 5, "random_start": True, "steps": 10},
        {"alpha": 0.00784313725490196, "eot_iter": 5, "random_start": True, "steps": 10},
        True,
    ),
    (
        "eotpgd",
        {},
        {"alpha": 2.0, "eot_iter": 2, "random_start": True, "steps": 10},
        {"alpha": 0.00784313725490196, "eot_iter": 2, "random_start": True, "steps": 10},
        True,
    ),
    (
        "fab",
        {"multi_targeted": True, "n_target_classes": 20},
        {
            "alpha_max": 0.1,
            "beta": 0.9,
            "eta": 1.05,
            "multi_targeted": True,
            "n_restarts": 1,
            "n_target_classes": 20,
            "steps": 10,
        },
        {
            "alpha_max": 0.1,
            "beta": 0.9,
            "eta": 1.05,
            "multi_targeted": True,
            "n_classes": 10,
            "n_restarts": 1,
            "norm": "Linf",
            "seed": 3,
            "steps": 10,
            "verbose": False,
        },
        False,
    ),
    (
        "fab",
        {},
        {
            "alpha_max": 0.1,
            "beta": 0.9,
            "eta": 1.05,
            "multi_targeted": False,
            "n_restarts": 1,
            "n_target_classes": None,
            "steps": 10,
        },
        {
            "alpha_max": 0.1,
            "beta": 0.9,
            "eta": 1.05,
            "multi_targeted": False,
            "n_classes": 10,
            "n_restarts": 1,
            "norm": "Linf",
            "seed": 3,
            "steps": 10,
            "verbose": False,
        },
        False,
    ),
    ("ffgsm", {"alpha": 4}, {"alpha": 4.0}, {"alpha": 0.01568627450980392}, True),
    ("ffgsm", {}, {"alpha": 10.0}, {"alpha": 0.0392156862745098}, True),
    ("fgsm", {}, {}, {}, False),
    (
        "jitter",
        {"scale": 3, "std": 0.0},
        {"alpha": 2.0, "random_start": True, "scale": 3.0, "std": 0.0, "steps": 10},
        {"alpha": 0.00784313725490196, "random_start": True, "scale": 3.0, "std": 0.0, "steps": 10},
        True,
    ),
    (
        "jitter",
        {},
        {"alpha": 2.0, "random_start": True, "scale": 10.0, "std": 0.1, "steps": 10},
        {
            "alpha": 0.00784313725490196,
            "random_start": True,
            "scale": 10.0,
            "std": 0.1,
            "steps": 10,
        },
        True,
    ),
    (
        "mifgsm",
        {"decay": 0.5},
        {"alpha": 2.0, "decay": 0.5, "steps": 10},
        {"alpha": 0.00784313725490196, "decay": 0.5, "steps": 10},
        False,
    ),
    (
        "mifgsm",
        {},
        {"alpha": 2.0, "decay": 1.0, "steps": 10},
        {"alpha": 0.00784313725490196, "decay": 1.0, "steps": 10},
        False,
    ),
    (
        "pgd",
        {"alpha": 0.5, "random_start": False},
        {"alpha": 0.5, "random_start": False, "steps": 20},
        {"alpha": 0.00196078431372549, "random_start": False, "steps": 20},
        False,
    ),
    (
        "pgd",
        {},
        {"alpha": 2.0, "random_start": True, "steps": 20},
        {"alpha": 0.00784313725490196, "random_start": True, "steps": 20},
        True,
    ),
    ("rfgsm", {}, {"alpha": 2.0, "steps": 10}, {"alpha": 0.00784313725490196, "steps": 10}, True),
    (
        "square",
        {"loss": "ce", "p_init": 0.3},
        {"loss": "ce", "n_queries": 5000, "n_restarts": 1, "p_init": 0.3},
        {
            "loss": "ce",
            "n_queries": 5000,
            "n_restarts": 1,
            "norm": "Linf",
            "p_init": 0.3,
            "resc_schedule": True,
            "seed": 3,
            "verbose": False,
        },
        True,
    ),
    (
        "square",
        {},
        {"loss": "margin", "n_queries": 5000, "n_restarts": 1, "p_init": 0.8},
        {
            "loss": "margin",
            "n_queries": 5000,
            "n_restarts": 1,
            "norm": "Linf",
            "p_init": 0.8,
            "resc_schedule": True,
            "seed": 3,
            "verbose": False,
        },
        True,
    ),
    ("tpgd", {}, {"alpha": 2.0, "steps": 10}, {"alpha": 0.00784313725490196, "steps": 10}, True),
    (
        "vmifgsm",
        {"beta": 2, "neighbors": 3},
        {"alpha": 2.0, "beta": 2.0, "decay": 1.0, "neighbors": 3, "steps": 10},
        {"N": 3, "alpha": 0.00784313725490196, "beta": 2.0, "decay": 1.0, "steps": 10},
        True,
    ),
    (
        "vmifgsm",
        {},
        {"alpha": 2.0, "beta": 1.5, "decay": 1.0, "neighbors": 5, "steps": 10},
        {"N": 5, "alpha": 0.00784313725490196, "beta": 1.5, "decay": 1.0, "steps": 10},
        True,
    ),
    (
        "vnifgsm",
        {},
        {"alpha": 2.0, "beta": 1.5, "decay": 1.0, "neighbors": 5, "steps": 10},
        {"N": 5, "alpha": 0.00784313725490196, "beta": 1.5, "decay": 1.0, "steps": 10},
        True,
    ),
]


@pytest.mark.parametrize(("name", "settings", "params", "ta_kwargs", "stochastic"), GOLDEN)
def test_records_and_torchattacks_arguments_are_unchanged(
    name, settings, params, ta_kwargs, stochastic
) -> None:
    attack = build_attack(name, NET, eps=8, seed=3, **settings)
    assert attack.params() == params
    assert attack.config() == {
        "name": name,
        "eps": 8.0,
        **params,
        "seed": 3,
        "stochastic": stochastic,
        "implementation": attack.implementation,
    }
    if ta_kwargs is not None:
        ctx = AttackContext(torch.Generator(), 3, 10, LogitsChecked(NET, 10))
        assert attack.ta_kwargs(ctx) == ta_kwargs


def _wrapper_classes() -> list[type[Attack]]:
    return [
        cls
        for cls in vars(wrappers).values()
        if isinstance(cls, type) and issubclass(cls, wrappers.TorchattacksAttack)
    ]


def test_each_parameter_is_declared_once() -> None:
    for cls in [*_wrapper_classes(), Admix]:
        for method in ("__init__", "params"):
            if cls is Admix and method == "params":
                continue  # Admix reports its derived step size ε / T
            assert method not in vars(cls), f"{cls.__name__} defines {method} again"
        if cls in (wrappers.APGD, wrappers.APGDT):
            continue  # they add a class-count check, then defer to the declaration
        assert "ta_kwargs" not in vars(cls) or cls is wrappers.TorchattacksAttack


def test_the_signature_is_built_from_the_declaration() -> None:
    sig = inspect.signature(wrappers.PGD)
    assert list(sig.parameters) == ["model", "eps", "steps", "alpha", "random_start", "seed"]
    assert attack_parameters("pgd") == {"steps": 20, "alpha": 2.0, "random_start": True, "seed": 0}
    assert attack_parameters("apgdt")["n_target_classes"] is None
    assert "loss" in attack_parameters("square")
    for name in ATTACKS.names():
        attack_parameters(name)  # every registered attack has a readable signature


def test_declared_checks_still_refuse_bad_values() -> None:
    with pytest.raises(InputError, match=r"alpha \(in /255 units\)"):
        build_attack("pgd", NET, alpha=0)
    with pytest.raises(InputError, match="neighbors"):
        build_attack("vmifgsm", NET, neighbors=0)
    with pytest.raises(InputError, match="std must be a number >= 0"):
        build_attack("jitter", NET, std=-1)
    with pytest.raises(ConfigError, match="stepz"):
        build_attack("pgd", NET, stepz=2)
    with pytest.raises(TypeError, match="unexpected"):
        wrappers.PGD(NET, stepz=2)
