"""The evaluation harness: SA, RA, Avg and cost of several defenses under a list of attacks.

How each threat is run (see :func:`irad.attacks.attack_surface`):

* ``oblivious``: each attack runs once per batch on the classifier alone; the adversarial images
  are cached on disk and every defense is judged on those same images.
* ``bpda``, ``bpda-eot``, ``adaptive``: each attack runs per defense through the surface
  ``attack_surface(threat, defense, classifier, eot_samples=...)``; the images are cached too
  (keyed by the defense as well), so a rerun with more evaluation draws attacks nothing.

Then ``classifier(defense(x_adv))`` is scored. A random defense is scored with fresh randomness
(seeds the attack never used), ``draws`` times per image. Every (defense, attack, batch) result
is written atomically to ``out_dir/partials``; a crashed run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from irad.checks import check_logits
from irad.defenses.base import DefendedClassifier, Defense, Identity
from irad.errors import ConfigError, InputError
from irad.evaluate import sanity as checks
from irad.evaluate.cache import (
    AdversarialCache,
    PartialStore,
    check_adversarial,
    module_fingerprint,
)
from irad.evaluate.cost import CostResult, measure_cost, num_threads
from irad.evaluate.images import EvalImages
from irad.evaluate.metrics import Count, decode_bits, encode_bits, worst_case
from irad.evaluate.report import AttackOutcome, DefenseOutcome, EvaluationResult
from irad.evaluate.specs import (
    WHITE_BOX_THREATS,
    AttackSpec,
    EvaluationConfig,
    as_attack_spec,
    digest,
)
from irad.utils.env import environment_info

log = logging.getLogger(__name__)

#: Images whose input gradients are inspected per attack surface (enough for the statistics).
GRADIENT_IMAGES = 64

#: Recorded with results: how the per-batch seeds are made from the base seed.
SEED_SCHEME = (
    "seed(parts) = int(sha256(json([base_seed, *parts]))[:16], 16) mod 2**63; attack batches use "
    "parts ('attack', cache_key, batch); scoring uses ('score', task_key, batch, draw), so a "
    "random defense is scored with randomness the attack never saw"
)


@dataclass(frozen=True)
class AttackBackend:
    """Where attacks and attack surfaces come from (``irad.attacks`` unless replaced).

    Pass your own to evaluate a custom attack with the same bookkeeping::

        backend = AttackBackend.default().replace(build_attack=my_factory)
    """

    build_attack: Callable[..., Any]
    attack_surface: Callable[..., nn.Module]
    gradient_stats: Callable[..., Mapping[str, Any]] | None = None
    #: Raises :class:`ConfigError` for an attack spec that cannot be built (checked up front,
    #: so a typo fails before hours of work rather than after).
    check_spec: Callable[[AttackSpec], None] | None = None

    @classmethod
    def default(cls) -> AttackBackend:
        from irad import attacks

        def check_spec(spec: AttackSpec) -> None:
            factory = attacks.ATTACKS.get(spec.name)
            try:
                inspect.signature(factory).bind(None, eps=spec.eps, **spec.params)
            except TypeError as err:
                accepted = ", ".join(attacks.attack_parameters(spec.name))
                raise ConfigError(
                    f"bad parameters for attack {spec.label!r}: {err}; accepted: {accepted}"
                ) from err

        return cls(
            build_attack=attacks.build_attack,
            attack_surface=attacks.attack_surface,
            gradient_stats=getattr(attacks, "gradient_stats", None),
            check_spec=check_spec,
        )

    def replace(self, **changes: Any) -> AttackBackend:
        import dataclasses

        return dataclasses.replace(self, **changes)


def derive_seed(base: int, *parts: Any) -> int:
    """A 63-bit seed from the base seed and a path of labels (see :data:`SEED_SCHEME`)."""
    text = digest([base, *parts])
    return int(text[:16], 16) % (2**63)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block with torch's global RNG seeded, restoring the outer state afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# -- the run ----------------------------------------------------------------------------------
@dataclass
class _DefenseEntry:
    label: str
    module: Defense
    fingerprint: str
    draws: int
    white_box: bool

    @property
    def stochastic(self) -> bool:
        return bool(getattr(self.module, "stochastic", False))

    def identity(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "draws": self.draws}


@dataclass
class _Run:
    """State shared by the steps of one :func:`evaluate_defenses` call."""

    config: EvaluationConfig
    classifier: nn.Module
    classifier_fp: str
    backend: AttackBackend
    cache_dir: Path | None
    use_cache: bool
    store: PartialStore | None
    device: torch.device
    progress: bool
    versions: dict[str, Any]
    surfaces: dict[str, nn.Module] = field(default_factory=dict)
    attack_configs: dict[str, Any] = field(default_factory=dict)
    caches: dict[str, AdversarialCache] = field(default_factory=dict)
    stats: dict[str, Any] = field(
        default_factory=lambda: {"attack_batches": 0, "cached_batches": 0, "partials_reused": 0}
    )

    # Each step below handles one batch list of one task and returns per-image correctness.
    def score(
        self, entry: _DefenseEntry, x: Tensor, y: Tensor, task_key: str, index: int
    ) -> Tensor:
        """Correctness ``(draws, B)`` of ``classifier(defense(x))``, fresh randomness per draw."""
        rows = []
        for draw in range(entry.draws):
            seed = derive_seed(self.config.seed, "score", task_key, index, draw)
            with seeded(seed, self.device), torch.no_grad():
                purified = entry.module(x)
                if purified.shape != x.shape:
                    raise InputError(
                        f"defense {entry.label!r} returned shape {tuple(purified.shape)} for "
                        f"input {tuple(x.shape)}; a defense must keep the image shape"
                    )
                logits = check_logits(self.classifier(purified), x.shape[0])
            rows.append((logits.argmax(dim=1) == y).cpu())
        return torch.stack(rows)

    def task(
        self,
        label: str,
        key: str,
        images: EvalImages,
        entries: Sequence[_DefenseEntry],
        make_inputs: Callable[[int, Tensor, Tensor], Tensor] | None,
        desc: str,
    ) -> dict[str, Tensor]:
        """Score ``entries`` on every batch; ``make_inputs`` gives the (adversarial) inputs.

        Returns per-defense correctness ``(draws, N)``; finished batches are read back from the
        partial store instead of being recomputed.
        """
        bs = self.config.batch_size
        keys = {e.label: digest({"task": key, "defense": e.identity()}) for e in entries}
        parts: dict[str, list[Tensor]] = {e.label: [] for e in entries}
        bar = tqdm(
            total=images.num_batches(bs),
            desc=desc,
            leave=False,
            disable=not self.progress,
            unit="batch",
        )
        for index, (x, y) in enumerate(images.batches(bs)):
            todo = []
            for e in entries:
                saved = None
                if self.store is not None:
                    saved = self.store.load(f"{e.label}-{label}", keys[e.label], index)
                if saved is not None:
                    parts[e.label].append(decode_bits(saved["bits"]))
                    self.stats["partials_reused"] += 1
                else:
                    todo.append(e)
            if todo:
                x, y = x.to(self.device), y.to(self.device)
                inputs = x if make_inputs is None else make_inputs(index, x, y)
                for e in todo:
                    correct = self.score(e, inputs, y, keys[e.label], index)
                    if self.store is not None:
                        self.store.save(
                            f"{e.label}-{label}",
                            keys[e.label],
                            index,
                            {"defense": e.label, "task": label, "bits": encode_bits(correct)},
                        )
                    parts[e.label].append(correct)
            bar.update(1)
        bar.close()
        return {name: torch.cat(p, dim=1) for name, p in parts.items()}

    def adversarial(
        self,
        spec: AttackSpec,
        surface: nn.Module,
        surface_id: dict[str, Any],
        images: EvalImages,
    ) -> tuple[Callable[[int, Tensor, Tensor], Tensor], str]:
        """A per-batch supplier of adversarial images (from the cache, else by attacking)."""
        components = {
            "kind": "irad.adversarial/1",
            "surface": surface_id,
            # the alias (a preset's name) does not change the images, so it stays out of the key
            "attack": {"name": spec.name, "eps": spec.eps, "params": spec.params},
            "seed": self.config.seed,
            "data": images.fingerprint,
            "n": images.n,
            "batch_size": self.config.batch_size,
            "device": self.device.type,
            "versions": self.versions,
        }
        cache = AdversarialCache(self.cache_dir, components)
        self.caches[cache.key] = cache
        eps = spec.eps / 255.0
        attack: list[Any] = []  # built on first use: a fully cached run builds nothing

        def supply(index: int, x: Tensor, y: Tensor) -> Tensor:
            if self.use_cache:
                cached = cache.load(index, x, y, eps)
                if cached is not None:
                    self.stats["cached_batches"] += 1
                    return cached
            if not attack:
                attack.append(
                    self.backend.build_attack(spec.name, surface, eps=spec.eps, **spec.params)
                )
                config = getattr(attack[0], "config", None)
                config = config() if callable(config) else None
                self.attack_configs[cache.key] = config
                cache.extra_meta["attack_config"] = config
            batch_seed = derive_seed(self.config.seed, "attack", cache.key, index)
            with seeded(batch_seed, self.device):
                if _takes_seed(attack[0]):
                    x_adv = attack[0](x, y, seed=batch_seed)
                else:
                    x_adv = attack[0](x, y)
            if not isinstance(x_adv, Tensor):
                raise InputError(
                    f"attack {spec.label!r} returned {type(x_adv).__name__}, not a tensor"
                )
            x_adv = x_adv.detach().to(self.device, torch.float32)
            problem = check_adversarial(x_adv, x, eps)
            if problem:
                raise InputError(f"attack {spec.label!r} returned invalid images: {problem}")
            self.stats["attack_batches"] += 1
            if self.use_cache:
                cache.save(index, x_adv, y)
            return x_adv

        return supply, cache.key

    def surface_for(
        self, entry: _DefenseEntry | None, eot: int = 1
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The module the attack differentiates through, and its identity for cache keys."""
        threat = self.config.threat
        if entry is None:  # oblivious: the classifier alone, shared by every defense
            return self.classifier, {"threat": "oblivious", "classifier": self.classifier_fp}
        eot = eot if entry.stochastic else 1
        ident = {
            "threat": threat,
            "classifier": self.classifier_fp,
            "defense": entry.fingerprint,
            "eot_samples": eot,
        }
        key = f"{entry.label}|{eot}"
        if key not in self.surfaces:
            self.surfaces[key] = self.backend.attack_surface(
                threat, entry.module, self.classifier, eot_samples=eot
            )
        return self.surfaces[key], ident

    def effective(self, spec: AttackSpec, entry: _DefenseEntry) -> tuple[AttackSpec, int]:
        """The attack as run on ``entry``, and the EOT samples of its surface.

        AutoAttack against a random defense under a white-box threat runs its ``rand`` version
        (unless a version is given); an attack that averages gradients itself (AutoAttack
        ``rand``, EOT-PGD, ``eot_iter > 1``) gets a surface without a second EOT layer.
        """
        if (
            spec.name.lower() == "autoattack"
            and entry.stochastic
            and self.config.threat in WHITE_BOX_THREATS
            and "version" not in spec.params
        ):
            spec = spec.replace(version="rand")
        own_eot = (
            (spec.name.lower() == "autoattack" and spec.params.get("version") == "rand")
            or spec.name.lower() == "eotpgd"
            or int(spec.params.get("eot_iter", 1) or 1) > 1
        )
        return spec, 1 if own_eot else self.config.eot_samples

    def run_attack(
        self,
        spec: AttackSpec,
        entries: Sequence[_DefenseEntry],
        images: EvalImages,
        *,
        blackbox_on_deployed: bool = False,
    ) -> dict[str, tuple[Tensor, str, AttackSpec, int]]:
        """Per-image RA results of ``entries`` under ``spec``.

        Returns ``{label: (correct (draws, N), cache key, spec as run, EOT samples)}``.
        """
        if self.config.threat == "oblivious" and not blackbox_on_deployed:
            surface, ident = self.surface_for(None)
            supply, key = self.adversarial(spec, surface, ident, images)
            result = self.task(spec.label, key, images, entries, supply, spec.label)
            return {label: (bits, key, spec, 1) for label, bits in result.items()}
        out: dict[str, tuple[Tensor, str, AttackSpec, int]] = {}
        for entry in entries:
            run_spec, eot = spec, 1
            if blackbox_on_deployed:
                # Gradient-free: it queries the deployed model, whatever the threat.
                surface: nn.Module = DefendedClassifier(entry.module, self.classifier)
                ident = {
                    "threat": "deployed",
                    "classifier": self.classifier_fp,
                    "defense": entry.fingerprint,
                }
            else:
                run_spec, eot = self.effective(spec, entry)
                surface, ident = self.surface_for(entry, eot)
                eot = ident["eot_samples"]
            supply, key = self.adversarial(run_spec, surface, ident, images)
            result = self.task(
                spec.label, key, images, [entry], supply, f"{spec.label} | {entry.label}"
            )
            out[entry.label] = (result[entry.label], key, run_spec, eot)
        return out


