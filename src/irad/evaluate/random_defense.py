"""Evaluating a random defense the way a strict reviewer would (Athalye et al. 2018; Croce 2022).

Three things set a random defense (DiffPure, IRAD+DiffPure, randomization) apart:

* the attack must see the defense's expectation: it differentiates through the whole chain with
  EOT (``attack_surface("adaptive", ..., eot_samples=k)``);
* the figure must come with evidence that the attack has converged: RA against attack steps and
  EOT samples (:func:`convergence_study`), reported only where the curve has levelled off;
* the defense's own randomness is re-drawn when scoring: each adversarial image is classified
  under several independent draws (:func:`score_under_redraws`); the report gives the mean ± std
  over the draws and the per-image worst case (an image counts as robust only if every draw
  classifies it correctly).

PGD here is the L∞ attack with a uniform random start and step ``alpha``, cross-entropy on the
EOT-averaged logits, the iterate kept after every step (no "best so far" selection): the
iterate after ``k`` steps of a long run is exactly the result of a ``k``-step run, so one run of
``max(steps)`` gives the whole steps curve.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.checkpoint import checkpoint_paths, load_state, save_state
from irad.errors import InputError
from irad.evaluate.cost import synchronize
from irad.evaluate.intervals import wilson_interval  # re-exported (moved there)
from irad.evaluate.specs import digest
from irad.utils.seed import seeded


@contextmanager
def redrawn(defense: nn.Module, seed: int) -> Iterator[None]:
    """Run ``defense`` with its randomness restarted at ``seed``; restored afterwards.

    Modules with a ``reseed(seed)`` method and a ``generator`` (e.g.
    :class:`irad.defenses.DiffPure` built with a seed) are reseeded, each with its own offset;
    modules drawing from torch's global RNG get it seeded inside a forked RNG state. The
    caller's RNG and the modules' own generators are left as they were.
    """
    saved = []
    tensors = [*defense.parameters(), *defense.buffers()]
    devices = sorted({str(v.device) for v in tensors if v.device.type == "cuda"})
    with seeded(seed, devices=devices):  # CUDA streams forked too: restored afterwards
        try:
            for offset, module in enumerate(defense.modules()):
                if callable(getattr(module, "reseed", None)):
                    generator = getattr(module, "generator", None)
                    state = generator.get_state() if generator is not None else None
                    saved.append((module, getattr(module, "seed", None), generator, state))
                    module.reseed(seed * 1009 + offset)
            yield
        finally:
            for module, old_seed, generator, state in saved:
                module.seed, module.generator = old_seed, generator
                if generator is not None:
                    generator.set_state(state)


@torch.no_grad()
def score_under_redraws(
    defense: nn.Module,
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    seeds: Sequence[int] = (1001, 1002, 1003),
    *,
    batch_size: int = 100,
) -> Tensor:
    """``(len(seeds), N)`` bool: is image ``i`` classified correctly under draw ``s``?

    Each draw restarts the defense's randomness at its seed (:func:`redrawn`), so the scores are
    reproducible and the draws are independent of the attack's.
    """
    if len(seeds) < 1:
        raise InputError("score_under_redraws needs at least one seed")
    rows = []
    for seed in seeds:
        correct = []
        with redrawn(defense, seed):
            for s in range(0, x.shape[0], batch_size):
                logits = classifier(defense(x[s : s + batch_size]))
                correct.append(logits.argmax(1) == y[s : s + batch_size])
        rows.append(torch.cat(correct))
    return torch.stack(rows)


def summarize_draws(correct: Tensor) -> dict[str, Any]:
    """Mean ± std (over draws) of the accuracy in %, the per-image worst case, and the 95 %
    Wilson interval of the worst case (binomial over images)."""
    per_draw = correct.float().mean(1) * 100
    worst = correct.all(0)
    n = correct.shape[1]
    low, high = wilson_interval(int(worst.sum()), n)
    return {
        "mean": float(per_draw.mean()),
        "std": float(per_draw.std(unbiased=True)) if correct.shape[0] > 1 else 0.0,
        "per_draw": [round(float(v), 2) for v in per_draw],
        "worst_case": float(worst.float().mean() * 100),
        "worst_case_ci95": [round(low, 2), round(high, 2)],
        "n": n,
        "draws": correct.shape[0],
    }


def eot_pgd_iterates(
    surface: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 20,
    keep: Sequence[int] = (),
    generator: torch.Generator | None = None,
) -> dict[int, Tensor]:
    """L∞ PGD on ``surface`` (an EOT surface for random defenses); the iterates after the steps
    in ``keep`` (and after ``steps``), ``{k: x_adv}``."""
    keep_at = {int(k) for k in keep if 0 < int(k) <= steps} | {steps}
    start = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x) * eps
    x_adv = (x + start).clamp(0, 1).detach()
    kept: dict[int, Tensor] = {}
    for k in range(1, steps + 1):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(surface(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + alpha * grad.sign()
            x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(0, 1)
        x_adv = x_adv.detach()
        if k in keep_at:
            kept[k] = x_adv.clone()
    return kept


@dataclass
class ConvergencePoint:
    """RA after ``steps`` steps of PGD with ``eot`` EOT samples, scored over re-drawn seeds."""

    steps: int
    eot: int
    ra: dict[str, Any]
    seconds: float


@dataclass
class ConvergenceStudy:
    """RA against attack steps (at a fixed EOT) and against EOT samples (at fixed steps)."""

    defense: dict[str, Any]
    n: int
    eps: float
    alpha: float
    sa: dict[str, Any]
    points: list[ConvergencePoint] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def levelled_off(self, tolerance: float = 5.0) -> dict[str, bool | None]:
        """Whether the last two points of each curve differ by at most ``tolerance`` points of
        worst-case RA (a curve that still falls means a stronger attack is needed); ``None`` for
        a curve with fewer than two points (nothing tested)."""
        out: dict[str, bool | None] = {}
        for axis, fixed in (("steps", "eot"), ("eot", "steps")):
            value = self.settings[f"fixed_{fixed}"]
            curve = sorted(
                (getattr(p, axis), p.ra["worst_case"])
                for p in self.points
                if getattr(p, fixed) == value
            )
            out[axis] = None if len(curve) < 2 else abs(curve[-1][1] - curve[-2][1]) <= tolerance
        return out

    def to_markdown(self) -> str:
        lines = [
            f"SA (mean ± std over {self.sa['draws']} draws): {self.sa['mean']:.1f} ± "
            f"{self.sa['std']:.1f} %, worst case {self.sa['worst_case']:.1f} %",
            "",
            "| PGD steps | EOT samples | RA mean ± std (%) | RA worst case (%) | 95 % CI | s |",
            "|---:|---:|---:|---:|---|---:|",
        ]
        for p in sorted(self.points, key=lambda p: (p.eot, p.steps)):
            lo, hi = p.ra["worst_case_ci95"]
            lines.append(
                f"| {p.steps} | {p.eot} | {p.ra['mean']:.1f} ± {p.ra['std']:.1f} | "
                f"{p.ra['worst_case']:.1f} | [{lo:.1f}, {hi:.1f}] | {p.seconds:.0f} |"
            )
        flat = {
            k: "not tested (one point)" if v is None else str(v)
            for k, v in self.levelled_off().items()
        }
        lines += [
            "",
            f"levelled off (last two points within 5 points): steps {flat['steps']}, "
            f"EOT {flat['eot']}",
        ]
        return "\n".join(lines)


def convergence_study(
    defense: nn.Module,
    classifier: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    steps: Sequence[int] = (10, 20, 50),
    eot: Sequence[int] = (1, 4, 16),
    fixed_eot: int = 4,
    fixed_steps: int = 20,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    score_seeds: Sequence[int] = (1001, 1002, 1003),
    seed: int = 0,
    batch_size: int = 100,
    progress: Any = None,
    run_dir: str | Path | None = None,
) -> ConvergenceStudy:
    """RA of ``defense`` + ``classifier`` under adaptive EOT-PGD, along two axes.

    One run of ``max(steps)`` steps at ``fixed_eot`` gives the steps curve; one run of
    ``fixed_steps`` steps per other EOT value gives the EOT curve. Every adversarial image is
    scored under the re-drawn ``score_seeds``.

    Args:
        defense: the (random) defense; ``attack_surface("adaptive")`` differentiates through it.
        classifier: images in [0, 1] -> logits.
        x, y: the images (already the chosen subset) and labels.
        steps, eot: the two axes; ``fixed_eot`` / ``fixed_steps``: where the other axis is cut.
        eps, alpha: L∞ budget and PGD step (fractions of 1, e.g. 8/255).
        score_seeds: the defense's draws when scoring.
        seed: seeds the attack (random start and the defense's draws during the attack).
        progress: optional callable ``progress(message)``.
        run_dir: where each finished attack run's images are kept (safetensors, written
            atomically); a rerun with the same settings reuses them, so a killed study resumes
            at the run it was in.
    """
    from irad.attacks.threat import attack_surface

    if fixed_eot not in eot:
        eot = (*eot, fixed_eot)
    if fixed_steps not in steps:
        steps = (*steps, fixed_steps)
    sa = summarize_draws(score_under_redraws(defense, classifier, x, y, score_seeds))
    study = ConvergenceStudy(
        defense=dict(getattr(defense, "config", lambda: {"name": type(defense).__name__})()),
        n=x.shape[0],
        eps=eps,
        alpha=alpha,
        sa=sa,
        settings={
            "steps": list(steps),
            "eot": list(eot),
            "fixed_eot": fixed_eot,
            "fixed_steps": fixed_steps,
            "score_seeds": list(score_seeds),
            "seed": seed,
            "attack": "L-inf PGD, uniform random start, CE on EOT-averaged logits, last iterate",
        },
    )
    runs = [(fixed_eot, max(steps), sorted(steps))]
    runs += [(k, fixed_steps, [fixed_steps]) for k in sorted(eot) if k != fixed_eot]
    images = hashlib.sha256(x.detach().cpu().numpy().tobytes()).hexdigest()
    key = digest(
        {**study.settings, "defense": study.defense, "eps": eps, "alpha": alpha,
         "images": images, "labels": y.tolist()}
    )  # fmt: skip
    for k, n_steps, keep in runs:
        surface = attack_surface("adaptive", defense, classifier, eot_samples=k)
        started = time.perf_counter()
        kept: dict[int, list[Tensor]] = {s: [] for s in keep}
        stored = None if run_dir is None else Path(run_dir) / f"{key[:16]}-eot{k}-steps{n_steps}"
        if stored is not None and checkpoint_paths(stored)[0].is_file():
            tensors, meta = load_state(stored)
            for step in keep:
                kept[step] = [tensors[f"step{step}"].to(x.device)]
            seconds = float(meta["seconds"])
        else:
            _attack_run(defense, surface, x, y, k, n_steps, keep, kept, seed, eps, alpha,
                        batch_size)  # fmt: skip
            synchronize(x.device)
            seconds = time.perf_counter() - started
            if stored is not None:
                save_state(
                    stored,
                    {f"step{s}": torch.cat(v).cpu() for s, v in kept.items()},
                    {"seconds": seconds, "eot": k, "steps": n_steps, "key": key},
                )
        for step in keep:
            adv = torch.cat(kept[step])
            ra = summarize_draws(score_under_redraws(defense, classifier, adv, y, score_seeds))
            study.points.append(ConvergencePoint(step, k, ra, seconds))
            if progress is not None:
                progress(
                    f"EOT {k}, {step} steps: RA {ra['mean']:.1f} ± {ra['std']:.1f} %, worst "
                    f"case {ra['worst_case']:.1f} % ({seconds:.0f} s)"
                )
    return study


def _attack_run(
    defense: nn.Module,
    surface: nn.Module,
    x: Tensor,
    y: Tensor,
    k: int,
    n_steps: int,
    keep: list[int],
    kept: dict[int, list[Tensor]],
    seed: int,
    eps: float,
    alpha: float,
    batch_size: int,
) -> None:
    """One attack run: PGD with ``k`` EOT samples, the iterates of ``keep`` into ``kept``."""
    with redrawn(defense, seed + 7 * k):
        g = torch.Generator().manual_seed(seed)
        for s in range(0, x.shape[0], batch_size):
            out = eot_pgd_iterates(
                surface,
                x[s : s + batch_size],
                y[s : s + batch_size],
                eps=eps,
                alpha=alpha,
                steps=n_steps,
                keep=keep,
                generator=g,
            )
            for step in keep:
                kept[step].append(out[step])


def run_convergence(
    defense: str | nn.Module,
    classifier: str | nn.Module,
    x: Tensor,
    y: Tensor,
    out_dir: str | Path,
    *,
    description: str = "",
    log: Any = None,
    device: str = "cpu",
    **settings: Any,
) -> tuple[ConvergenceStudy, str]:
    """:func:`convergence_study` in a locked run folder, on ``device`` (defense, classifier and
    images move there; the stored attack runs stay device-free): writes ``convergence.json``
    (the study, settings, environment), ``convergence.md`` and the figure (PNG, SVG); attack
    runs are kept in ``out_dir/runs`` so a killed study resumes. Returns the study and its
    text."""
    from irad.defenses import build_defense_spec
    from irad.evaluate.plots import matplotlib_missing, plot_convergence
    from irad.models import load_classifier
    from irad.utils.env import environment_info, resolve_device
    from irad.utils.io import atomic_write_json, atomic_write_text
    from irad.utils.lock import RunLock

    out = Path(out_dir)
    where = resolve_device(device)
    model = (build_defense_spec(defense) if isinstance(defense, str) else defense).to(where)
    victim = (load_classifier(classifier) if isinstance(classifier, str) else classifier).eval()
    victim, x, y = victim.to(where), x.to(where), y.to(where)
    with RunLock(out, purpose="convergence study"):
        study = convergence_study(
            model, victim, x, y, run_dir=out / "runs", progress=log, **settings
        )
        record = {
            "command": "convergence",
            "defense_spec": defense if isinstance(defense, str) else None,
            "classifier": classifier if isinstance(classifier, str) else type(classifier).__name__,
            "dataset": description,
            **study.to_dict(),
            "levelled_off": study.levelled_off(),
            "environment": environment_info(str(where)),
        }
        atomic_write_json(out / "convergence.json", record)
        text = (
            f"Adaptive EOT-PGD against `{record['defense_spec'] or study.defense.get('name')}` + "
            f"`{record['classifier']}`: {study.n} images of {description or 'the data'}, eps "
            f"{study.eps * 255:g}/255, step {study.alpha * 255:g}/255, seed "
            f"{study.settings['seed']}, scored over {len(study.settings['score_seeds'])} re-drawn "
            f"seeds.\n\n{study.to_markdown()}\n"
        )
        atomic_write_text(out / "convergence.md", text)
        figures = plot_convergence(record, out / "convergence")
    if log is not None:
        log(
            f"wrote {out / 'convergence.json'}, {out / 'convergence.md'}"
            + (f", {', '.join(map(str, figures))}" if figures else f" ({matplotlib_missing()})")
        )
    return study, text
