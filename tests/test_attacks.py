"""Attacks and threat models: every attack by name, BPDA, EOT, surfaces, errors, diagnostics."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch
from torch import Tensor, nn

from irad.attacks import (
    ATTACKS,
    BPDA,
    EOT,
    THREAT_MODELS,
    attack_names,
    attack_parameters,
    attack_surface,
    build_attack,
    gradient_stats,
    paper_bpda_attack,
    strong_bpda_attack,
    threat_model,
)
from irad.attacks.apgd import ActiveSetAPGD
from irad.defenses import DefendedClassifier, Defense, Identity
from irad.errors import ConfigError, InputError
from irad.models.classifier import Classifier

EPS = 8.0
# Float slack when comparing |x_adv - x| with eps / 255.
TOL = 1e-6

EXPECTED_NAMES = {
    "autoattack",
    "fgsm",
    "bim",
    "pgd",
    "rfgsm",
    "tpgd",
    "apgd",
    "apgdt",
    "eotpgd",
    "ffgsm",
    "mifgsm",
    "jitter",
    "vmifgsm",
    "vnifgsm",
    "square",
    "fab",
    "admix",
}

# Small budgets so that every attack runs in well under a second on a tiny model.
SMALL: dict[str, dict] = {
    "autoattack": {"steps": 2, "n_queries": 20, "n_target_classes": 2},
    "apgdt": {"steps": 2, "n_target_classes": 2},
    "fab": {"steps": 2},
    "square": {"n_queries": 20},
    "vmifgsm": {"steps": 2, "neighbors": 2},
    "vnifgsm": {"steps": 2, "neighbors": 2},
    "admix": {"steps": 2},
}


def small_params(name: str) -> dict:
    params = dict(SMALL.get(name, {}))
    if "steps" in attack_parameters(name):
        params.setdefault("steps", 3)
    return params


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models run faster on one thread, and the test machine's cores are shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AvgPool2d(4),
        nn.Flatten(),
        nn.Linear(8 * 2 * 2, 10),
    )


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    # The irad wrapper rejects inputs outside [0, 1], so this also tests that attacks which
    # query outside the image domain (VMI/VNI-FGSM neighbours, Admix mixes) are handled.
    clf = Classifier(tiny_net(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), num_classes=10)
    return clf.eval()


@pytest.fixture(scope="module")
def batch(classifier: Classifier) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = classifier(x).argmax(1)  # clean accuracy 100 % by construction
    return x, y


class Quantize(Defense):
    """A non-differentiable defense: rounds pixels to ``levels`` values (zero gradient)."""

    differentiable = False

    def __init__(self, levels: int = 4) -> None:
        super().__init__()
        self.levels = levels

    def purify(self, x: Tensor) -> Tensor:
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


class SmoothQuantize(Quantize):
    """Quantize with a differentiable surrogate (a smooth staircase)."""

    def differentiable_surrogate(self) -> Defense:
        return Smooth()


class Smooth(Defense):
    def purify(self, x: Tensor) -> Tensor:
        return 0.5 + 0.5 * torch.tanh(4 * (x - 0.5))


class CountingNoise(Defense):
    """A random defense that counts its forward calls."""

    stochastic = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def purify(self, x: Tensor) -> Tensor:
        self.calls += 1
        return (x + 0.01 * torch.randn_like(x)).clamp(0, 1)


def assert_valid(x_adv: Tensor, x: Tensor, eps: float = EPS) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert not x_adv.requires_grad
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float((x_adv - x).abs().max()) <= eps / 255 + TOL


# --------------------------------------------------------------------------------------------
# Every attack by name


def test_registry_has_every_attack():
    assert set(attack_names()) == EXPECTED_NAMES
    assert all(name in ATTACKS for name in EXPECTED_NAMES)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_attack_runs_stays_in_ball_and_restores_state(name, classifier, batch):
    x, y = batch
    state = {k: v.clone() for k, v in classifier.state_dict().items()}
    x_before = x.clone()
    classifier.train()  # the attack must run in eval mode and restore this
    rng = torch.get_rng_state()
    attack = build_attack(name, classifier, eps=EPS, **small_params(name))
    with torch.no_grad():  # attacks must enable autograd themselves
        x_adv = attack(x, y)
    assert_valid(x_adv, x)
    assert torch.equal(x, x_before)  # the input is not modified in place
    assert classifier.training and all(m.training for m in classifier.modules())
    assert all(p.requires_grad for p in classifier.parameters())
    assert all(p.grad is None for p in classifier.parameters())
    # no forward pass ran in training mode (BatchNorm statistics unchanged)
    assert all(torch.equal(v, state[k]) for k, v in classifier.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone
    cfg = attack.config()
    assert cfg["name"] == name and cfg["eps"] == EPS and cfg["seed"] == 0
    assert isinstance(cfg["stochastic"], bool) and cfg["implementation"]
    classifier.eval()


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_attack_is_reproducible(name, classifier, batch):
    x, y = batch
    attack = build_attack(name, classifier, eps=EPS, seed=3, **small_params(name))
    assert torch.equal(attack(x, y), attack(x, y))


def test_config_rebuilds_the_same_attack(classifier):
    attack = build_attack("pgd", classifier, eps=4, steps=7, alpha=0.5, random_start=False)
    cfg = attack.config()
    params = {
        k: v for k, v in cfg.items() if k not in ("name", "eps", "stochastic", "implementation")
    }
    assert build_attack(cfg["name"], classifier, eps=cfg["eps"], **params).config() == cfg
    assert attack.eps == pytest.approx(4 / 255) and cfg["alpha"] == 0.5
    assert cfg["stochastic"] is False


def test_pgd_lowers_accuracy(classifier, batch):
    x, y = batch
    x_adv = build_attack("pgd", classifier, eps=EPS, steps=10)(x, y)
    with torch.no_grad():
        clean = (classifier(x).argmax(1) == y).float().mean()
        robust = (classifier(x_adv).argmax(1) == y).float().mean()
    assert clean == 1.0
    assert robust < clean


def test_larger_eps_is_at_least_as_strong(classifier, batch):
    x, y = batch
    with torch.no_grad():
        accs = [
            (classifier(build_attack("bim", classifier, eps=e, steps=10, alpha=e / 4)(x, y)))
            .argmax(1)
            .eq(y)
            .float()
            .mean()
            for e in (2, 64)
        ]
    assert accs[1] <= accs[0]
    assert accs[1] == 0.0  # 64/255 breaks an undefended tiny model completely


def test_seed_and_per_call_seed(classifier, batch):
    x, y = batch
    attack = build_attack("pgd", classifier, eps=EPS, steps=2, seed=1)
    a, b = attack(x, y), attack(x, y, seed=2)
    assert not torch.equal(a, b)
    assert torch.equal(b, build_attack("pgd", classifier, eps=EPS, steps=2, seed=2)(x, y))


def test_numpy_numbers_are_accepted(classifier, batch):
    np = pytest.importorskip("numpy")
    x, y = batch
    attack = build_attack("pgd", classifier, eps=np.float32(8), steps=np.int64(2), seed=np.int64(4))
    assert attack.config()["steps"] == 2 and attack.seed == 4
    assert torch.equal(attack(x, y), attack(x, y, seed=np.int64(4)))


def test_admix_reproducible_with_seed(classifier, batch):
    x, y = batch
    one = build_attack("admix", classifier, eps=EPS, steps=3, seed=5)(x, y)
    two = build_attack("admix", classifier, eps=EPS, steps=3, seed=5)(x, y)
    other = build_attack("admix", classifier, eps=EPS, steps=3, seed=6)(x, y)
    assert torch.equal(one, two)
    assert not torch.equal(one, other)
    cfg = build_attack("admix", classifier, eps=EPS).config()
    assert (cfg["steps"], cfg["num_scales"], cfg["num_mixes"], cfg["eta"]) == (10, 5, 3, 0.2)
    assert cfg["alpha"] == pytest.approx(EPS / 10) and cfg["decay"] == 1.0


def test_admix_partners_come_from_other_classes():
    from irad.attacks.admix import admix_partners

    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 1, 1, 2])
    picks = admix_partners(y, 50, g)
    assert picks.shape == (50, 5)
    assert bool((y[picks] != y).all())
    assert bool((admix_partners(torch.tensor([4, 4]), 5, g) == torch.tensor([1, 0])).all())


def test_autoattack_settings_counts_and_rand(classifier, batch):
    x, y = batch
    default = build_attack("autoattack", classifier).config()
    assert (default["steps"], default["n_queries"], default["n_target_classes"]) == (100, 5000, 9)
    attack = build_attack("autoattack", classifier, eps=EPS, **SMALL["autoattack"])
    assert_valid(attack(x, y), x)
    assert list(attack.last_counts) == ["clean", "apgd-ce", "apgd-t", "fab-t", "square"]
    assert attack.last_counts["clean"] == len(y)
    rand = build_attack("autoattack", classifier, version="rand", steps=2, eot_iter=2)
    assert_valid(rand(x, y), x)
    assert list(rand.last_counts) == ["clean", "apgd-ce", "apgd-dlr"]
    assert rand.config()["eot_iter"] == 2


def test_autoattack_square_uses_the_reference_schedule(classifier, batch, monkeypatch):
    """Square runs with resc_schedule=False, as in fra31/auto-attack (torchattacks: True)."""
    import torchattacks

    made = []

    class Recording(torchattacks.Square):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(torchattacks, "Square", Recording)
    x, y = batch
    attack = build_attack("autoattack", classifier, **SMALL["autoattack"])
    attack(x, y)
    assert made and all(sq.rescale_schedule is False for sq in made)
    assert made[0].n_queries == SMALL["autoattack"]["n_queries"] and made[0].p_init == 0.8


def test_autoattack_standard_warns_on_a_random_model(classifier, batch):
    x, y = batch
    surface = attack_surface("adaptive", CountingNoise(), classifier)
    attack = build_attack("autoattack", surface, steps=1, n_queries=5, n_target_classes=1)
    with pytest.warns(RuntimeWarning, match="rand"):
        attack(x, y)


# --------------------------------------------------------------------------------------------
# APGD with an active set


class PerImage(nn.Module):
    """A deterministic model that treats each image of a batch on its own, bit for bit."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_net(3)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.net(xi[None]) for xi in x])


