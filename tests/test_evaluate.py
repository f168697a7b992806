"""Tests of the evaluation harness (irad.evaluate, ``irad evaluate``).

Everything runs on a tiny template-matching classifier (a linear layer whose weights are the
class patterns) and 8x8 synthetic images whose pattern strength varies from image to image, so
PGD at 8/255 breaks some images but not all, and 16/255 breaks every one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from irad.defenses import Defense, Identity, build_defense
from irad.errors import ConfigError, InputError
from irad.evaluate import (
    WORST_CASE,
    AttackBackend,
    AttackSpec,
    Count,
    EvaluationConfig,
    EvaluationResult,
    SanityConfig,
    evaluate_defenses,
    measure_cost,
    parse_spec,
    worst_case,
)
from irad.evaluate.cache import AdversarialCache, PartialStore, StaleCacheWarning
from irad.evaluate.sanity import (
    check_blackbox,
    check_large_eps,
    check_monotonic,
    check_ra_below_sa,
)
from irad.models.classifier import Classifier

K, SIZE, N = 3, 8, 24


# -- fixtures ---------------------------------------------------------------------------------
def _patterns() -> Tensor:
    return torch.rand(K, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) - 0.5


def make_data(n: int = N, seed: int = 1) -> tuple[Tensor, Tensor]:
    y = torch.arange(n) % K
    strength = torch.linspace(0.06, 0.2, n).view(n, 1, 1, 1)
    noise = 0.05 * torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return (0.5 + strength * _patterns()[y] + noise).clamp(0, 1), y


def make_classifier(perturb: float = 0.0) -> Classifier:
    """Template matching: logit_c = <pattern_c, x - 0.5>. ``perturb`` shifts one weight."""
    linear = nn.Linear(3 * SIZE * SIZE, K)
    p = _patterns().flatten(1)
    with torch.no_grad():
        linear.weight.copy_(p)
        linear.bias.copy_(-(p * 0.5).sum(1))
        linear.weight[0, 0] += perturb
    return Classifier(nn.Sequential(nn.Flatten(), linear), num_classes=K, name="template")


class Rounding(Defense):
    """A deliberately broken defense: quantisation with round(), declared differentiable, so
    its real gradient (zero almost everywhere) is what an adaptive attack gets."""

    def purify(self, x: Tensor) -> Tensor:
        return torch.round(x * 3) / 3

    def config(self) -> dict[str, Any]:
        return {"name": "rounding"}


class Noise(Defense):
    """A random defense: small Gaussian noise (counts its forward calls)."""

    stochastic = True

    def __init__(self, std: float = 0.1) -> None:
        super().__init__()
        self.std = std
        self.calls = 0

    def purify(self, x: Tensor) -> Tensor:
        self.calls += 1
        return x + self.std * torch.randn_like(x)

    def config(self) -> dict[str, Any]:
        return {"name": "noise", "std": self.std}


class CountingIdentity(Identity):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def purify(self, x: Tensor) -> Tensor:
        self.calls += 1
        return x


class Counter:
    """An attack backend around irad.attacks that counts (and can sabotage) attack calls."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls = 0
        self.fail_at = fail_at
        self.real = AttackBackend.default()

    def backend(self) -> AttackBackend:
        def build(name: str, model: nn.Module, eps: float = 8, **params: Any) -> Any:
            attack = self.real.build_attack(name, model, eps=eps, **params)
            counter = self

            class Counted:
                def __call__(self, x: Tensor, y: Tensor, *, seed: int | None = None) -> Tensor:
                    counter.calls += 1
                    if counter.fail_at is not None and counter.calls >= counter.fail_at:
                        raise RuntimeError("simulated crash")
                    return attack(x, y, seed=seed)

                def config(self) -> dict[str, Any]:
                    return attack.config()

            return Counted()

        return self.real.replace(build_attack=build)