def evaluate_defenses(
    defenses: Mapping[str, Defense] | Sequence[Defense],
    classifier: nn.Module,
    dataset: Any,
    attacks: Sequence[AttackSpec | str],
    threat: str | None = None,
    *,
    config: EvaluationConfig | None = None,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    backend: AttackBackend | None = None,
    metadata: Mapping[str, Any] | None = None,
    **settings: Any,
) -> EvaluationResult:
    """Evaluate defenses in front of one classifier: SA, RA, Avg per attack, worst case, cost.

    Args:
        defenses: ``{label: Defense}`` (labels name the table rows), or a list (labels from
            each defense's ``config()["name"]``).
        classifier: images in [0, 1] -> logits (an :class:`irad.models.classifier.Classifier`).
        dataset: an irad data set (``irad.data.load_dataset``) or ``(images, labels)`` tensors.
        attacks: :class:`AttackSpec` s or strings like ``"pgd:steps=20,alpha=2"`` (ε in /255).
        threat: overrides ``config.threat`` (``oblivious``, ``bpda``, ``bpda-eot``, ``adaptive``).
        config: every other setting (:class:`EvaluationConfig`); ``**settings`` override fields
            of it by name, e.g. ``batch_size=50, seed=1, n=1000``.
        out_dir: where partial results (resume), ``result.json``, ``result.csv`` and
            ``table.md`` go; None keeps everything in memory.
        cache_dir: adversarial-image cache (default ``~/.cache/irad/adversarial`` or
            ``$IRAD_CACHE/adversarial``); ``use_cache=False`` disables it.
        backend: the attack factory and threat models (default: :mod:`irad.attacks`).
        metadata: extra JSON-ready facts recorded with the result (model name, weights path).

    Returns:
        An :class:`EvaluationResult`; also saved to ``out_dir`` when given.

    Example:
        >>> from irad.defenses import build_defense
        >>> result = evaluate_defenses(  # doctest: +SKIP
        ...     {"none": build_defense("none"), "jpeg": build_defense("jpeg", quality=75)},
        ...     classifier, load_dataset("cifar10"), ["pgd:steps=20"], "oblivious",
        ...     n=1000, out_dir="results/jpeg")
        >>> print(result.to_markdown())  # doctest: +SKIP
    """
    started = time.perf_counter()
    cfg = config if config is not None else EvaluationConfig()
    if threat is not None:
        settings["threat"] = threat
    cfg = cfg.replace(**settings) if settings else cfg
    specs = [as_attack_spec(a) for a in attacks]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"the same attack is listed twice: {labels}")
    named = _name_defenses(defenses)
    if not isinstance(classifier, nn.Module):
        raise InputError(f"classifier must be an nn.Module, got {type(classifier).__name__}")
    try:
        device = torch.device(cfg.device)
    except RuntimeError as err:
        raise ConfigError(f"bad device {cfg.device!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {cfg.device!r} requested but CUDA is not available")
    backend = backend or AttackBackend.default()
    if backend.check_spec is not None:
        planned = list(specs)
        if cfg.sanity:
            sc = cfg.sanity_config
            planned += [sc.grid_spec(sc.large_eps, max(sc.steps_grid)), sc.blackbox_spec()]
        for spec in planned:
            backend.check_spec(spec)

    with num_threads(cfg.threads):
        images = EvalImages(dataset, cfg.n)
        classifier = classifier.to(device).eval()
        for module in named.values():
            module.to(device).eval()
        import irad

        versions = {
            "irad": irad.__version__,
            "torch": torch.__version__,
            "torchattacks": _package_version("torchattacks"),
        }
        run = _Run(
            config=cfg,
            classifier=classifier,
            classifier_fp=module_fingerprint(classifier),
            backend=backend,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            use_cache=use_cache,
            store=PartialStore(Path(out_dir) / "partials") if out_dir is not None else None,
            device=device,
            progress=progress,
            versions=versions,
        )
        entries = [
            _DefenseEntry(
                label=label,
                module=module,
                fingerprint=module_fingerprint(module),
                draws=cfg.draws if getattr(module, "stochastic", False) else 1,
                white_box=cfg.threat in WHITE_BOX_THREATS or isinstance(module, Identity),
            )
            for label, module in named.items()
        ]
        timing: dict[str, Any] = {}

        # 1. clean accuracy (SA), per defense
        t0 = time.perf_counter()
        clean_key = digest(
            {
                "task": "clean",
                "classifier": run.classifier_fp,
                "data": images.fingerprint,
                "n": images.n,
                "seed": cfg.seed,
                "batch_size": cfg.batch_size,
                "device": device.type,
                "versions": versions,
            }
        )
        clean = run.task("clean", clean_key, images, entries, None, "clean")
        timing["clean_s"] = round(time.perf_counter() - t0, 3)

        # 2. robust accuracy (RA), per attack
        per_attack: dict[str, dict[str, tuple[Tensor, str, AttackSpec, int]]] = {}
        bar = tqdm(specs, desc=f"attacks [{cfg.threat}]", disable=not progress, unit="attack")
        for spec in bar:
            bar.set_postfix_str(spec.label)
            t0 = time.perf_counter()
            per_attack[spec.label] = run.run_attack(spec, entries, images)
            timing[f"attack_s[{spec.label}]"] = round(time.perf_counter() - t0, 3)
        bar.close()

        # 3. gradients of each attack surface (reported always; a sanity check reads them)
        t0 = time.perf_counter()
        gradients = _gradient_report(run, entries, images)
        timing["gradients_s"] = round(time.perf_counter() - t0, 3)

        # 4. cost of each defense and of the classifier alone
        t0 = time.perf_counter()
        costs, classifier_cost = _costs(run, entries, images)
        timing["cost_s"] = round(time.perf_counter() - t0, 3)

        # 5. assemble, then the sanity checks
        outcomes: dict[str, DefenseOutcome] = {}
        for e in entries:
            attacks_out = {}
            for spec in specs:
                bits, key, run_spec, eot = per_attack[spec.label][e.label]
                attacks_out[spec.label] = AttackOutcome(
                    spec=run_spec,
                    eot_samples=eot,
                    ra=Count.of(bits),
                    cache_key=key,
                    attack_config=run.attack_configs.get(key) or _cached_attack_config(run, key),
                    per_image=encode_bits(bits),
                )
            worst = None
            if len(specs) > 1:
                worst = Count.of(worst_case([per_attack[s.label][e.label][0] for s in specs]))
            config = e.module.config() if hasattr(e.module, "config") else {}
            outcomes[e.label] = DefenseOutcome(
                label=e.label,
                config=config if isinstance(config, dict) else {},
                stochastic=e.stochastic,
                differentiable=bool(getattr(e.module, "differentiable", True)),
                fingerprint=e.fingerprint,
                draws=e.draws,
                sa=Count.of(clean[e.label]),
                attacks=attacks_out,
                worst_case=worst,
                cost=costs.get(e.label),
                gradients=gradients.get(e.label),
                clean_per_image=encode_bits(clean[e.label]),
            )

        t0 = time.perf_counter()
        for e in entries:
            outcomes[e.label].checks, outcomes[e.label].sanity = _sanity(
                run, e, outcomes[e.label], images
            )
        timing["sanity_s"] = round(time.perf_counter() - t0, 3)
        environment = environment_info(device)  # inside: records the thread count used

    timing["total_s"] = round(time.perf_counter() - started, 3)
    timing.update(run.stats)
    warnings = [c.warning_line() for o in outcomes.values() for c in o.checks if c.failed]
    warnings += _setting_warnings(cfg, entries)
    for line in warnings:
        log.warning(line)
    result = EvaluationResult(
        config=cfg,
        attacks=specs,
        defenses=outcomes,
        classifier={
            "name": str(getattr(classifier, "name", type(classifier).__name__)),
            "config": getattr(classifier, "config", None)
            if isinstance(getattr(classifier, "config", None), dict)
            else None,
            "fingerprint": run.classifier_fp,
        },
        dataset=images.info(),
        environment=environment,
        classifier_cost=classifier_cost,
        warnings=warnings,
        timing=timing,
        metadata=dict(metadata or {}),
        randomness={
            "base_seed": cfg.seed,
            "scheme": SEED_SCHEME,
            "draws": {e.label: e.draws for e in entries},
            "eot_samples": {
                e.label: (cfg.eot_samples if e.stochastic else 1)
                for e in entries
                if cfg.threat in ("bpda-eot", "adaptive")
            },
        },
    )
    if out_dir is not None:
        result.save(out_dir)
    return result