@pytest.mark.parametrize(("loss", "steps", "restarts"), [("ce", 20, 1), ("dlr", 7, 2)])
def test_active_set_apgd_is_torchattacks_apgd(loss, steps, restarts):
    """Without pruning the same result as torchattacks.APGD, bit for bit; with it, the same
    images fooled (the same unfooled results) for fewer forward-backward passes."""
    import torchattacks

    model = PerImage().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(24, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::6] = (y[::6] + 1) % 10  # a few misclassified from the start
    settings = dict(norm="Linf", eps=3 / 255, steps=steps, n_restarts=restarts, seed=5, loss=loss)
    reference = torchattacks.APGD(model, **settings)(x, y)
    plain = ActiveSetAPGD(model, prune=False, **settings)
    pruned = ActiveSetAPGD(model, prune=True, **settings)
    assert torch.equal(plain(x, y), reference)
    x_pruned = pruned(x, y)
    with torch.no_grad():
        fooled = model(reference).argmax(1) != y
        assert torch.equal(model(x_pruned).argmax(1) != y, fooled)
    assert 4 < int(fooled.sum()) < len(y)  # the case is neither trivial nor hopeless
    assert pruned.image_passes < plain.image_passes

    # perturb returns the clean image for an unfooled one; the run itself must also agree:
    # for every image never fooled, the same best iterate and best loss.
    torch.manual_seed(11)
    ref_best, ref_acc, ref_loss, _ = torchattacks.APGD(model, **settings).attack_single_run(x, y)
    torch.manual_seed(11)
    best, acc, loss, _ = ActiveSetAPGD(model, prune=True, **settings).attack_single_run(x, y)
    assert torch.equal(acc, ref_acc) and bool(ref_acc.any())
    assert torch.equal(best[ref_acc], ref_best[ref_acc])
    assert torch.equal(loss[ref_acc], ref_loss[ref_acc])