# One thread: tiny tensors gain nothing from more, and lose a lot on a busy machine.
FAST = {"batch_size": 8, "cost_repeats": 0, "progress": False, "threads": 1}
TINY_SANITY = SanityConfig(
    eps_grid=(4, 8, 16),
    steps_grid=(2, 4),
    blackbox="square:n_queries=30",
    n=None,
)


@pytest.fixture
def data() -> tuple[Tensor, Tensor]:
    return make_data()


@pytest.fixture
def clf() -> Classifier:
    return make_classifier()


# -- specs ------------------------------------------------------------------------------------
def test_attack_spec_parsing() -> None:
    spec = AttackSpec.parse("pgd:steps=20,alpha=2.5,random_start=false,eps=4")
    assert spec.name == "pgd" and spec.eps == 4.0
    assert spec.params == {"steps": 20, "alpha": 2.5, "random_start": False}
    assert AttackSpec.parse("autoattack").params == {}
    paper_bpda = AttackSpec.parse("bpda-pgd")  # the paper's BPDA attack, by its preset name
    assert (paper_bpda.name, paper_bpda.label) == ("pgd", "bpda-pgd")
    assert paper_bpda.params == {"steps": 10, "alpha": 1.0, "random_start": False}
    assert AttackSpec.parse("bpda-pgd:steps=20").label == "bpda-pgd:steps=20"
    assert AttackSpec.from_dict(paper_bpda.to_dict()) == paper_bpda
    assert AttackSpec.parse(spec.label) == spec
    assert parse_spec("jpeg:quality=75,mode=fast") == ("jpeg", {"quality": 75, "mode": "fast"})


@pytest.mark.parametrize(
    "text", ["", "pgd:steps", "pgd:eps=0", "pgd:eps=300", "pgd:steps=1,steps=2", ":steps=2"]
)
def test_bad_attack_specs_raise_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        AttackSpec.parse(text)


def test_bad_settings_raise_clear_errors(data: tuple[Tensor, Tensor], clf: Classifier) -> None:
    with pytest.raises(ConfigError, match="unknown threat 'whitebox'"):
        evaluate_defenses({"none": Identity()}, clf, data, ["fgsm"], "whitebox", **FAST)
    with pytest.raises(ConfigError, match=r"unknown defense 'jpge'.*jpeg"):
        build_defense("jpge")
    with pytest.raises(ConfigError, match="unknown attack"):
        evaluate_defenses(
            {"none": Identity()}, clf, data, ["nosuchattack"], "oblivious", use_cache=False, **FAST
        )
    with pytest.raises(ConfigError, match="bad parameters for attack 'pgd:stpes=3'"):
        evaluate_defenses({"none": Identity()}, clf, data, ["pgd:stpes=3"], use_cache=False, **FAST)
    with pytest.raises(ConfigError, match="n 1000 is more than the 24 images"):
        evaluate_defenses({"none": Identity()}, clf, data, ["fgsm"], n=1000, **FAST)
    with pytest.raises(ConfigError, match="unknown evaluation setting"):
        evaluate_defenses({"none": Identity()}, clf, data, ["fgsm"], batchsize=3)
    with pytest.raises(ConfigError, match="no defense"):
        evaluate_defenses({}, clf, data, ["fgsm"], **FAST)
    with pytest.raises(ConfigError, match="listed twice"):
        evaluate_defenses({"none": Identity()}, clf, data, ["fgsm", "fgsm:eps=8"], **FAST)
    wrong = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 2)), num_classes=5)
    with pytest.raises(InputError, match="logits"):
        evaluate_defenses({"none": Identity()}, wrong, data, [], **FAST)


