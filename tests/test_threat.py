"""Threat models are registry objects the harness asks (white box? EOT? surface? adaptation?)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from irad.attacks import EOT, THREAT_MODELS, THREATS, ThreatModel, threat_model
from irad.attacks.threat import BPDA, register_threat
from irad.defenses import Defense, Identity
from irad.errors import ConfigError
from irad.evaluate import EvaluationConfig, evaluate_defenses
from irad.models.classifier import Classifier

K, SIZE = 10, 8


class Noise(Defense):
    stochastic = True

    def purify(self, x: Tensor) -> Tensor:
        return x + 0.05 * torch.randn_like(x)


class Chain(Defense):
    """A chain of defenses, random if any part is (named nowhere in the harness)."""

    def __init__(self, *parts: Defense) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.stochastic = any(p.stochastic for p in parts)

    def purify(self, x: Tensor) -> Tensor:
        for p in self.parts:
            x = p(x)
        return x


def _classifier() -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, K))
    return Classifier(net, num_classes=K, name="linear")


def test_threat_models_are_objects_with_the_facts_the_harness_needs() -> None:
    assert THREAT_MODELS == ("oblivious", "bpda", "bpda-eot", "adaptive")
    facts = {
        name: (t.white_box, t.uses_eot, t.real_gradients)
        for name, t in ((n, threat_model(n)) for n in THREAT_MODELS)
    }
    assert facts == {
        "oblivious": (False, False, False),
        "bpda": (True, False, False),
        "bpda-eot": (True, True, False),
        "adaptive": (True, True, True),
    }
    assert all(name in THREATS for name in THREAT_MODELS)
    assert threat_model("bpda").with_eot == "bpda-eot"
    assert threat_model(threat_model("adaptive")) == threat_model("adaptive")
    with pytest.raises(ConfigError, match="unknown threat 'white-box'; choose one of: oblivious"):
        threat_model("white-box")
    assert EvaluationConfig(threat="adaptive").threat_model == threat_model("adaptive")


def test_eot_is_driven_by_the_defense_stochastic_flag_not_by_names() -> None:
    random_chain = Chain(Identity(), Noise())
    fixed_chain = Chain(Identity(), Identity())
    for name in THREAT_MODELS:
        threat = threat_model(name)
        assert threat.eot_samples(fixed_chain, 10) == 1
        assert threat.eot_samples(random_chain, 10) == (10 if threat.uses_eot else 1)
    clf = _classifier()
    surface = threat_model("adaptive").surface(random_chain, clf, eot_samples=4)
    assert isinstance(surface, EOT) and surface.samples == 4
    assert not isinstance(threat_model("adaptive").surface(fixed_chain, clf, eot_samples=4), EOT)
    assert threat_model("oblivious").surface(random_chain, clf, eot_samples=4) is clf
    bpda = threat_model("bpda-eot").surface(random_chain, clf, eot_samples=3)
    assert isinstance(bpda.module.defense, BPDA)  # EOT around classifier(BPDA(chain))


@pytest.mark.parametrize(
    ("threat", "attack", "params", "defense", "expected", "eot"),
    [
        # AutoAttack switches to its rand version (EOT inside) for a random defense, white box
        ("adaptive", "autoattack", {}, Noise(), {"version": "rand"}, 1),
        ("bpda-eot", "autoattack", {}, Chain(Identity(), Noise()), {"version": "rand"}, 1),
        ("adaptive", "autoattack", {"version": "standard"}, Noise(), {"version": "standard"}, 10),
        ("adaptive", "autoattack", {}, Identity(), {"active_set": True}, 1),
        # a deterministic defense, white box: APGD leaves fooled images out (the same images
        # fooled); not under the oblivious threat, not with EOT, not when told otherwise
        ("bpda", "apgd", {}, Identity(), {"active_set": True}, 1),
        ("oblivious", "apgd", {}, Identity(), {}, 1),
        ("adaptive", "apgd", {"eot_iter": 2}, Identity(), {"eot_iter": 2}, 1),
        ("adaptive", "apgd", {"active_set": False}, Identity(), {"active_set": False}, 1),
        ("oblivious", "autoattack", {}, Noise(), {}, 1),
        # an attack without its own EOT gets an EOT surface; one with its own does not
        ("adaptive", "pgd", {"steps": 3}, Noise(), {"steps": 3}, 10),
        ("adaptive", "eotpgd", {}, Noise(), {}, 1),
        ("adaptive", "apgd", {"eot_iter": 5}, Noise(), {"eot_iter": 5}, 1),
        ("bpda", "pgd", {}, Noise(), {}, 1),
    ],
)
def test_adapt_fits_the_attack_to_the_defense(
    threat: str,
    attack: str,
    params: dict[str, Any],
    defense: Defense,
    expected: dict[str, Any],
    eot: int,
) -> None:
    plan = threat_model(threat).adapt(attack, params, defense, eot_samples=10)
    assert plan.params == expected
    assert plan.eot_samples == eot
    assert plan.adapted == {k: v for k, v in expected.items() if params.get(k) != v}


@pytest.fixture
def counting_threat() -> Iterator[type[ThreatModel]]:
    """A new threat model, registered for one test: the harness must run it by asking it."""

    @register_threat
    class Counting(ThreatModel):
        name = "counting-test"
        white_box = True
        uses_eot = True
        description = "through the defense, counting the surfaces built"
        built = 0

        def _defense_stage(self, defense: nn.Module) -> nn.Module | None:
            type(self).built += 1
            return defense

    yield Counting
    THREATS._table.pop("counting-test", None)


AUTOATTACK = "autoattack:steps=1,eot_iter=2,n_queries=5,n_target_classes=1"


def test_the_harness_asks_the_threat_model(counting_threat: type[ThreatModel]) -> None:
    clf = _classifier()
    g = torch.Generator().manual_seed(1)
    data = torch.rand(8, 3, SIZE, SIZE, generator=g), torch.arange(8) % K
    result = evaluate_defenses(
        {"noise": Noise(), "none": Identity()},
        clf,
        data,
        ["pgd:steps=2", AUTOATTACK],
        "counting-test",
        batch_size=8,
        eot_samples=3,
        cost_repeats=0,
        progress=False,
        use_cache=False,
    )
    assert counting_threat.built >= 2  # one surface per defense at least
    noise = result.defenses["noise"].attacks
    assert noise["pgd:steps=2"].eot_samples == 3
    assert noise[AUTOATTACK].spec.params["version"] == "rand"
    assert noise[AUTOATTACK].eot_samples == 1 and noise[AUTOATTACK].adapted == {"version": "rand"}
    assert result.defenses["none"].attacks["pgd:steps=2"].eot_samples == 1
    assert result.defenses["none"].attacks[AUTOATTACK].spec.params.get("version") is None
    caption = result.caption()
    assert "EOT over 3 samples per gradient on noise" in caption
    assert f"{AUTOATTACK} with version=rand on noise" in caption