# -- helpers ----------------------------------------------------------------------------------
def _name_defenses(defenses: Mapping[str, Defense] | Sequence[Defense]) -> dict[str, Defense]:
    if isinstance(defenses, Mapping):
        named = dict(defenses)
    else:
        named = {}
        for module in defenses:
            cfg = module.config() if hasattr(module, "config") else {}
            base = (
                str(cfg.get("name", type(module).__name__)) if isinstance(cfg, dict) else "defense"
            )
            label, i = base, 2
            while label in named:
                label, i = f"{base}#{i}", i + 1
            named[label] = module
    if not named:
        raise ConfigError("no defense given: pass at least one (e.g. Identity() for 'no defense')")
    for label, module in named.items():
        if not isinstance(module, nn.Module):
            raise InputError(
                f"defense {label!r} must be an nn.Module (irad.defenses.Defense), "
                f"got {type(module).__name__}"
            )
    return named


def _takes_seed(attack: Any) -> bool:
    """Whether ``attack(x, y, seed=...)`` is accepted (irad attacks seed every call)."""
    try:
        return "seed" in inspect.signature(attack.__call__).parameters
    except (TypeError, ValueError):
        return False


def _package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _cached_attack_config(run: _Run, key: str) -> dict[str, Any] | None:
    """The attack's full config from the cache's meta.json (when no batch was attacked now)."""
    cache = run.caches.get(key)
    return cache.read_meta().get("attack_config") if cache is not None and run.use_cache else None