# -- figures ----------------------------------------------------------------------------------
def test_identity_sa_equals_classifier_accuracy_and_pgd_lowers_ra(
    data: tuple[Tensor, Tensor], tmp_path: Path
) -> None:
    x, y = data
    clf = make_classifier(perturb=4.0)  # a weight error makes some clean images wrong
    with torch.no_grad():
        accuracy = (clf(x).argmax(1) == y).float().mean().item() * 100
    assert 0 < accuracy < 100
    result = evaluate_defenses(
        {"none": Identity()}, clf, data, ["pgd:steps=4"], "oblivious", cache_dir=tmp_path, **FAST
    )
    assert result.sa("none").percent == pytest.approx(accuracy)
    assert result.sa("none").total == N
    ra = result.ra("none", "pgd:steps=4")
    assert ra.percent < result.sa("none").percent  # the attack does something
    # ... and never turns a wrong image right: per image, robust implies clean-correct.
    outcome = result.defenses["none"]
    clean = [c == "1" for c in outcome.clean_per_image[0]]
    robust = [c == "1" for c in outcome.attacks["pgd:steps=4"].per_image[0]]
    assert all(c or not r for c, r in zip(clean, robust, strict=True))


def test_worst_case_is_per_image_and_over_attacks(
    data: tuple[Tensor, Tensor], clf: Classifier, tmp_path: Path
) -> None:
    a = torch.tensor([[True, True, False, True]])
    b = torch.tensor([[True, False, True, True]])
    assert worst_case([a, b]).tolist() == [[True, False, False, True]]
    with pytest.raises(InputError):
        worst_case([])

    result = evaluate_defenses(
        {"none": Identity()},
        clf,
        data,
        ["fgsm", "pgd:steps=2,eps=6"],
        cache_dir=tmp_path,
        **FAST,
    )
    outcome = result.defenses["none"]
    rows = [outcome.attacks[k].per_image[0] for k in ("fgsm", "pgd:steps=2,eps=6")]
    expected = sum(all(r[i] == "1" for r in rows) for i in range(N))
    assert outcome.worst_case == Count(expected, N)
    assert result.ra("none", WORST_CASE).percent <= min(
        result.ra("none", "fgsm").percent, result.ra("none", "pgd:steps=2,eps=6").percent
    )


def test_random_defense_draws_fresh_randomness_reproducibly(
    data: tuple[Tensor, Tensor], clf: Classifier, tmp_path: Path
) -> None:
    kw = dict(FAST, draws=3, cache_dir=tmp_path)
    first = evaluate_defenses({"noise": Noise(0.3)}, clf, data, ["fgsm"], **kw)
    again = evaluate_defenses({"noise": Noise(0.3)}, clf, data, ["fgsm"], **kw)
    outcome = first.defenses["noise"]
    assert outcome.draws == 3 and outcome.sa.total == 3 * N
    assert outcome.attacks["fgsm"].ra.total == 3 * N
    assert len(set(outcome.clean_per_image)) > 1  # draws differ from one another
    assert again.defenses["noise"].clean_per_image == outcome.clean_per_image  # but are seeded
    assert first.randomness["draws"] == {"noise": 3}


# -- cache and resume -------------------------------------------------------------------------
def test_second_run_reuses_the_cache_and_keys_track_every_input(
    data: tuple[Tensor, Tensor], tmp_path: Path
) -> None:
    counter = Counter()

    def run(clf: Classifier | None = None, attack: str = "pgd:steps=2", **kw: Any) -> str:
        result = evaluate_defenses(
            {"none": Identity(), "noise": Noise(0.05)},
            clf or make_classifier(),
            kw.pop("dataset", data),
            [attack],
            "oblivious",
            cache_dir=tmp_path,
            backend=counter.backend(),
            **{**FAST, **kw},
        )
        keys = {o.attacks[attack].cache_key for o in result.defenses.values()}
        assert len(keys) == 1  # oblivious: every defense is judged on the same images
        return keys.pop()

    batches = N // FAST["batch_size"]
    base = run()
    assert counter.calls == batches
    assert run() == base and counter.calls == batches  # second run: no attack at all

    x, y = data
    variants = {
        "weights": lambda: run(clf=make_classifier(perturb=1e-3)),
        "params": lambda: run(attack="pgd:steps=3"),
        "eps": lambda: run(attack="pgd:steps=2,eps=6"),
        "seed": lambda: run(seed=1),
        "subset": lambda: run(n=N - 8),
        "pixels": lambda: run(dataset=(x.flip(0), y.flip(0))),
        "batch size": lambda: run(batch_size=4),
    }
    keys = {"base": base}
    for name, variant in variants.items():
        before = counter.calls
        keys[name] = variant()
        assert counter.calls > before, f"changing the {name} must recompute the attack"
    assert len(set(keys.values())) == len(keys)


