"""The adversarial-image cache is verified, not trusted: a changed file, images that no longer
fool the surface, or changed attack code are recomputed (with a warning), never used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from irad.defenses import Defense, Identity
from irad.evaluate import AttackBackend, evaluate_defenses
from irad.evaluate import run as run_module
from irad.evaluate.cache import AdversarialCache, StaleCacheWarning, attack_code_fingerprint
from irad.models.classifier import Classifier

K, SIZE, N = 3, 8, 16
FAST: dict[str, Any] = {"batch_size": 8, "cost_repeats": 0, "progress": False, "threads": 1}
ATTACK = "pgd:steps=10,alpha=2,eps=16"  # breaks every image of this data


def make_task() -> tuple[Classifier, tuple[Tensor, Tensor]]:
    patterns = torch.rand(K, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) - 0.5
    y = torch.arange(N) % K
    noise = 0.05 * torch.randn(N, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    x = (0.5 + 0.15 * patterns[y] + noise).clamp(0, 1)
    linear = nn.Linear(3 * SIZE * SIZE, K)
    with torch.no_grad():
        linear.weight.copy_(patterns.flatten(1))
        linear.bias.copy_(-(patterns.flatten(1) * 0.5).sum(1))
    return Classifier(nn.Sequential(nn.Flatten(), linear), num_classes=K, name="template"), (x, y)


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.real = AttackBackend.default()

    def backend(self) -> AttackBackend:
        def build(name: str, model: nn.Module, eps: float = 8, **params: Any) -> Any:
            attack = self.real.build_attack(name, model, eps=eps, **params)

            def call(x: Tensor, y: Tensor, *, seed: int | None = None) -> Tensor:
                self.calls += 1
                return attack(x, y, seed=seed)

            return call

        return self.real.replace(build_attack=build)


class Noise(Defense):
    """A random defense (its scores depend on the scoring seeds)."""

    stochastic = True

    def purify(self, x: Tensor) -> Tensor:
        return (x + 0.3 * torch.randn_like(x)).clamp(0, 1)


def _evaluate(cache: Path, counter: Counter | None = None, defenses: Any = None) -> Any:
    clf, data = make_task()
    kw = {"backend": counter.backend()} if counter is not None else {}
    return evaluate_defenses(
        defenses or {"none": Identity()},
        clf,
        data,
        [ATTACK],
        "oblivious",
        cache_dir=cache,
        **FAST,
        **kw,
    )


def _batch_file(cache: Path, index: int = 0) -> Path:
    files = sorted(cache.rglob(f"batch_{index:05d}.safetensors"))
    assert len(files) == 1
    return files[0]


def test_a_poisoned_batch_is_detected_warned_and_recomputed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    truth = _evaluate(cache)
    assert truth.ra("none", ATTACK).percent == 0.0
    # Replace the cached adversarial batch with the clean images (what raised RA to 87.5 %).
    _, (x, y) = make_task()
    path = _batch_file(cache)
    save_file({"x_adv": x[:8].contiguous(), "y": y[:8].contiguous()}, str(path))

    counter = Counter()
    with pytest.warns(StaleCacheWarning, match=r"batch 0 .* sha256 .* differs"):
        again = _evaluate(cache, counter)
    assert counter.calls == 1  # the poisoned batch only
    assert again.ra("none", ATTACK) == truth.ra("none", ATTACK)
    assert any("failed verification" in w for w in again.warnings)
    # ... and the cache holds real adversarial images again: a third run attacks nothing
    third = Counter()
    _evaluate(cache, third)
    assert third.calls == 0


def test_images_that_no_longer_fool_the_surface_are_recomputed(tmp_path: Path) -> None:
    """A consistent but wrong batch (its hash rewritten too, as stale code would leave it) is
    caught by the forward pass that compares which images fool the surface."""
    cache = tmp_path / "cache"
    truth = _evaluate(cache)
    _, (x, y) = make_task()
    path = _batch_file(cache)
    store = AdversarialCache(cache, {})
    store.dir = path.parent
    record = json.loads(store.record_path(0).read_text())
    store.save(0, x[:8], y[:8])  # valid file, valid hash ...
    forged = json.loads(store.record_path(0).read_text())
    forged["fooled"] = record["fooled"]  # ... claiming the old images' effect
    store.record_path(0).write_text(json.dumps(forged))

    with pytest.warns(StaleCacheWarning, match="0 of its 8 images fool the attack surface now"):
        again = _evaluate(cache)
    assert again.ra("none", ATTACK) == truth.ra("none", ATTACK)


def test_the_cache_key_holds_the_attack_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import irad.attacks

    code = attack_code_fingerprint()
    sources = sorted(Path(irad.attacks.__file__).parent.glob("*.py"))
    assert {p.name for p in sources} >= {"base.py", "autoattack.py", "threat.py"}
    assert code["torchattacks"] is not None and len(code["attacks_source"]) == 64

    cache = tmp_path / "cache"
    first = Counter()
    defenses = {"none": Identity(), "noise": Noise()}
    before = _evaluate(cache, first, defenses)
    changed = dict(code, attacks_source="0" * 64)  # as if an attack's source had changed
    monkeypatch.setattr(run_module, "attack_code_fingerprint", lambda: changed)
    second = Counter()
    after = _evaluate(cache, second, defenses)
    old, new = before.defenses["none"].attacks[ATTACK], after.defenses["none"].attacks[ATTACK]
    assert new.cache_key != old.cache_key
    assert second.calls == first.calls == N // FAST["batch_size"]
    # ... but not the seeds: an edit that keeps an attack's behaviour keeps its figures, also
    # a random defense's (its draws are seeded without the code fingerprint too)
    assert new.seeds == old.seeds and new.seed_key == old.seed_key
    for label in defenses:
        b, a = before.defenses[label], after.defenses[label]
        assert a.clean_per_image == b.clean_per_image
        assert a.attacks[ATTACK].per_image == b.attacks[ATTACK].per_image


def test_the_active_set_changes_how_not_what(tmp_path: Path) -> None:
    """APGD with and without the active set (which the adaptive threat turns on for a
    deterministic defense) gets the same seeds, so the runs compare image by image: the same
    images fooled, under a different cache key."""
    clf, data = make_task()
    runs = {}
    for spec in ("apgd:steps=5,eps=10", "apgd:steps=5,eps=10,active_set=false"):
        result = evaluate_defenses(
            {"none": Identity()}, clf, data, [spec], "adaptive", cache_dir=tmp_path, **FAST
        )
        (runs[spec],) = result.defenses["none"].attacks.values()
    on, off = runs.values()
    assert on.adapted == {"active_set": True} and off.adapted == {}
    assert on.cache_key != off.cache_key
    assert on.seeds == off.seeds and on.seed_key == off.seed_key
    assert on.per_image == off.per_image
    assert 0 < on.ra.correct < on.ra.total  # some images survive, some do not