def _recording(monkeypatch, module, attribute: str) -> list[ActiveSetAPGD]:
    """Record every ActiveSetAPGD that ``module.attribute`` builds."""
    made: list[ActiveSetAPGD] = []

    class Recording(ActiveSetAPGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(module, attribute, Recording)
    return made


def test_apgd_active_set_only_when_asked_and_deterministic(classifier, batch, monkeypatch):
    from irad.attacks import torchattacks_wrappers

    made = _recording(monkeypatch, torchattacks_wrappers.APGD, "ta_class")
    x, y = batch

    class Noisy(nn.Module):  # random, but does not say so
        def forward(self, x: Tensor) -> Tensor:
            return classifier(x) + 0.1 * torch.randn(x.shape[0], 10)

    on = {"active_set": True}
    cases = [
        (classifier, {}, False, nullcontext()),
        (classifier, on, True, nullcontext()),
        (classifier, {**on, "eot_iter": 2}, False, pytest.warns(RuntimeWarning, match="off")),
        (
            attack_surface("adaptive", CountingNoise(), classifier),
            on,
            False,
            pytest.warns(RuntimeWarning, match="off"),
        ),
        (Noisy(), on, False, pytest.warns(RuntimeWarning, match="off")),
    ]
    for model, params, expected, warns in cases:
        made.clear()
        with warns:
            build_attack("apgd", model, steps=2, **params)(x, y)
        assert [a.prune for a in made] == [expected]
    # recorded only when on (earlier records and cache keys stay valid)
    config = build_attack("apgd", classifier).config()
    assert "active_set" not in config and config["implementation"].startswith("torchattacks.")
    config = build_attack("apgd", classifier, active_set=True).config()
    assert config["active_set"] is True and "ActiveSetAPGD" in config["implementation"]


def test_white_box_threats_turn_the_active_set_on_for_deterministic_defenses():
    deterministic, random = Quantize(), CountingNoise()
    for threat in ("adaptive", "bpda", "bpda-eot"):
        for attack in ("apgd", "autoattack"):
            plan = threat_model(threat).adapt(attack, {}, deterministic, eot_samples=4)
            assert plan.params == {"active_set": True} == plan.adapted
        off = threat_model(threat).adapt(
            "apgd", {"active_set": False}, deterministic, eot_samples=4
        )
        assert off.params == {"active_set": False} and off.adapted == {}
        # a random defense: no active set (AutoAttack's rand version has none)
        assert (
            "active_set" not in threat_model(threat).adapt("apgd", {}, random, eot_samples=4).params
        )
        rand = threat_model(threat).adapt("autoattack", {}, random, eot_samples=4)
        assert rand.params == {"version": "rand"}
    assert threat_model("oblivious").adapt("apgd", {}, deterministic, eot_samples=4).params == {}
    assert threat_model("adaptive").adapt("pgd", {}, deterministic, eot_samples=4).params == {}


def test_autoattack_apgd_ce_active_set(classifier, batch, monkeypatch):
    from irad.attacks import autoattack

    made = _recording(monkeypatch, autoattack, "ActiveSetAPGD")
    x, y = batch
    build_attack("autoattack", classifier, **SMALL["autoattack"])(x, y)
    assert [a.prune for a in made] == [False]
    made.clear()
    build_attack("autoattack", classifier, active_set=True, **SMALL["autoattack"])(x, y)
    assert [a.prune for a in made] == [True]
    made.clear()
    surface = attack_surface("adaptive", CountingNoise(), classifier)
    attack = build_attack(
        "autoattack", surface, steps=1, n_queries=5, n_target_classes=1, active_set=True
    )
    with pytest.warns(RuntimeWarning, match="rand"), pytest.warns(RuntimeWarning, match="off"):
        attack(x, y)
    assert [a.prune for a in made] == [False]
    rand = build_attack("autoattack", classifier, version="rand", steps=1, active_set=True)
    assert "ActiveSetAPGD" not in rand.config()["implementation"]
    with pytest.warns(RuntimeWarning, match="rand version"):
        rand(x, y)


def test_parameter_free_model_works_and_prints_nothing(batch, capsys):
    # torchattacks finds the device through model.parameters(); a BPDA surface around a
    # parameter-free network has none.
    class FixedLinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer(
                "w", torch.randn(10, 3 * 8 * 8, generator=torch.Generator().manual_seed(0))
            )

        def forward(self, x: Tensor) -> Tensor:
            return x.flatten(1) @ self.w.t()

    net = FixedLinear()
    surface = attack_surface("bpda", Quantize(), net)
    assert not list(surface.parameters())
    x, y = batch
    for name in ("pgd", "fab", "square", "apgd"):
        assert_valid(build_attack(name, surface, eps=EPS, **small_params(name))(x, y), x)
    assert "Failed to set device" not in capsys.readouterr().out


def test_torchattacks_does_not_normalise(batch):
    # torchattacks normalises inputs of models whose class is named RobModel and that carry
    # mean/std attributes; irad's adapter must hide such a model.
    class RobModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mean = torch.tensor([0.5, 0.5, 0.5])
            self.std = torch.tensor([0.2, 0.2, 0.2])
            self.net = tiny_net(1).eval()

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

    model = RobModel()
    x, y = batch
    x_adv = build_attack("fgsm", model, eps=EPS)(x, y)
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xg), y)
    (grad,) = torch.autograd.grad(loss, xg)
    expected = (x + EPS / 255 * grad.sign()).clamp(0, 1)
    assert torch.allclose(x_adv, expected, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Bad input


def test_unknown_attack_lists_known_names(classifier):
    with pytest.raises(ConfigError, match="pgd") as err:
        build_attack("pgdd", classifier)
    assert "autoattack" in str(err.value)


def test_unknown_parameter_lists_accepted_ones(classifier):
    with pytest.raises(ConfigError, match="stepz") as err:
        build_attack("pgd", classifier, stepz=3)
    assert "steps=20" in str(err.value) and "random_start" in str(err.value)


@pytest.mark.parametrize("eps", [0, -1, 256, math.nan, "8"])
def test_eps_out_of_range(eps, classifier):
    with pytest.raises(InputError, match="eps"):
        build_attack("pgd", classifier, eps=eps)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("pgd", {"steps": 0}, "steps"),
        ("bim", {"steps": 2.5}, "steps"),
        ("pgd", {"alpha": 0}, "alpha"),
        ("pgd", {"random_start": "yes"}, "random_start"),
        ("apgd", {"loss": "hinge"}, "loss"),
        ("autoattack", {"version": "plus"}, "version"),
        ("square", {"n_queries": 0}, "n_queries"),
        ("admix", {"eta": 2}, "eta"),
        ("pgd", {"seed": 1.5}, "seed"),
        ("pgd", {"seed": -1}, "seed"),
    ],
)
def test_bad_parameter_values(name, params, match, classifier):
    with pytest.raises(InputError, match=match):
        build_attack(name, classifier, **params)