def test_cache_recomputes_images_that_do_not_belong_to_the_batch(tmp_path: Path) -> None:
    cache = AdversarialCache(tmp_path, {"attack": "x"})
    x, y = torch.full((2, 3, 4, 4), 0.5), torch.tensor([0, 1])
    cache.save(0, x + 0.1, y)
    assert cache.load(1, x, y, eps=0.2) is None
    assert torch.equal(cache.load(0, x, y, eps=0.2), x + 0.1)
    with pytest.warns(StaleCacheWarning, match="exceeds eps"):
        assert cache.load(0, x, y, eps=8 / 255) is None
    with pytest.warns(StaleCacheWarning, match="labels differ"):
        assert cache.load(0, x, torch.tensor([1, 0]), eps=0.2) is None
    assert len(cache.problems) == 2


def test_resume_after_a_crash_recomputes_nothing_finished(
    data: tuple[Tensor, Tensor], clf: Classifier, tmp_path: Path
) -> None:
    attacks = ["fgsm", "pgd:steps=2"]
    batches = N // FAST["batch_size"]
    out, cache = tmp_path / "run", tmp_path / "cache"

    crashing = Counter(fail_at=batches + 2)  # dies in the second batch of the second attack
    defense = CountingIdentity()
    with pytest.raises(RuntimeError, match="simulated crash"):
        evaluate_defenses(
            {"none": defense},
            clf,
            data,
            attacks,
            out_dir=out,
            cache_dir=cache,
            backend=crashing.backend(),
            **FAST,
        )
    done = batches + 1  # attack batches that finished before the crash
    calls_before = defense.calls
    assert calls_before == batches + done  # clean batches + scored attack batches

    resumed = Counter()
    result = evaluate_defenses(
        {"none": defense},
        clf,
        data,
        attacks,
        out_dir=out,
        cache_dir=cache,
        backend=resumed.backend(),
        **FAST,
    )
    assert resumed.calls == 2 * batches - done  # only the unfinished attack batches
    # scoring: only the unfinished batches (the oblivious gradient report needs no defense)
    assert defense.calls - calls_before == 2 * batches - done
    assert result.timing["partials_reused"] == batches + done

    fresh = evaluate_defenses(
        {"none": Identity()}, clf, data, attacks, cache_dir=tmp_path / "c2", **FAST
    )
    for name in attacks:
        assert result.defenses["none"].attacks[name].per_image == (
            fresh.defenses["none"].attacks[name].per_image
        )


def test_partial_store_ignores_results_of_another_key(tmp_path: Path) -> None:
    store = PartialStore(tmp_path)
    store.save("none-fgsm", "a" * 64, 0, {"bits": ["101"]})
    assert store.load("none-fgsm", "a" * 64, 0)["bits"] == ["101"]
    assert store.load("none-fgsm", "b" * 64, 0) is None
    assert store.load("none-fgsm", "a" * 64, 1) is None


# -- sanity checks ----------------------------------------------------------------------------
def test_sanity_checks_fire_on_a_zero_gradient_defense(
    data: tuple[Tensor, Tensor], clf: Classifier, tmp_path: Path
) -> None:
    result = evaluate_defenses(
        {"rounding": Rounding()},
        clf,
        data,
        ["pgd:steps=4"],
        "adaptive",
        cache_dir=tmp_path,
        sanity=True,
        sanity_config=TINY_SANITY,
        **FAST,
    )
    outcome = result.defenses["rounding"]
    assert outcome.gradients["zero_fraction"] == 1.0
    failed = {c.check for c in outcome.checks if c.failed}
    assert {"input-gradients", "large-eps-breaks-everything"} <= failed
    assert outcome.sanity["large_eps"]["ra"]["percent"] > 5.0  # RA at 64/255 not near 0
    assert any("input-gradients" in w for w in result.warnings)
    assert "WARNING [rounding] input-gradients" in result.to_markdown()
    assert json.loads(result.to_json())["warnings"] == result.warnings