def _gradient_report(
    run: _Run, entries: Sequence[_DefenseEntry], images: EvalImages
) -> dict[str, dict[str, Any]]:
    """Input-gradient statistics of each attack surface on the first images."""
    if run.backend.gradient_stats is None:
        return {}
    x, y = next(iter(images.batches(min(run.config.batch_size, GRADIENT_IMAGES))))
    x, y = x.to(run.device), y.to(run.device)
    out: dict[str, dict[str, Any]] = {}
    shared = None
    for e in entries:
        if run.config.threat == "oblivious":
            if shared is None:
                surface, _ = run.surface_for(None)
                shared = _stats(run, surface, x, y, e)
            out[e.label] = dict(shared, surface="classifier")
        else:
            surface, _ = run.surface_for(e)
            out[e.label] = dict(_stats(run, surface, x, y, e), surface=run.config.threat)
    return out


def _stats(run: _Run, surface: nn.Module, x: Tensor, y: Tensor, e: _DefenseEntry) -> dict[str, Any]:
    with seeded(derive_seed(run.config.seed, "gradients", e.fingerprint), run.device):
        stats = run.backend.gradient_stats(surface, x, y)
    return {
        k: (float(v) if isinstance(v, int | float | Tensor) else v) for k, v in dict(stats).items()
    }