class WrongShape(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.lin = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: Tensor):
        logits = self.lin(x.flatten(1))
        if self.kind == "1d":
            return logits[:, 0]
        if self.kind == "3d":
            return logits[:, :, None]
        if self.kind == "batch":
            return logits[:1]
        return (logits, logits)


@pytest.mark.parametrize("kind", ["1d", "3d", "batch", "tuple"])
def test_model_with_wrong_output_gets_clear_error(kind, batch):
    x, y = batch
    with pytest.raises(InputError, match="logits"):
        build_attack("pgd", WrongShape(kind), steps=1)(x, y)


def test_model_that_changes_output_shape_mid_attack_is_caught(batch):
    class Flaky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3 * 8 * 8, 10)
            self.calls = 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            out = self.lin(x.flatten(1))
            return out if self.calls == 1 else out[:, :5]

    x, y = batch
    with pytest.raises(InputError, match="expected 10"):
        build_attack("pgd", Flaky(), steps=1)(x, y)


@pytest.mark.parametrize(
    ("images", "labels", "match"),
    [
        (lambda x: x * 255, lambda y: y, r"\[0, 1\]"),
        (lambda x: x.permute(0, 2, 3, 1), lambda y: y, "model failed|channels|shape"),
        (lambda x: x[0], lambda y: y, "batch dimension"),
        (lambda x: (x * 255).to(torch.uint8), lambda y: y, "dtype"),
        (lambda x: x, lambda y: y[:3], "labels"),
        (lambda x: x, lambda y: y.float(), "integer"),
        (lambda x: x, lambda y: y + 10, r"labels must lie in \[0, 9\]"),
    ],
)
def test_bad_images_or_labels(images, labels, match, classifier, batch):
    x, y = batch
    attack = build_attack("fgsm", classifier)
    with pytest.raises(InputError, match=match):
        attack(images(x), labels(y))