def test_sanity_checks_stay_silent_on_a_correct_evaluation(
    data: tuple[Tensor, Tensor], clf: Classifier, tmp_path: Path
) -> None:
    result = evaluate_defenses(
        {"none": Identity()},
        clf,
        data,
        ["pgd:steps=4", "square:n_queries=30"],
        "adaptive",
        cache_dir=tmp_path,
        sanity=True,
        sanity_config=TINY_SANITY,
        **FAST,
    )
    assert result.warnings == []
    checks = result.defenses["none"].checks
    ran = {c.check for c in checks}
    assert {
        "input-gradients",
        "ra-monotonic-in-eps",
        "ra-monotonic-in-steps",
        "large-eps-breaks-everything",
        "blackbox-not-stronger",
        "ra-not-above-sa",
    } <= ran
    assert result.defenses["none"].sanity["large_eps"]["ra"]["percent"] < 5.0


def test_sanity_check_functions() -> None:
    weak = torch.tensor([[True] * 10 + [False] * 10])
    strong = torch.tensor([[True] * 2 + [False] * 18])
    one_off = torch.tensor([[True] * 11 + [False] * 9])
    # RA falling with eps: silent; RA rising a lot: warning; by one image (noise): silent
    grid = {(4.0, 10): weak, (8.0, 10): strong}
    assert not any(c.failed for c in check_monotonic(grid, margin=2.0))
    grid = {(4.0, 10): strong, (8.0, 10): weak}
    assert [c.check for c in check_monotonic(grid, margin=2.0) if c.failed] == [
        "ra-monotonic-in-eps"
    ]
    assert not any(
        c.failed for c in check_monotonic({(4.0, 10): weak, (8.0, 10): one_off}, margin=2.0)
    )
    kw = {"blackbox_name": "square", "whitebox_name": "pgd", "margin": 2.0}
    assert check_blackbox(strong, weak, **kw).failed
    assert not check_blackbox(weak, strong, **kw).failed
    assert check_large_eps(Count(3, 10), eps=64, max_ra=5.0).failed
    assert not check_large_eps(Count(0, 10), eps=64, max_ra=5.0).failed


def test_oblivious_attack_strength_checks_are_not_applicable_to_defenses(
    data: tuple[Tensor, Tensor], clf: Classifier, tmp_path: Path
) -> None:
    result = evaluate_defenses(
        {"rounding": Rounding()},
        clf,
        data,
        ["fgsm"],
        "oblivious",
        cache_dir=tmp_path,
        sanity=True,
        sanity_config=TINY_SANITY,
        **FAST,
    )
    outcome = result.defenses["rounding"]
    assert result.warnings == []  # the oblivious surface (the classifier) has gradients
    assert "skipped" in outcome.sanity
    assert any(c.status == "n/a" for c in outcome.checks)


# -- cost and outputs ---------------------------------------------------------------------------
def test_cost_is_a_median_with_its_settings_recorded() -> None:
    cost = measure_cost(nn.Identity(), torch.rand(5, 3, 8, 8), repeats=3, warmup=1, threads=1)
    assert cost.batch_size == 5 and cost.threads == 1 and len(cost.batch_ms) == 3
    assert cost.ms_per_image >= 0