def _costs(
    run: _Run, entries: Sequence[_DefenseEntry], images: EvalImages
) -> tuple[dict[str, CostResult], CostResult | None]:
    cfg = run.config
    if cfg.cost_repeats == 0:
        return {}, None
    xs, total = [], 0
    while total < cfg.cost_batch_size:  # repeat the data when it has fewer images
        for x, _ in images.batches(cfg.cost_batch_size):
            xs.append(x)
            total += x.shape[0]
            if total >= cfg.cost_batch_size:
                break
    batch = torch.cat(xs)[: cfg.cost_batch_size].to(run.device)
    kw = {"repeats": cfg.cost_repeats, "warmup": cfg.cost_warmup, "threads": cfg.threads}
    costs = {e.label: measure_cost(e.module, batch, **kw) for e in entries}
    return costs, measure_cost(run.classifier, batch, **kw)


def _sanity(
    run: _Run, entry: _DefenseEntry, outcome: DefenseOutcome, images: EvalImages
) -> tuple[list[checks.SanityCheck], dict[str, Any] | None]:
    """The checks of one defense; the grid runs reuse the harness (cache, partials, seeds)."""
    sc = run.config.sanity_config
    subset = images.head(sc.n) if sc.n is not None else images

    def attack_ra(spec: AttackSpec, deployed: bool) -> Tensor:
        return run.run_attack(spec, [entry], subset, blackbox_on_deployed=deployed)[entry.label][0]

    return checks.run_checks(
        outcome,
        sc,
        white_box=entry.white_box,
        threat=run.config.threat,
        attack_ra=attack_ra if run.config.sanity else None,
        n=subset.n,
    )


def _setting_warnings(cfg: EvaluationConfig, entries: Sequence[_DefenseEntry]) -> list[str]:
    """Settings that make figures of random defenses unreliable."""
    out = []
    for e in entries:
        if not e.stochastic:
            continue
        if cfg.threat == "bpda":
            out.append(
                f"WARNING [{e.label}] random defense under the bpda threat without EOT: use "
                "--threat bpda-eot (Athalye et al. 2018, §4.1) for a fair attack"
            )
        if cfg.threat in ("bpda-eot", "adaptive") and cfg.eot_samples < 2:
            out.append(
                f"WARNING [{e.label}] random defense attacked with eot_samples={cfg.eot_samples}: "
                "the gradient is one random draw; use more EOT samples"
            )
    return out