def test_model_mode_restored_when_attack_fails(batch):
    net = tiny_net().train()
    x, y = batch
    with pytest.raises(InputError):
        build_attack("pgd", net, steps=1)(x, y + 10)
    assert net.training and all(p.requires_grad for p in net.parameters())


# --------------------------------------------------------------------------------------------
# Threat models


def input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    xg = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xg), y, reduction="sum")
    return torch.autograd.grad(loss, xg)[0]


def test_bpda_backward_is_exactly_the_identity(classifier, batch):
    x, y = batch
    defense = Quantize()
    surface = DefendedClassifier(BPDA(defense), classifier)
    with torch.no_grad():
        assert torch.equal(surface(x), classifier(defense(x)))  # forward = the defense
    # gradient of classifier(BPDA(d)(x)) w.r.t. x == gradient of classifier at d(x)
    assert torch.equal(input_grad(surface, x, y), input_grad(classifier, defense(x), y))
    # and the identity holds for any upstream gradient
    xg = x.clone().requires_grad_(True)
    upstream = torch.randn_like(x)
    BPDA(defense)(xg).backward(upstream)
    assert torch.equal(xg.grad, upstream)


def test_bpda_with_surrogate_uses_its_gradient(batch):
    x, _ = batch
    defense = SmoothQuantize()
    surrogate = defense.differentiable_surrogate()
    xg = x.clone().requires_grad_(True)
    upstream = torch.randn_like(x)
    out = BPDA(defense, surrogate=surrogate)(xg)
    assert torch.equal(out.detach(), defense(x))
    out.backward(upstream)
    xs = x.clone().requires_grad_(True)
    surrogate(xs).backward(upstream)
    assert torch.allclose(xg.grad, xs.grad)