def test_outputs_parse_and_round_trip(
    data: tuple[Tensor, Tensor], clf: Classifier, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = evaluate_defenses(
        {"none": Identity(), "noise": Noise(0.05)},
        clf,
        data,
        ["fgsm", "pgd:steps=2"],
        "bpda",
        out_dir=out,
        cache_dir=tmp_path / "cache",
        config=EvaluationConfig(protocol="test", cost_repeats=2, cost_batch_size=4, threads=1),
        batch_size=8,
        progress=False,
        metadata={"note": "unit test"},
    )
    assert {p.name for p in out.iterdir()} >= {"result.json", "result.csv", "table.md"}

    data_json = json.loads((out / "result.json").read_text())
    assert data_json["protocol"] == "test" and data_json["threat"] == "bpda"
    assert data_json["seed"] == 0 and data_json["environment"]["torch"] == torch.__version__
    assert data_json["config"]["batch_size"] == 8
    none = data_json["defenses"]["none"]
    assert none["sa"]["correct"] <= none["sa"]["total"] == N
    assert none["attacks"]["fgsm"]["avg"] == pytest.approx(
        (none["sa"]["percent"] + none["attacks"]["fgsm"]["ra"]["percent"]) / 2
    )
    assert none["cost"]["batch_size"] == 4 and data_json["classifier_cost"]["repeats"] == 2

    loaded = EvaluationResult.from_json(out / "result.json")
    assert json.loads(loaded.to_json()) == json.loads(result.to_json())
    assert loaded.ra("noise", "fgsm") == result.ra("noise", "fgsm")

    rows = list(csv.DictReader(io.StringIO((out / "result.csv").read_text())))
    assert len(rows) == 2 * 3  # 2 defenses x (2 attacks + worst case)
    row = next(r for r in rows if r["defense"] == "none" and r["attack"] == "fgsm")
    assert float(row["ra"]) == pytest.approx(result.ra("none", "fgsm").percent, abs=1e-3)

    table = (out / "table.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| Defense"))
    body = [line for line in table if line.startswith("| none") or line.startswith("| noise")]
    assert len(body) == 2
    assert header.count("|") == body[0].count("|") == 3 * 3 + 3
    assert "RA (worst-case)" in header and "Cost (ms/img)" in header
    assert "random defense under the bpda threat without EOT" in " ".join(result.warnings)


def test_cli_evaluate_writes_results(tmp_path: Path) -> None:
    from irad.cli import app
    from irad.data import ImageDataset
    from irad.models import build_classifier, save_classifier

    torch.manual_seed(0)
    x = (torch.rand(6, 32, 32, 3) * 255).to(torch.uint8)
    ImageDataset(x, torch.arange(6) % 10, name="tiny").save_npz(tmp_path / "tiny.npz")
    save_classifier(build_classifier("resnet20"), tmp_path / "r20")
    args = shlex.split(
        "evaluate --defense none --defense bit-depth:bits=4 --attack fgsm --threat oblivious "
        "--n 6 --batch-size 3 --cost-repeats 1 --cost-batch-size 2 --threads 1 --no-progress"
    )
    paths = ["-w", str(tmp_path / "r20"), "--dataset", str(tmp_path / "tiny.npz")]
    paths += ["--cache-dir", str(tmp_path / "cache")]
    args += [*paths, "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| bit-depth:bits=4 |" in result.output
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert set(saved["defenses"]) == {"none", "bit-depth:bits=4"}
    assert saved["dataset"]["n"] == 6 and saved["metadata"]["command"] == "evaluate"

    bad = CliRunner().invoke(app, [*args, "--threat", "wb"])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)
    assert "unknown threat 'wb'" in str(bad.exception)


@pytest.mark.slow
@pytest.mark.data
def test_real_resnet56_pgd_smoke(tmp_path: Path) -> None:
    """PGD-20 on the first 100 CIFAR-10 test images: no defense leaves RA near 0."""
    root = os.environ.get("IRAD_DATA")
    weights = Path(__file__).resolve().parents[2] / "shared/data/weights/resnet56-4bfd9763.th"
    if not root or not Path(root).exists() or not weights.exists():
        pytest.skip("needs IRAD_DATA and the shared ResNet-56 weights")
    from irad.data import load_dataset
    from irad.models import load_classifier

    result = evaluate_defenses(
        {"none": Identity()},
        load_classifier(weights),
        load_dataset("cifar10", "test", root),
        ["pgd:steps=20"],
        config=EvaluationConfig.cpu_protocol(n=100, cost_repeats=1),
        cache_dir=tmp_path,
        progress=False,
    )
    assert result.sa("none").percent > 85
    assert result.ra("none", "pgd:steps=20").percent <= 1.0


