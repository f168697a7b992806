"""Robustness evaluation: SA, RA, Avg = (SA + RA) / 2 and cost of defenses under attacks.

The entry point is :func:`evaluate_defenses` (and the ``irad evaluate`` command over it)::

    >>> from irad.data import load_dataset
    >>> from irad.defenses import build_defense
    >>> from irad.evaluate import evaluate_defenses, get_protocol
    >>> from irad.models import load_classifier
    >>> result = evaluate_defenses(  # CIFAR-10 and minutes of attacks   # doctest: +SKIP
    ...     {"none": build_defense("none"), "jpeg": build_defense("jpeg", quality=75)},
    ...     load_classifier("resnet56-4bfd9763.th"), load_dataset("cifar10"),
    ...     ["autoattack", "pgd:steps=20"],
    ...     config=get_protocol("cpu").config("oblivious"), out_dir="results/x")
    >>> result.ra("jpeg", "pgd:steps=20").percent                     # doctest: +SKIP

Modules: :mod:`~irad.evaluate.specs` (what to run), :mod:`~irad.evaluate.config` (the settings
and the named protocols), :mod:`~irad.evaluate.harness` (checks, run folder, then the run),
:mod:`~irad.evaluate.run` (scoring, and attacks as the threat model says),
:mod:`~irad.evaluate.adversarial` and :mod:`~irad.evaluate.cache` (adversarial images, verified
cache, resumable partial results), :mod:`~irad.evaluate.seeds` (how seeds are derived),
:mod:`~irad.evaluate.diagnostics` (gradients, cost, sanity checks), :mod:`~irad.evaluate.folder`
(one evaluation per run folder), :mod:`~irad.evaluate.metrics` (counts, worst case),
:mod:`~irad.evaluate.cost` (timing), :mod:`~irad.evaluate.sanity` (checks that flag a broken
evaluation), :mod:`~irad.evaluate.results` (the figures as data, JSON) and
:mod:`~irad.evaluate.report` (CSV, Markdown); :mod:`~irad.evaluate.reproduce` (the paper's
tables) and :mod:`~irad.evaluate.demo` (``irad demo``).
"""

from irad.attacks.threat import THREAT_MODELS
from irad.evaluate.backend import AttackBackend
from irad.evaluate.config import (
    PROTOCOLS,
    EvaluationConfig,
    Protocol,
    SanityConfig,
    check_threat,
    get_protocol,
    protocol_config,
    protocol_names,
)
from irad.evaluate.cost import CostResult, measure_cost
from irad.evaluate.harness import build_defenses, evaluate_defenses
from irad.evaluate.images import EvalImages, check_classes
from irad.evaluate.metrics import Count, average, worst_case
from irad.evaluate.quality import image_quality, psnr, quality_table, ssim
from irad.evaluate.results import (
    WORST_CASE,
    AttackOutcome,
    DefenseOutcome,
    EvaluationResult,
    SanityCheck,
)
from irad.evaluate.seeds import SEED_SCHEME, derive_seed
from irad.evaluate.specs import (
    AttackSpec,
    attack_presets,
    check_eps,
    parse_spec,
    parse_value,
)

__all__ = [
    "PROTOCOLS",
    "SEED_SCHEME",
    "THREAT_MODELS",
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
    "Protocol",
    "SanityCheck",
    "SanityConfig",
    "attack_presets",
    "average",
    "build_defenses",
    "check_classes",
    "check_eps",
    "check_threat",
    "derive_seed",
    "evaluate_defenses",
    "get_protocol",
    "image_quality",
    "measure_cost",
    "parse_spec",
    "parse_value",
    "protocol_config",
    "protocol_names",
    "psnr",
    "quality_table",
    "ssim",
    "worst_case",
]
