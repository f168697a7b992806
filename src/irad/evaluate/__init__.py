"""Robustness evaluation: SA, RA, Avg = (SA + RA) / 2 and cost of defenses under attacks.

The entry point is :func:`evaluate_defenses` (and the ``irad evaluate`` command over it)::

    >>> from irad.evaluate import evaluate_defenses, EvaluationConfig
    >>> result = evaluate_defenses(                                   # doctest: +SKIP
    ...     {"none": build_defense("none"), "jpeg": build_defense("jpeg", quality=75)},
    ...     load_classifier("resnet56-4bfd9763.th"), load_dataset("cifar10"),
    ...     ["autoattack", "pgd:steps=20"], "oblivious",
    ...     config=EvaluationConfig.cpu_protocol(), out_dir="results/x")
    >>> result.ra("jpeg", "pgd:steps=20").percent                     # doctest: +SKIP

Modules: :mod:`~irad.evaluate.specs` (what to run), :mod:`~irad.evaluate.harness` (running it),
:mod:`~irad.evaluate.cache` (adversarial images and resumable partial results),
:mod:`~irad.evaluate.metrics` (counts, worst case), :mod:`~irad.evaluate.cost` (timing),
:mod:`~irad.evaluate.sanity` (checks that flag a broken evaluation) and
:mod:`~irad.evaluate.report` (JSON, CSV, Markdown).
"""

from irad.evaluate.cost import CostResult, measure_cost
from irad.evaluate.harness import AttackBackend, EvalImages, derive_seed, evaluate_defenses
from irad.evaluate.metrics import Count, average, worst_case
from irad.evaluate.quality import image_quality, psnr, quality_table, ssim
from irad.evaluate.report import (
    WORST_CASE,
    AttackOutcome,
    DefenseOutcome,
    EvaluationResult,
)
from irad.evaluate.sanity import SanityCheck
from irad.evaluate.specs import (
    THREATS,
    AttackSpec,
    EvaluationConfig,
    SanityConfig,
    attack_presets,
    check_threat,
    parse_spec,
    parse_value,
)

__all__ = [
    "THREATS",
    "WORST_CASE",
    "AttackBackend",
    "AttackOutcome",
    "AttackSpec",
    "CostResult",
    "Count",
    "DefenseOutcome",
    "EvalImages",
    "EvaluationConfig",
    "EvaluationResult",
    "SanityCheck",
    "SanityConfig",
    "attack_presets",
    "average",
    "check_threat",
    "derive_seed",
    "evaluate_defenses",
    "image_quality",
    "measure_cost",
    "parse_spec",
    "parse_value",
    "psnr",
    "quality_table",
    "ssim",
    "worst_case",
]
