"""The demo: the bundled IRAD in front of the bundled classifier, attacked two ways, one table.

Three rows (no defense, the DISCO-style reconstruction, IRAD) and two threat models:

* **oblivious**: the attack sees the classifier alone; the defense is applied afterwards;
* **adaptive**: the attack differentiates through defense + classifier (both defenses are
  deterministic and differentiable, so real gradients, no BPDA, no EOT are needed).

The adaptive figure is the one that measures robustness; the oblivious one only says how much
of a transferred perturbation the defense removes. ``irad demo`` is a thin command over
:func:`run_demo`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irad.evaluate.config import EvaluationConfig
from irad.evaluate.harness import evaluate_defenses
from irad.evaluate.results import EvaluationResult
from irad.evaluate.specs import as_attack_spec
from irad.utils.io import atomic_write_text
from irad.utils.lock import RunLock


@dataclass
class DemoResult:
    """The two evaluations of the demo and the table that puts them side by side."""

    oblivious: EvaluationResult
    adaptive: EvaluationResult | None
    attack: str
    text: str
    seconds: float

    def to_markdown(self) -> str:
        return self.text


def demo_table(oblivious: EvaluationResult, adaptive: EvaluationResult | None, attack: str) -> str:
    """One row per defense: SA, RA oblivious (and adaptive), their Avg, and the cost."""
    head = ["defense", "SA", f"RA oblivious ({attack})"]
    if adaptive is not None:
        head.append(f"RA adaptive ({attack})")
    head += ["Avg oblivious"] + (["Avg adaptive"] if adaptive is not None else []) + ["ms/img"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, outcome in oblivious.defenses.items():
        sa = oblivious.sa(label).percent
        ra_o = oblivious.ra(label, attack).percent
        row = [label, _pct(sa), _pct(ra_o)]
        ra_a = None
        if adaptive is not None:
            # no defense under the adaptive threat is the oblivious attack again
            ra_a = adaptive.ra(label, attack).percent if label in adaptive.defenses else ra_o
            row.append(_pct(ra_a))
        row.append(_pct((sa + ra_o) / 2))
        if ra_a is not None:
            row.append(_pct((sa + ra_a) / 2))
        cost = outcome.cost
        row.append(f"{cost.ms_per_image:.2f}" if cost is not None else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{x:.1f}"


def run_demo(
    dataset: Any,
    *,
    n: int = 200,
    attack: str = "apgd:steps=20",
    classifier: str = "cifar10",
    weights: str = "cifar10",
    adaptive: bool = True,
    out_dir: str | Path = "results/demo",
    overwrite: bool = False,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 100,
    threads: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    log: Any = None,
    diffusion: str | None = None,
    diffusion_t: int = 20,
    eot_samples: int = 4,
) -> DemoResult:
    """Evaluate the bundled IRAD and its DISCO-style reconstruction in front of a classifier.

    Writes ``out_dir/oblivious``, ``out_dir/adaptive`` (each a full evaluation run folder) and
    ``out_dir/demo.md`` (the table).

    Args:
        dataset: CIFAR-10 test images (an irad data set or ``(images, labels)``).
        n: the first ``n`` images (refused when the data set has fewer).
        attack: the attack spec of both threat models.
        classifier, weights: classifier and IRAD checkpoints (``"cifar10"``: the bundled ones).
        adaptive: also run the adaptive attack through each defense.
        diffusion: a diffusion checkpoint (``"cifar10"``: the bundled one) to add the rows
            DiffPure and IRAD+DiffPure at ``diffusion_t`` (reverse chain of ``t // 5`` steps, the
            CPU protocol's); ``None``: no diffusion rows. Both are
            random: the adaptive attack averages ``eot_samples`` draws per gradient, and SA and
            RA are scored over 3 fresh draws.
        log: called with one line before the work starts (e.g. ``print``), or None.

    Example:
        >>> result = run_demo(load_dataset("cifar10", "test"), n=20)  # doctest: +SKIP
        >>> print(result.to_markdown())  # doctest: +SKIP
    """
    from irad.defenses import IRAD, Identity, ImplicitReconstruction
    from irad.models import load_classifier

    started = time.perf_counter()
    spec = as_attack_spec(attack)
    clf = load_classifier(classifier)
    irad = IRAD.from_pretrained(weights)
    defenses = {
        "none": Identity(),
        "DISCO-style (no sampling)": ImplicitReconstruction.from_pretrained(weights),
        "IRAD": irad,
    }
    if diffusion is not None:
        # No seed of their own: they draw from torch's global RNG, which the harness seeds per
        # batch and per draw, so a resumed run redraws the same noise.
        from irad.defenses import build_defense

        # The CPU protocol's respaced reverse chain: t / 5 steps (docs/diffusion.md).
        steps = max(1, diffusion_t // 5)
        defenses[f"DiffPure (t={diffusion_t})"] = build_defense(
            "diffpure", model=diffusion, t=diffusion_t, reverse_steps=steps
        )
        defenses[f"IRAD+DiffPure (t={diffusion_t})"] = build_defense(
            "irad+diffpure", t=diffusion_t, diffusion=diffusion, irad=irad, reverse_steps=steps
        )
    config = EvaluationConfig(
        n=n,
        seed=seed,
        batch_size=batch_size,
        cost_batch_size=min(batch_size, n),
        cost_repeats=2,
        device=device,
        threads=threads,
        protocol="demo",
        eot_samples=eot_samples,
        draws=3 if diffusion is not None else 1,
    )
    meta: dict[str, Any] = {
        "command": "demo",
        "classifier": classifier,
        "weights": weights,
        "diffusion": diffusion,
    }
    if log is not None:
        log(
            f"irad demo: {clf.config.get('arch')} ({classifier}) + IRAD ({irad.preset} preset, "
            f"{weights}) on the first {n} CIFAR-10 test images, {spec.label}, seed {seed}"
        )
    out = Path(out_dir)
    common: dict[str, Any] = {
        "cache_dir": cache_dir,
        "progress": progress,
        "metadata": meta,
        "overwrite": overwrite,
    }
    with RunLock(out, purpose="irad demo"):
        oblivious = evaluate_defenses(
            defenses, clf, dataset, [spec], "oblivious", config=config,
            out_dir=out / "oblivious", **common,
        )  # fmt: skip
        through = None
        if adaptive:
            # "none" under the adaptive threat is the oblivious attack again; skip the repeat.
            through = evaluate_defenses(
                {k: v for k, v in defenses.items() if k != "none"}, clf, dataset, [spec],
                "adaptive", config=config.replace(cost_repeats=0), out_dir=out / "adaptive",
                **common,
            )  # fmt: skip
        seconds = time.perf_counter() - started
        text = (
            f"{demo_table(oblivious, through, spec.label)}\n\n"
            f"{n} CIFAR-10 test images, L∞ ε = {spec.eps:g}/255, {spec.label}, seed {seed}; "
            f"classifier {classifier}, IRAD weights {weights}; {seconds:.0f} s.\n"
            "Oblivious: the attack sees the classifier alone. Adaptive: it differentiates "
            "through defense + classifier (the real measure of robustness).\n"
        )
        atomic_write_text(out / "demo.md", text)
    return DemoResult(oblivious, through, spec.label, text, seconds)