def test_surfaces_per_threat(classifier, batch):
    x, _ = batch
    defense = Quantize()
    assert THREAT_MODELS == ("oblivious", "bpda", "bpda-eot", "adaptive")
    assert attack_surface("oblivious", defense, classifier) is classifier
    for threat in THREAT_MODELS[1:]:
        with pytest.warns(RuntimeWarning) if threat == "adaptive" else nullcontext():
            surface = attack_surface(threat, defense, classifier, eot_samples=3)
        with torch.no_grad():
            assert torch.equal(surface(x), classifier(defense(x)))  # deterministic: no EOT
        assert not isinstance(surface, EOT)


def test_adaptive_uses_surrogate_for_non_differentiable_defense(classifier, batch):
    x, y = batch
    defense = SmoothQuantize()
    surface = attack_surface("adaptive", defense, classifier)
    with torch.no_grad():
        assert torch.equal(surface(x), classifier(defense(x)))
    grad = input_grad(surface, x, y)
    assert gradient_stats(surface, x, y)["zero_fraction"] < 0.5
    assert not torch.equal(grad, input_grad(attack_surface("bpda", defense, classifier), x, y))


@pytest.mark.parametrize(("threat", "samples"), [("bpda-eot", 5), ("adaptive", 4), ("bpda", 1)])
def test_eot_averages_over_the_declared_samples(threat, samples, classifier, batch):
    x, _ = batch
    defense = CountingNoise()
    surface = attack_surface(threat, defense, classifier, eot_samples=samples)
    defense.calls = 0
    with torch.no_grad():
        surface(x)
    assert defense.calls == samples


