"""The evaluation harness: SA, RA, Avg and cost of several defenses under a list of attacks.

:func:`evaluate_defenses` checks everything it is given before any work (attack specs, devices,
that the data's labels mean the classifier's outputs), takes the run folder (a lock, and a
refusal to mix another configuration into it), and hands the work to
:class:`~irad.evaluate.run.EvaluationRun`. See :mod:`irad.evaluate.run` for how each threat model
is run and how seeds are derived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from tqdm.auto import tqdm

from irad.defenses.base import Defense
from irad.errors import ConfigError, InputError
from irad.evaluate import diagnostics
from irad.evaluate.backend import AttackBackend
from irad.evaluate.cache import PartialStore
from irad.evaluate.config import EvaluationConfig
from irad.evaluate.cost import CostResult, num_threads
from irad.evaluate.folder import claim_run_folder, run_identity
from irad.evaluate.images import EvalImages, check_classes
from irad.evaluate.metrics import Count, encode_bits, worst_case
from irad.evaluate.results import AttackOutcome, DefenseOutcome, EvaluationResult
from irad.evaluate.run import AttackRun, DefenseEntry, EvaluationRun
from irad.evaluate.seeds import SEED_SCHEME
from irad.evaluate.specs import AttackSpec, as_attack_spec, format_spec, parse_spec
from irad.utils.env import environment_info, resolve_device
from irad.utils.lock import RunLock

log = logging.getLogger(__name__)


def evaluate_defenses(
    defenses: Mapping[str, Defense] | Sequence[Defense],
    classifier: nn.Module,
    dataset: Any,
    attacks: Sequence[AttackSpec | str],
    threat: str | None = None,
    *,
    config: EvaluationConfig | None = None,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
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
        dataset: an irad data set (``irad.data.load_dataset``) or ``(images, labels)`` tensors;
            its labels must mean the classifier's outputs (refused otherwise, see
            :func:`irad.evaluate.images.check_classes`).
        attacks: :class:`AttackSpec` s or strings like ``"pgd:steps=20,alpha=2"`` (ε in /255).
        threat: overrides ``config.threat`` (``oblivious``, ``bpda``, ``bpda-eot``, ``adaptive``;
            see :mod:`irad.attacks.threat`).
        config: every other setting (:class:`EvaluationConfig`, e.g.
            ``get_protocol("cpu").config(threat)``); ``**settings`` override fields of it by
            name, e.g. ``batch_size=50, seed=1, n=1000``.
        out_dir: the run folder: partial results (resume), ``run.json``, ``result.json``,
            ``result.csv`` and ``table.md``; None keeps everything in memory. It is locked while
            the run uses it (a second run into it fails at once with
            :class:`irad.utils.lock.RunFolderBusy`).
        overwrite: replace the results of an evaluation with other settings in ``out_dir``
            (refused by default, naming the settings that differ).
        cache_dir: adversarial-image cache (default ``~/.cache/irad/adversarial`` or
            ``$IRAD_CACHE/adversarial``); ``use_cache=False`` disables it.
        backend: the attack factory (default: :mod:`irad.attacks`).
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
    device = resolve_device(cfg.device)
    backend = backend or AttackBackend.default()
    if backend.check_spec is not None:
        planned = list(specs)
        if cfg.sanity:
            sc = cfg.sanity_config
            planned += [sc.grid_spec(sc.large_eps, max(sc.steps_grid)), sc.blackbox_spec()]
        for spec in planned:
            backend.check_spec(spec)

    folder = Path(out_dir) if out_dir is not None else None
    lock = RunLock(folder, purpose="irad evaluate") if folder is not None else nullcontext()
    with lock, num_threads(cfg.threads):
        images = EvalImages(dataset, cfg.n)
        classifier = classifier.to(device).eval()
        for module in named.values():
            module.to(device).eval()
        check_classes(images, classifier)
        run = EvaluationRun(
            cfg,
            classifier,
            named,
            images,
            backend=backend,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
            use_cache=use_cache,
            store=PartialStore(folder / "partials") if folder is not None else None,
            device=device,
            progress=progress,
        )
        if folder is not None:
            identity = run_identity(
                cfg.to_dict(),
                labels,
                {e.label: e.fingerprint for e in run.entries},
                run.classifier_fp,
                {"fingerprint": images.fingerprint, "n": images.n},
            )
            claim_run_folder(folder, identity, overwrite=overwrite)
        result = _execute(run, specs, metadata)
        for line in result.warnings:
            log.warning(line)
        if folder is not None:
            result.save(folder)
    return result


def _execute(
    run: EvaluationRun, specs: Sequence[AttackSpec], metadata: Mapping[str, Any] | None
) -> EvaluationResult:
    """The steps of a run in order (clean accuracy, attacks, gradients, cost, sanity checks),
    assembled into the result."""
    started = time.perf_counter()
    timing: dict[str, Any] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = step()
        timing[name] = round(time.perf_counter() - t0, 3)
        return out

    clean = timed("clean_s", run.clean)
    per_attack: dict[str, dict[str, AttackRun]] = {}
    bar = tqdm(specs, desc=f"attacks [{run.threat.name}]", disable=not run.progress, unit="attack")
    for spec in bar:
        bar.set_postfix_str(spec.label)
        per_attack[spec.label] = timed(
            f"attack_s[{spec.label}]", lambda s=spec: run.run_attack(s, run.entries)
        )
    bar.close()
    gradients = timed("gradients_s", lambda: diagnostics.gradient_report(run))
    costs, classifier_cost = timed("cost_s", lambda: diagnostics.costs(run))
    outcomes = {
        e.label: _outcome(run, e, specs, clean[e.label], per_attack, costs, gradients)
        for e in run.entries
    }
    t0 = time.perf_counter()
    for e in run.entries:
        outcomes[e.label].checks, outcomes[e.label].sanity = diagnostics.sanity(
            run, e, outcomes[e.label]
        )
    timing["sanity_s"] = round(time.perf_counter() - t0, 3)
    environment = environment_info(run.device)  # inside the run: records the threads used
    timing["total_s"] = round(time.perf_counter() - started, 3)
    timing.update(run.stats)

    warnings = [c.warning_line() for o in outcomes.values() for c in o.checks if c.failed]
    warnings += diagnostics.setting_warnings(run)
    warnings += run.cache_problems
    config = getattr(run.classifier, "config", None)
    return EvaluationResult(
        config=run.config,
        attacks=list(specs),
        defenses=outcomes,
        classifier={
            "name": str(getattr(run.classifier, "name", type(run.classifier).__name__)),
            "config": config if isinstance(config, dict) else None,
            "fingerprint": run.classifier_fp,
        },
        dataset=run.images.info(),
        environment=environment,
        classifier_cost=classifier_cost,
        warnings=warnings,
        timing=timing,
        metadata=dict(metadata or {}),
        randomness={
            "base_seed": run.config.seed,
            "scheme": SEED_SCHEME,
            "batch_size": run.config.batch_size,
            "batches": [list(r) for r in run.images.ranges(run.config.batch_size)],
            "draws": {e.label: e.draws for e in run.entries},
        },
    )


def _outcome(
    run: EvaluationRun,
    e: DefenseEntry,
    specs: Sequence[AttackSpec],
    clean: Tensor,
    per_attack: Mapping[str, Mapping[str, AttackRun]],
    costs: Mapping[str, CostResult],
    gradients: Mapping[str, dict[str, Any]],
) -> DefenseOutcome:
    """Every figure of one defense."""
    attacks = {}
    for spec in specs:
        r = per_attack[spec.label][e.label]
        attacks[spec.label] = AttackOutcome(
            spec=r.spec,
            ra=Count.of(r.correct),
            eot_samples=r.eot_samples,
            adapted=r.adapted,
            cache_key=r.cache_key,
            attack_config=run.attack_config(r.cache_key),
            seeds=r.seeds,
            per_image=encode_bits(r.correct),
        )
    worst = None
    if len(specs) > 1:
        worst = Count.of(worst_case([per_attack[s.label][e.label].correct for s in specs]))
    config = e.module.config() if hasattr(e.module, "config") else {}
    return DefenseOutcome(
        label=e.label,
        config=config if isinstance(config, dict) else {},
        stochastic=e.stochastic,
        differentiable=bool(getattr(e.module, "differentiable", True)),
        fingerprint=e.fingerprint,
        draws=e.draws,
        sa=Count.of(clean),
        attacks=attacks,
        worst_case=worst,
        cost=costs.get(e.label),
        gradients=gradients.get(e.label),
        clean_per_image=encode_bits(clean),
    )


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


def build_defenses(specs: Sequence[str]) -> dict[str, Defense]:
    """Defenses from spec strings (``"jpeg:quality=75"``), labelled by their canonical spec.

    Raises:
        ConfigError: an unknown defense or parameter, or the same defense twice.

    Example:
        >>> list(build_defenses(["none", "jpeg:quality=75"]))
        ['none', 'jpeg:quality=75']
    """
    from irad.defenses import build_defense_spec

    out: dict[str, Defense] = {}
    for text in specs:
        label = ">".join(format_spec(*parse_spec(part)) for part in text.split(">"))
        if label in out:
            raise ConfigError(f"defense {label!r} is given twice")
        out[label] = build_defense_spec(text)
    return out
