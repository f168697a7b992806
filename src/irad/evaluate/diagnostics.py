"""What a run measures besides SA and RA: input gradients of each attack surface, the cost of
each defense, the sanity checks (Carlini et al. 2019) and settings that make figures unreliable.

Each function takes the :class:`~irad.evaluate.run.EvaluationRun` and reuses its threat model,
seeds, cache and partial results.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from irad.evaluate import sanity as checks
from irad.evaluate.cost import CostResult, measure_cost
from irad.evaluate.results import DefenseOutcome, SanityCheck
from irad.evaluate.run import DefenseEntry, EvaluationRun
from irad.evaluate.seeds import derive_seed
from irad.evaluate.specs import AttackSpec
from irad.utils.seed import seeded

#: Images whose input gradients are inspected per attack surface (enough for the statistics).
GRADIENT_IMAGES = 64


def gradient_report(run: EvaluationRun) -> dict[str, dict[str, Any]]:
    """Input-gradient statistics of each attack surface on the first images."""
    if run.backend.gradient_stats is None:
        return {}
    x, y = next(iter(run.images.batches(min(run.config.batch_size, GRADIENT_IMAGES))))
    x, y = x.to(run.device), y.to(run.device)
    out: dict[str, dict[str, Any]] = {}
    shared = None
    for e in run.entries:
        if not run.threat.white_box:  # one surface for all: the classifier
            if shared is None:
                shared = _stats(run, run.threat.surface(e.module, run.classifier), x, y, e)
            out[e.label] = dict(shared, surface="classifier")
        else:
            surface, _ = run.surface_for(e, 1)
            out[e.label] = dict(_stats(run, surface, x, y, e), surface=run.threat.name)
    return out


def _stats(
    run: EvaluationRun, surface: nn.Module, x: Tensor, y: Tensor, e: DefenseEntry
) -> dict[str, Any]:
    assert run.backend.gradient_stats is not None
    with seeded(derive_seed(run.config.seed, "gradients", e.fingerprint), devices=[run.device]):
        stats = run.backend.gradient_stats(surface, x, y)
    return {
        k: (float(v) if isinstance(v, int | float | Tensor) else v) for k, v in dict(stats).items()
    }


def costs(run: EvaluationRun) -> tuple[dict[str, CostResult], CostResult | None]:
    """Cost of each defense and of the classifier alone (``cost_repeats=0``: none)."""
    cfg = run.config
    if cfg.cost_repeats == 0:
        return {}, None
    xs, total = [], 0
    while total < cfg.cost_batch_size:  # repeat the data when it has fewer images
        for x, _ in run.images.batches(cfg.cost_batch_size):
            xs.append(x)
            total += x.shape[0]
            if total >= cfg.cost_batch_size:
                break
    batch = torch.cat(xs)[: cfg.cost_batch_size].to(run.device)
    kw = {"repeats": cfg.cost_repeats, "warmup": cfg.cost_warmup, "threads": cfg.threads}
    out = {e.label: measure_cost(e.module, batch, **kw) for e in run.entries}
    return out, measure_cost(run.classifier, batch, **kw)


def sanity(
    run: EvaluationRun, entry: DefenseEntry, outcome: DefenseOutcome
) -> tuple[list[SanityCheck], dict[str, Any] | None]:
    """The checks of one defense; the grid runs reuse the run (cache, partials, seeds)."""
    sc = run.config.sanity_config
    subset = run.images.head(sc.n) if sc.n is not None else run.images

    def attack_ra(spec: AttackSpec, deployed: bool) -> Tensor:
        runs = run.run_attack(spec, [entry], subset, on_deployed_model=deployed)
        return runs[entry.label].correct

    return checks.run_checks(
        outcome,
        sc,
        white_box=entry.white_box,
        threat=run.threat.name,
        attack_ra=attack_ra if run.config.sanity else None,
        n=subset.n,
    )


def setting_warnings(run: EvaluationRun) -> list[str]:
    """Settings that make the figures of random defenses unreliable."""
    threat, out = run.threat, []
    for e in run.entries:
        if not e.stochastic:
            continue
        if threat.white_box and not threat.uses_eot:
            fix = f": use --threat {threat.with_eot}" if threat.with_eot else ""
            out.append(
                f"WARNING [{e.label}] random defense under the {threat.name} threat without "
                f"EOT{fix} (Athalye et al. 2018, §4.1) for a fair attack"
            )
        if threat.uses_eot and run.config.eot_samples < 2:
            out.append(
                f"WARNING [{e.label}] random defense attacked with "
                f"eot_samples={run.config.eot_samples}: the gradient is one random draw; use "
                "more EOT samples"
            )
    return out