def test_ra_above_sa_is_flagged_when_significant_and_named_when_within_noise() -> None:
    clean = torch.zeros(1, 200, dtype=torch.bool)
    clean[0, :160] = True  # SA 80 %
    small = clean.clone()
    small[0, 160:164] = True  # RA 82 %: 4 images flipped to correct
    large = clean.clone()
    large[0, 160:200] = True  # RA 100 %
    below = clean.clone()
    below[0, :100] = False
    quiet = check_ra_below_sa(clean, small, attack="pgd", margin=2.0)
    assert quiet.status == "pass"
    assert "above SA 80.00% by 2.00 points, within noise" in quiet.message
    loud = check_ra_below_sa(clean, large, attack="pgd", margin=2.0)
    assert loud.status == "warn" and "exceeds SA" in loud.message
    fine = check_ra_below_sa(clean, below, attack="pgd", margin=2.0)
    assert fine.status == "pass" and "<= SA" in fine.message


def test_per_image_results_hold_correctness_predictions_and_intervals(
    tmp_path: Path, data: tuple[Tensor, Tensor], clf: Classifier
) -> None:
    """Per defense and attack: which images are right, the predicted label (per draw), the
    worst case per image, the labels; a 95 % interval beside every SA and RA; per_image.csv."""
    out = tmp_path / "run"
    result = evaluate_defenses(
        {"none": Identity(), "noise": Noise()},
        clf,
        data,
        ["fgsm", "pgd:steps=3"],
        "oblivious",
        out_dir=out,
        cache_dir=tmp_path / "cache",
        draws=2,
        **FAST,
    )
    _, y = data
    assert result.labels == y.tolist()
    for label, d in result.defenses.items():
        draws = 2 if label == "noise" else 1
        for bits, predicted in [(d.clean_per_image, d.clean_predicted)] + [
            (a.per_image, a.predicted) for a in d.attacks.values()
        ]:
            assert len(bits) == len(predicted) == draws
            for row, preds in zip(bits, predicted, strict=True):
                assert [c == "1" for c in row] == [
                    p == t for p, t in zip(preds, y.tolist(), strict=True)
                ]
        both = worst_case([result.per_image(label, a) for a in ("fgsm", "pgd:steps=3")])
        assert torch.equal(result.per_image(label, WORST_CASE), both)
        record = d.to_dict()
        low, high = record["sa"]["ci95"]
        assert low <= d.sa.percent <= high
        low, high = record["attacks"]["fgsm"]["ra"]["ci95"]
        assert low <= d.attacks["fgsm"].ra.percent <= high
    again = EvaluationResult.from_json(out / "result.json")
    assert again.defenses["noise"].attacks["fgsm"].predicted == (
        result.defenses["noise"].attacks["fgsm"].predicted
    )
    rows = list(csv.DictReader(io.StringIO((out / "per_image.csv").read_text())))
    # 2 defenses: none 1 draw, noise 2; clean + 2 attacks + worst case; N images each
    assert len(rows) == N * (1 + 2) * 4
    first = next(r for r in rows if r["defense"] == "noise" and r["attack"] == "pgd:steps=3")
    assert (
        int(first["predicted"]) == result.defenses["noise"].attacks["pgd:steps=3"].predicted[0][0]
    )
    summary = list(csv.DictReader(io.StringIO((out / "result.csv").read_text())))
    assert (
        float(summary[0]["sa_ci95_low"])
        <= float(summary[0]["sa"])
        <= float(summary[0]["sa_ci95_high"])
    )
    table = (out / "table.md").read_text()
    assert "95 % Wilson interval" in table and " [" in table
