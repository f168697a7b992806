"""The evaluation harness: SA, RA, Avg and cost of several defenses under a list of attacks.

:func:`evaluate_defenses` checks everything it is given before any work (attack specs, devices,
that the data's labels mean the classifier's outputs), takes the run folder (a lock, and a
refusal to mix another configuration into it), and hands the work to
:class:`~irad.evaluate.run.EvaluationRun`. See :mod:`irad.evaluate.run` for how each threat model
is run and how seeds are derived.

Under ``torchrun`` (``WORLD_SIZE > 1``) the same call runs as one shard of the job: it joins the
process group (Gloo on CPU, NCCL on GPUs, one GPU per process), rank 0 takes the run folder, every
process computes its share of the batches (:mod:`irad.evaluate.shards`), the results are merged,
and rank 0 times the costs and writes the files. Every process returns the merged result, equal
image for image to a one-process run's. See ``docs/evaluation.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from torch import nn
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
from irad.evaluate.run import AttackRun, DefenseEntry, EvaluationRun, Scores
from irad.evaluate.seeds import SEED_SCHEME
from irad.evaluate.shards import Shards
from irad.evaluate.specs import AttackSpec, as_attack_spec, format_spec, parse_spec
from irad.train.distributed import (
    WORK_TIMEOUT,
    context_from_env,
    local_device,
    setup_distributed,
)
from irad.utils.env import environment_info, resolve_device
from irad.utils.lock import RunLock

log = logging.getLogger(__name__)

#: How long a process of a ``torchrun`` evaluation waits for the others at a merge: shards of
#: an attack can finish hours apart (a crashed process makes ``torchrun`` stop the others).
DISTRIBUTED_TIMEOUT = WORK_TIMEOUT


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
    shards: Shards | None = None,
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
            ``result.csv``, ``per_image.csv`` and ``table.md``; None keeps everything in memory.
            It is locked while the run uses it (a second run into it fails at once with
            :class:`irad.utils.lock.RunFolderBusy`).
        overwrite: replace the results of an evaluation with other settings in ``out_dir``
            (refused by default, naming the settings that differ).
        cache_dir: adversarial-image cache (default ``~/.cache/irad/adversarial`` or
            ``$IRAD_CACHE/adversarial``); ``use_cache=False`` disables it.
        backend: the attack factory (default: :mod:`irad.attacks`).
        metadata: extra JSON-ready facts recorded with the result (model name, weights path).
        shards: this process's share of the batches; by default taken from ``torchrun``'s
            environment (``WORLD_SIZE``, ``RANK``), joining its process group: every process
            of the job calls this function with the same arguments. Without ``torchrun``: all
            batches, one process.

    Returns:
        An :class:`EvaluationResult` (on every process of a ``torchrun`` job); also saved to
        ``out_dir`` (by rank 0) when given.

    Example:
        >>> from irad.data import ImageDataset
        >>> from irad.defenses import build_defense
        >>> from irad.models import load_classifier
        >>> images = ImageDataset(  # 4 random images, a stand-in for load_dataset("cifar10")
        ...     torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8), torch.arange(4))
        >>> result = evaluate_defenses(
        ...     {"none": build_defense("none"), "jpeg": build_defense("jpeg", quality=75)},
        ...     load_classifier("cifar10"), images, ["pgd:steps=2"], "oblivious",
        ...     n=4, out_dir="results/jpeg")
        >>> result.ra("jpeg", "pgd:steps=2").total
        4
        >>> sorted(p.name for p in Path("results/jpeg").iterdir())
        ['partials', 'per_image.csv', 'result.csv', 'result.json', 'run.json', 'table.md']
        >>> print(result.to_markdown())
        # Robustness evaluation: oblivious threat
        ...
        | Defense | SA | RA | Avg | Cost (ms/img) |
        ...
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
    context = context_from_env()
    if shards is None and context.is_distributed:
        device = local_device(device, context)
        context = setup_distributed(device, timeout=DISTRIBUTED_TIMEOUT, until_exit=True)
        shards = Shards.from_context(context)
    shards = shards or Shards()
    backend = backend or AttackBackend.default()
    if backend.check_spec is not None:
        planned = list(specs)
        if cfg.sanity:
            sc = cfg.sanity_config
            planned += [sc.grid_spec(sc.large_eps, max(sc.steps_grid)), sc.blackbox_spec()]
        for spec in planned:
            backend.check_spec(spec)

    folder = Path(out_dir) if out_dir is not None else None
    with ExitStack() as stack:
        if folder is not None:
            # Rank 0 holds the folder for the whole job; the others write their partial
            # results into the folder it holds (an error there stops every rank).
            def take_folder() -> None:
                stack.enter_context(RunLock(folder, purpose="irad evaluate"))

            shards.on_main(take_folder)
        stack.enter_context(num_threads(cfg.threads))
        return _evaluate(
            cfg,
            specs,
            labels,
            named,
            classifier,
            dataset,
            device=device,
            backend=backend,
            folder=folder,
            overwrite=overwrite,
            cache_dir=cache_dir,
            use_cache=use_cache,
            progress=progress,
            metadata=metadata,
            shards=shards,
        )


def _evaluate(
    cfg: EvaluationConfig,
    specs: Sequence[AttackSpec],
    labels: Sequence[str],
    named: Mapping[str, Defense],
    classifier: nn.Module,
    dataset: Any,
    *,
    device: Any,
    backend: AttackBackend,
    folder: Path | None,
    overwrite: bool,
    cache_dir: str | Path | None,
    use_cache: bool,
    progress: bool,
    metadata: Mapping[str, Any] | None,
    shards: Shards,
) -> EvaluationResult:
    """The run itself, inside the run folder's lock (taken by rank 0)."""
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
        progress=progress and shards.is_main,
        shards=shards,
    )
    if folder is not None:
        identity = run_identity(
            cfg.to_dict(),
            labels,
            {e.label: e.fingerprint for e in run.entries},
            run.classifier_fp,
            {"fingerprint": images.fingerprint, "n": images.n},
        )
        shards.on_main(lambda: claim_run_folder(folder, identity, overwrite=overwrite))
    result = _execute(run, specs, metadata)
    if shards.is_main:
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
    # Measured by rank 0 alone (the others wait, so the timings are not disturbed).
    gradients = timed(
        "gradients_s", lambda: run.shards.on_main(lambda: diagnostics.gradient_report(run))
    )
    costs, classifier_cost = timed(
        "cost_s", lambda: run.shards.on_main(lambda: diagnostics.costs(run))
    )
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
    environment["processes"] = run.shards.info()
    timing["total_s"] = round(time.perf_counter() - started, 3)
    timing.update(run.shards.total(run.stats))

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
        labels=run.images.labels(),
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
    clean: Scores,
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
            seed_key=r.seed_key,
            per_image=encode_bits(r.correct),
            predicted=r.predicted.tolist(),
        )
    worst = worst_bits = None
    if len(specs) > 1:
        worst_bits = worst_case([per_attack[s.label][e.label].correct for s in specs])
        worst = Count.of(worst_bits)
    config = e.module.config() if hasattr(e.module, "config") else {}
    return DefenseOutcome(
        label=e.label,
        config=config if isinstance(config, dict) else {},
        stochastic=e.stochastic,
        differentiable=bool(getattr(e.module, "differentiable", True)),
        fingerprint=e.fingerprint,
        draws=e.draws,
        sa=Count.of(clean.correct),
        attacks=attacks,
        worst_case=worst,
        worst_case_per_image=[] if worst_bits is None else encode_bits(worst_bits),
        cost=costs.get(e.label),
        gradients=gradients.get(e.label),
        clean_per_image=encode_bits(clean.correct),
        clean_predicted=clean.predicted.tolist(),
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
