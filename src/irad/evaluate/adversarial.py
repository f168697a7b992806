"""Adversarial images of one attack on one attack surface, batch by batch.

An :class:`AdversarialSource` hands out the adversarial images of each batch: from the cache
when the cached batch verifies (its file hash, and which images fool the surface: one forward
pass), else by running the attack with the batch's derived seed, checking its output and caching
it with that verdict.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from irad.attacks import ATTACKS
from irad.errors import InputError
from irad.evaluate.backend import AttackBackend
from irad.evaluate.cache import AdversarialCache, check_adversarial
from irad.evaluate.images import EvalImages
from irad.evaluate.seeds import derive_seed
from irad.evaluate.specs import AttackSpec, digest
from irad.utils.seed import seeded


class AdversarialSource:
    """The adversarial images of ``spec`` on ``surface`` for every batch of ``images``.

    Call it as ``source(index, start, stop, x, y)`` for batch ``index`` (images ``[start,
    stop)``, clean ``x`` and labels ``y`` on the run's device).

    Args:
        spec: the attack as run.
        surface: the module the attack differentiates through (images -> logits).
        surface_id: JSON-ready identity of the surface (threat, classifier, defense, EOT).
        images: the evaluation images (their fingerprint keys the cache).
        base_seed, batch_size, device: the run's settings.
        backend: where the attack comes from (built on first use: a fully cached run builds
            nothing).
        cache_dir, use_cache: the adversarial-image cache.
        code: what the attack code is (:func:`irad.evaluate.cache.attack_code_fingerprint`).
        stats: counters shared with the run (``attack_batches``, ``cached_batches``).

    Attributes:
        cache: the :class:`AdversarialCache` of this attack and surface (``cache.key``).
        seed_key: the cache key's inputs less the attack code, the device and the attack's
            ``execution_settings``, digested: what the seeds derive from.
        seeds: the attack seed of every batch (recorded with the results).
        attack_config: the attack's full config once built (else read from the cache).
    """

    def __init__(
        self,
        spec: AttackSpec,
        surface: nn.Module,
        surface_id: dict[str, Any],
        images: EvalImages,
        *,
        base_seed: int,
        batch_size: int,
        device: torch.device,
        backend: AttackBackend,
        cache_dir: Path | None,
        use_cache: bool,
        code: dict[str, Any],
        stats: dict[str, int],
    ) -> None:
        self.spec = spec
        self.surface = surface
        self.device = device
        self.backend = backend
        self.use_cache = use_cache
        self.stats = stats
        self.base_seed = base_seed
        components = {
            "kind": "irad.adversarial/2",
            "surface": surface_id,
            # the alias (a preset's name) does not change the images, so it stays out of the key
            "attack": {"name": spec.name, "eps": spec.eps, "params": spec.params},
            "seed": base_seed,
            "data": images.fingerprint,
            "n": images.n,
            "batch_size": batch_size,
            "device": device.type,
            "code": code,
        }
        self.cache = AdversarialCache(cache_dir, components)
        # Seeds follow what is attacked, not the code that attacks, the device or settings that
        # change only how the attack computes: an edit of irad/attacks/ that keeps an attack's
        # behaviour (a new cache key) keeps its figures.
        factory = ATTACKS.get(spec.name) if spec.name in ATTACKS else None
        how = getattr(factory, "execution_settings", frozenset())
        what = {k: v for k, v in components.items() if k not in ("code", "device")}
        params = {k: v for k, v in spec.params.items() if k not in how}
        what["attack"] = {**what["attack"], "params": params}
        self.seed_key = digest(what)
        self.seeds = [
            derive_seed(base_seed, "attack", self.seed_key, start, stop)
            for start, stop in images.ranges(batch_size)
        ]
        self._attack: Any = None
        self._config: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return self.cache.key

    @property
    def attack_config(self) -> dict[str, Any] | None:
        if self._config is None and self.use_cache:
            return self.cache.read_meta().get("attack_config")
        return self._config

    def fooled(self, y: Tensor, start: int, stop: int, x_adv: Tensor) -> Tensor:
        """Which images of a batch fool the surface: one seeded forward pass, ``(B,)`` bool."""
        seed = derive_seed(self.base_seed, "verify", self.seed_key, start, stop)
        with seeded(seed, devices=[self.device]), torch.no_grad():
            return self.surface(x_adv).argmax(1) != y

    def __call__(self, index: int, start: int, stop: int, x: Tensor, y: Tensor) -> Tensor:
        eps = self.spec.eps / 255.0

        def check(x_adv: Tensor) -> Tensor:
            return self.fooled(y, start, stop, x_adv)

        if self.use_cache:
            cached = self.cache.load(index, x, y, eps, fooled=check)
            if cached is not None:
                self.stats["cached_batches"] += 1
                return cached
        x_adv = self._run(index, x, y)
        problem = check_adversarial(x_adv, x, eps)
        if problem:
            raise InputError(f"attack {self.spec.label!r} returned invalid images: {problem}")
        self.stats["attack_batches"] += 1
        if self.use_cache:
            self.cache.save(index, x_adv, y, fooled=check(x_adv))
        return x_adv

    def _run(self, index: int, x: Tensor, y: Tensor) -> Tensor:
        spec = self.spec
        if self._attack is None:
            self._attack = self.backend.build_attack(
                spec.name, self.surface, eps=spec.eps, **spec.params
            )
            config = getattr(self._attack, "config", None)
            self._config = config() if callable(config) else None
            self.cache.extra_meta["attack_config"] = self._config
        seed = self.seeds[index]
        kwargs = {"seed": seed} if _takes_seed(self._attack) else {}
        with seeded(seed, devices=[self.device]):
            x_adv = self._attack(x, y, **kwargs)
        if not isinstance(x_adv, Tensor):
            raise InputError(f"attack {spec.label!r} returned {type(x_adv).__name__}, not a tensor")
        return x_adv.detach().to(self.device, torch.float32)


def _takes_seed(attack: Any) -> bool:
    """Whether ``attack(x, y, seed=...)`` is accepted (irad attacks seed every call)."""
    try:
        return "seed" in inspect.signature(attack).parameters
    except (TypeError, ValueError):
        return False