def test_eot_output_is_the_mean():
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.k = 0

        def forward(self, x: Tensor) -> Tensor:
            self.k += 1
            return torch.full((x.shape[0], 3), float(self.k))

    out = EOT(Counter(), samples=4)(torch.rand(2, 3, 4, 4))
    assert torch.equal(out, torch.full((2, 3), 2.5))  # mean of 1, 2, 3, 4
    probs = EOT(Counter(), samples=4, reduce="probs")(torch.rand(2, 3, 4, 4))
    assert torch.allclose(probs.softmax(-1), torch.full((2, 3), 1 / 3))


def test_attack_through_eot_surface(classifier, batch):
    x, y = batch
    defense = CountingNoise()
    surface = attack_surface("bpda-eot", defense, classifier, eot_samples=2)
    defense.calls = 0
    x_adv = build_attack("pgd", surface, steps=3)(x, y)
    assert_valid(x_adv, x)
    assert defense.calls == 2 * (1 + 3)  # probe + 3 steps, each averaging 2 draws


def test_threat_errors(classifier):
    with pytest.raises(ConfigError, match="bpda-eot"):
        attack_surface("white-box", Identity(), classifier)
    with pytest.raises(InputError, match="eot_samples"):
        attack_surface("bpda-eot", Identity(), classifier, eot_samples=0)
    with pytest.raises(InputError, match="defense"):
        attack_surface("bpda", lambda x: x, classifier)


def test_paper_and_strong_bpda(classifier, batch):
    x, y = batch
    paper = paper_bpda_attack(attack_surface("bpda", Quantize(), classifier))
    cfg = paper.config()
    assert (cfg["name"], cfg["steps"], cfg["alpha"], cfg["random_start"]) == ("pgd", 10, 1.0, False)
    assert_valid(paper(x, y), x)
    strong = strong_bpda_attack(CountingNoise(), classifier, eot_samples=3)
    assert strong.config()["steps"] == 100
    assert isinstance(strong.model, EOT) and strong.model.samples == 3
    assert not isinstance(strong_bpda_attack(Quantize(), classifier).model, EOT)


# --------------------------------------------------------------------------------------------
# Gradient diagnostics


def test_gradient_stats_flags_zero_and_nan_gradients(classifier, batch):
    x, y = batch
    healthy = gradient_stats(classifier, x, y)
    assert healthy["zero_fraction"] < 0.5 and healthy["nan_count"] == 0
    assert healthy["mean_abs"] > 0
    with pytest.warns(RuntimeWarning):
        broken = attack_surface("adaptive", Quantize(), classifier)  # real gradients of round()
    stats = gradient_stats(broken, x, y)
    assert stats["zero_fraction"] == 1.0 and stats["zero_image_fraction"] == 1.0
    assert stats["mean_abs"] == 0.0

    class NaNGrad(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return classifier(x) + 0 * torch.sqrt(x - 2).sum((1, 2, 3))[:, None]

    assert gradient_stats(NaNGrad(), x, y)["nan_count"] > 0
