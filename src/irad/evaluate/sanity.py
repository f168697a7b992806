"""Checks that flag a broken evaluation (Carlini et al. 2019, "On Evaluating Adversarial
Robustness", §§ 4-5).

Each check is a pure function of figures already measured and returns :class:`SanityCheck`
records; comparisons between two attacks are paired (same images, same draws) and must be
both larger than a margin and statistically significant, so the noise of random attacks and
random defenses does not raise false alarms. A check that cannot apply (e.g. RA monotonicity
under the oblivious threat, where the attack never sees the defense) says so instead of passing
silently. Only ``status == "warn"`` records become warning lines in a report; a correct
evaluation produces none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from irad.errors import InputError
from irad.evaluate.config import SanityConfig
from irad.evaluate.curves import AXES, curves
from irad.evaluate.metrics import Count, decode_bits
from irad.evaluate.results import NOT_APPLICABLE, PASS, WARN, DefenseOutcome, SanityCheck
from irad.evaluate.specs import AttackSpec

__all__ = [
    "NOT_APPLICABLE",
    "PASS",
    "WARN",
    "SanityCheck",
    "check_blackbox",
    "check_curves",
    "check_gradients",
    "check_large_eps",
    "check_monotonic",
    "check_ra_below_sa",
    "run_checks",
]


def excess(lower: Tensor, higher: Tensor) -> tuple[int, int, int]:
    """Paired comparison of two per-image results on the same images and draws.

    Returns ``(b, c, total)``: ``b`` entries correct in ``higher`` only, ``c`` correct in
    ``lower`` only. ``RA(higher) - RA(lower) = (b - c) / total``.
    """
    if lower.shape != higher.shape:
        raise InputError(
            f"paired comparison needs equal shapes, got {tuple(lower.shape)} and "
            f"{tuple(higher.shape)}"
        )
    b = int((higher & ~lower).sum())
    c = int((lower & ~higher).sum())
    return b, c, int(lower.numel())


def significant_rise(lower: Tensor, higher: Tensor, margin: float, z: float) -> bool:
    """Whether ``higher`` is more often correct than ``lower`` beyond noise.

    Both conditions must hold: the rise exceeds ``margin`` percentage points, and it is
    significant in a sign (McNemar) test on the discordant images, ``b - c > z * sqrt(b + c)``.
    The paired test absorbs the noise of random attacks and random defenses, so a correct
    evaluation stays silent while a systematic failure is flagged.
    """
    b, c, total = excess(lower, higher)
    if total == 0:
        return False
    return 100.0 * (b - c) / total > margin and (b - c) > z * math.sqrt(b + c)


def check_monotonic(
    grid: Mapping[tuple[float, int], Tensor],
    *,
    margin: float,
    z: float = 2.0,
    defense: str = "",
) -> list[SanityCheck]:
    """RA must not rise when ε rises (steps fixed) or when steps rise (ε fixed).

    Args:
        grid: per-image correctness ``(draws, N)`` per ``(eps, steps)`` setting of one attack,
            all on the same images.
    """
    out: list[SanityCheck] = []
    eps_values = sorted({e for e, _ in grid})
    steps_values = sorted({s for _, s in grid})

    def scan(axis: str, pairs: Sequence[tuple[str, Tensor]], fixed: str) -> SanityCheck:
        rises = []
        for i, (lo_name, lo) in enumerate(pairs):
            for hi_name, hi in pairs[i + 1 :]:
                if significant_rise(lo, hi, margin, z):
                    rises.append(
                        f"RA rose from {Count.of(lo).percent:.2f}% at {lo_name} to "
                        f"{Count.of(hi).percent:.2f}% at {hi_name} ({fixed})"
                    )
        name = f"ra-monotonic-in-{axis}"
        if rises:
            return SanityCheck(
                name,
                WARN,
                "; ".join(rises) + ". A stronger attack must not do worse: the attack is not "
                "converging, or the gradients are masked or randomised.",
                defense,
            )
        shown = ", ".join(f"{n}: {Count.of(c).percent:.2f}%" for n, c in pairs)
        return SanityCheck(name, PASS, f"{shown} ({fixed})", defense)

    for steps in steps_values:
        pairs = [(f"eps={e:g}", grid[(e, steps)]) for e in eps_values if (e, steps) in grid]
        if len(pairs) > 1:
            out.append(scan("eps", pairs, f"steps={steps}"))
    for eps in eps_values:
        pairs = [(f"steps={s}", grid[(eps, s)]) for s in steps_values if (eps, s) in grid]
        if len(pairs) > 1:
            out.append(scan("steps", pairs, f"eps={eps:g}"))
    return out


def check_curves(outcome: DefenseOutcome, *, margin: float, z: float = 2.0) -> list[SanityCheck]:
    """RA must not rise along the ε and steps curves of the run's own attacks
    (:mod:`irad.evaluate.curves`: ``irad evaluate --eps 2,4,8,16`` or ``--steps 10,20,50``).

    Every pair of points of a curve is compared per image (paired test, as
    :func:`check_monotonic`); one check per axis that has a curve.
    """
    record = {
        "attacks": [{"label": k, **o.spec.to_dict()} for k, o in outcome.attacks.items()],
        "defenses": {outcome.label: outcome.to_dict()},
    }
    out = []
    for axis in AXES:
        found = curves(record, axis)
        if not found:
            continue
        rises, shown = [], []
        for curve in found:
            pts = curve.points
            for i, lo in enumerate(pts):
                for hi in pts[i + 1 :]:
                    if significant_rise(lo.correct(), hi.correct(), margin, z):
                        rises.append(
                            f"{curve.family}: RA rose from {lo.ra.percent:.2f}% at {axis}="
                            f"{lo.x:g} to {hi.ra.percent:.2f}% at {axis}={hi.x:g}"
                        )
            shown.append(
                f"{curve.family}: "
                + ", ".join(f"{p.ra.percent:.2f}% at {axis}={p.x:g}" for p in pts)
            )
        name = f"ra-monotonic-in-{axis}"
        if rises:
            out.append(
                SanityCheck(
                    name,
                    WARN,
                    "; ".join(rises) + ". A stronger attack must not do worse: the attack is not "
                    "converging, or the gradients are masked or randomised.",
                    outcome.label,
                )
            )
        else:
            out.append(SanityCheck(name, PASS, "; ".join(shown), outcome.label))
    return out


def check_large_eps(ra: Count, *, eps: float, max_ra: float, defense: str = "") -> SanityCheck:
    """With a huge budget a white-box attack must drive RA to (near) zero."""
    name = "large-eps-breaks-everything"
    if ra.percent < max_ra:
        return SanityCheck(
            name, PASS, f"RA {ra.percent:.2f}% < {max_ra:g}% at eps={eps:g}/255", defense
        )
    return SanityCheck(
        name,
        WARN,
        f"RA is {ra.percent:.2f}% ({ra.correct}/{ra.total}) at eps={eps:g}/255, expected "
        f"< {max_ra:g}%: with this budget any image can be turned into another class, so the "
        "attack is not reaching the model (masked gradients, too few steps, or a bug).",
        defense,
    )


def check_blackbox(
    blackbox: Tensor,
    whitebox: Tensor,
    *,
    blackbox_name: str,
    whitebox_name: str,
    margin: float,
    z: float = 2.0,
    defense: str = "",
) -> SanityCheck:
    """A gradient-free attack must not beat the white-box attack at the same ε.

    Args:
        blackbox, whitebox: per-image correctness ``(draws, N)`` on the same images.
    """
    name = "blackbox-not-stronger"
    bb, wb = Count.of(blackbox), Count.of(whitebox)
    if significant_rise(blackbox, whitebox, margin, z):
        return SanityCheck(
            name,
            WARN,
            f"black-box {blackbox_name} leaves RA {bb.percent:.2f}% but white-box "
            f"{whitebox_name} leaves {wb.percent:.2f}%: the gradients are not useful; report "
            "the black-box figure and fix the white-box attack (BPDA, EOT).",
            defense,
        )
    return SanityCheck(
        name,
        PASS,
        f"{blackbox_name} RA {bb.percent:.2f}%, {whitebox_name} RA {wb.percent:.2f}%",
        defense,
    )


def check_ra_below_sa(
    clean: Tensor,
    adversarial: Tensor,
    *,
    attack: str,
    margin: float,
    z: float = 2.0,
    defense: str = "",
) -> SanityCheck:
    """An attack must not make a model more accurate than it is on clean images.

    Args:
        clean, adversarial: per-image correctness ``(draws, N)`` on the same images (with a
            different number of draws, each is compared through its per-image mean).
    """
    name = "ra-not-above-sa"
    sa, ra = Count.of(clean), Count.of(adversarial)
    if clean.shape != adversarial.shape:
        clean = clean.float().mean(0, keepdim=True).round().bool()
        adversarial = adversarial.float().mean(0, keepdim=True).round().bool()
    if significant_rise(clean, adversarial, margin, z):
        return SanityCheck(
            name,
            WARN,
            f"{attack} RA {ra.percent:.2f}% exceeds SA {sa.percent:.2f}%: the attack helps the "
            "model, which points to a bug (wrong labels, wrong loss sign, or a defense that "
            "behaves differently on perturbed inputs).",
            defense,
        )
    if ra.percent > sa.percent:
        # Not flagged, but not hidden either: the rise is within the margin or not significant.
        return SanityCheck(
            name,
            PASS,
            f"{attack} RA {ra.percent:.2f}% is above SA {sa.percent:.2f}% by "
            f"{ra.percent - sa.percent:.2f} points, within noise (margin {margin:.1f} points, "
            f"paired test z={z:g}); a gradient that does not fit the defense (e.g. BPDA's "
            "identity for a geometric one) can do this",
            defense,
        )
    return SanityCheck(
        name, PASS, f"{attack} RA {ra.percent:.2f}% <= SA {sa.percent:.2f}%", defense
    )


def check_gradients(
    stats: Mapping[str, Any], *, max_zero_fraction: float, defense: str = ""
) -> SanityCheck:
    """Report exactly-zero and non-finite input gradients on the attack surface.

    ``stats`` is :func:`irad.attacks.gradient_stats` output: ``zero_fraction`` (share of
    gradient entries exactly 0) and ``nan_count`` (non-finite entries; a ``nan_fraction`` works
    too).
    """
    name = "input-gradients"
    zero = float(stats.get("zero_fraction", 0.0))
    nan_count = int(stats.get("nan_count", 0) or 0)
    nan = float(stats.get("nan_fraction", 0.0) or 0.0)
    problems = []
    if nan > 0 or nan_count > 0:
        what = f"{nan_count} entries" if nan_count else f"{100 * nan:.2f}% of the entries"
        problems.append(f"the input gradient has non-finite values ({what} NaN or inf)")
    if zero > max_zero_fraction:
        problems.append(
            f"{100 * zero:.2f}% of the input-gradient entries are exactly zero "
            f"(threshold {100 * max_zero_fraction:.0f}%)"
        )
    if problems:
        return SanityCheck(
            name,
            WARN,
            "; ".join(problems) + ". Gradient attacks cannot work through this surface "
            "(shattered or vanishing gradients): use BPDA or a differentiable surrogate, or "
            "report a gradient-free attack.",
            defense,
        )
    return SanityCheck(
        name, PASS, f"{100 * zero:.2f}% exactly-zero entries, none non-finite", defense
    )


def not_applicable(check: str, reason: str, defense: str = "") -> SanityCheck:
    return SanityCheck(check, NOT_APPLICABLE, reason, defense)


#: Why the attack-strength checks do not apply to a defense under the oblivious threat.
OBLIVIOUS_REASON = (
    "the oblivious threat never attacks the defense, so weaker (transferred) attacks are "
    "expected; the attack-strength checks apply to white-box threats and to no defense"
)


def run_checks(
    outcome: DefenseOutcome,
    config: SanityConfig,
    *,
    white_box: bool,
    threat: str,
    attack_ra: Callable[[AttackSpec, bool], Tensor] | None,
    n: int,
) -> tuple[list[SanityCheck], dict[str, Any] | None]:
    """All checks of one defense.

    The checks on figures already measured always run (gradients; RA not above SA; a black-box
    attack of the list not beating a white-box one at the same ε). With ``attack_ra`` (the
    ``--sanity`` runs) the grid is attacked too: ``attack_ra(spec, on_deployed_model)`` returns
    per-image correctness ``(draws, n)`` of the defense under ``spec``.

    Returns:
        The checks, and a JSON-ready report of the grid runs (None without ``attack_ra``).
    """
    label = outcome.label
    found: list[SanityCheck] = []
    if outcome.gradients is not None:
        found.append(
            check_gradients(
                outcome.gradients, max_zero_fraction=config.max_zero_grad_fraction, defense=label
            )
        )
    if not white_box:
        found.append(not_applicable("attack-strength", OBLIVIOUS_REASON, label))
        return found, None if attack_ra is None else {"skipped": OBLIVIOUS_REASON}

    clean = decode_bits(outcome.clean_per_image)
    bits = {name: decode_bits(o.per_image) for name, o in outcome.attacks.items()}
    for name, o in outcome.attacks.items():
        found.append(
            check_ra_below_sa(
                clean, bits[name], attack=name, margin=config.margin, z=config.z, defense=label
            )
        )
        if not o.spec.blackbox:
            continue
        peers = [
            p
            for p, w in outcome.attacks.items()
            if not w.spec.blackbox and w.spec.eps == o.spec.eps
        ]
        if peers:
            best = min(peers, key=lambda p: outcome.attacks[p].ra.percent)
            found.append(
                check_blackbox(
                    bits[name],
                    bits[best],
                    blackbox_name=name,
                    whitebox_name=best,
                    margin=config.margin,
                    z=config.z,
                    defense=label,
                )
            )
    found += check_curves(outcome, margin=config.margin, z=config.z)
    if attack_ra is None:
        return found, None

    report: dict[str, Any] = {"n": n, "grid": []}
    grid: dict[tuple[float, int], Tensor] = {}
    for eps in config.eps_grid:
        for steps in config.steps_grid:
            spec = config.grid_spec(eps, steps)
            grid[(eps, steps)] = attack_ra(spec, False)
            report["grid"].append(
                {
                    "attack": spec.label,
                    "eps": eps,
                    "steps": steps,
                    "ra": Count.of(grid[(eps, steps)]).to_dict(),
                }
            )
    found += check_monotonic(grid, margin=config.margin, z=config.z, defense=label)

    big = config.grid_spec(config.large_eps, max(config.steps_grid))
    large = Count.of(attack_ra(big, False))
    report["large_eps"] = {"attack": big.label, "ra": large.to_dict()}
    found.append(
        check_large_eps(large, eps=config.large_eps, max_ra=config.large_eps_max_ra, defense=label)
    )

    reference = {s: b for (e, s), b in grid.items() if e == config.reference_eps}
    if not reference:
        steps = max(config.steps_grid)
        reference = {steps: attack_ra(config.grid_spec(config.reference_eps, steps), False)}
    best_steps = min(reference, key=lambda s: Count.of(reference[s]).percent)
    white_spec = config.grid_spec(config.reference_eps, best_steps)
    bb_spec = config.blackbox_spec()
    blackbox = attack_ra(bb_spec, True)
    report["blackbox"] = {
        "attack": bb_spec.label,
        "ra": Count.of(blackbox).to_dict(),
        "whitebox": white_spec.label,
        "whitebox_ra": Count.of(reference[best_steps]).to_dict(),
    }
    found.append(
        check_blackbox(
            blackbox,
            reference[best_steps],
            blackbox_name=f"{bb_spec.label} (on defense + classifier)",
            whitebox_name=f"{white_spec.label} ({threat})",
            margin=config.margin,
            z=config.z,
            defense=label,
        )
    )
    return found, report
