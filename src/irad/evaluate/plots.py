"""Figures (matplotlib, an optional extra): without it the tables still appear, and
:func:`matplotlib_missing` says how to get the figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def matplotlib_missing() -> str | None:
    """``None`` when matplotlib imports, else the message that says how to install it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "figures skipped: matplotlib is not installed (pip install matplotlib)"
    return None


def plot_convergence(study: dict[str, Any], prefix: str | Path) -> list[Path]:
    """RA (mean over draws and worst case) against PGD steps and against EOT samples, written
    as ``prefix.png`` and ``prefix.svg``; ``[]`` when matplotlib is missing.

    ``study`` is :meth:`irad.evaluate.random_defense.ConvergenceStudy.to_dict`'s output.
    """
    if matplotlib_missing():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = study["settings"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, axis, fixed in ((axes[0], "steps", "eot"), (axes[1], "eot", "steps")):
        value = settings[f"fixed_{fixed}"]
        points = sorted((p[axis], p["ra"]) for p in study["points"] if p[fixed] == value)
        xs = [p[0] for p in points]
        mean = [p[1]["mean"] for p in points]
        std = [p[1]["std"] for p in points]
        worst = [p[1]["worst_case"] for p in points]
        ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label="RA, mean ± std of draws")
        ax.plot(xs, worst, marker="s", linestyle="--", label="RA, worst case over draws")
        ax.axhline(study["sa"]["mean"], color="grey", linewidth=0.8, label="SA")
        ax.set_xscale("log")
        ax.minorticks_off()  # log-scale minor labels ("6 x 10^0") say nothing here
        ax.set_xticks(xs)
        ax.set_xticklabels([str(v) for v in xs])
        ax.set_xlabel("PGD steps" if axis == "steps" else "EOT samples per gradient")
        ax.set_title(f"{fixed} = {value}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=7, loc="best")
    name = study.get("defense_spec") or study["defense"].get("name", "defense")
    fig.suptitle(
        f"adaptive EOT-PGD against {name}: {study['n']} images, eps {study['eps'] * 255:.0f}/255",
        fontsize=9,
    )
    fig.tight_layout()
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_suffix(".png"), prefix.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths


# -- curves and the attack bar chart (irad.evaluate.curves, irad reproduce table10) -------------
def plot_curves(
    panels: Any,
    prefix: str | Path,
    *,
    title: str = "",
) -> list[Path]:
    """RA against ε or attack steps, one panel per ``(title, curves)`` pair, one line per
    defense with its 95 % interval as a band; written as ``prefix.png`` and ``prefix.svg``.
    ``[]`` when matplotlib is missing (:func:`matplotlib_missing` says how to get it).

    ``curves`` are :class:`irad.evaluate.curves.Curve` objects of one axis.
    """
    panels = [(name, list(found)) for name, found in panels if found]
    if matplotlib_missing() or not panels:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.6), sharey=True, squeeze=False
    )
    for ax, (name, found) in zip(axes[0], panels, strict=True):
        axis = found[0].axis
        for curve in found:
            xs = [p.x for p in curve.points]
            ra = [p.ra.percent for p in curve.points]
            low = [p.ci95[0] for p in curve.points]
            high = [p.ci95[1] for p in curve.points]
            dashed = curve.family == "worst-case"
            (line,) = ax.plot(
                xs, ra, marker="o", linestyle="--" if dashed else "-", label=curve.defense
            )
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        xs = sorted({p.x for c in found for p in c.points})
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs])
        ax.set_xlabel("ε (/255)" if axis == "eps" else "attack steps")
        ax.set_ylim(-2, 102)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("robust accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, prefix)


def plot_attack_bars(
    attacks: list[str],
    series: dict[str, list[float | None]],
    prefix: str | Path,
    *,
    title: str = "",
) -> list[Path]:
    """Grouped bars (Fig. 4 of the paper): RA per attack, one bar per series (e.g. ``"IRAD
    (ours)"``, ``"IRAD (paper)"``); a None value leaves its bar out. ``prefix.png`` and
    ``prefix.svg``; ``[]`` without matplotlib."""
    if matplotlib_missing() or not attacks or not series:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(attacks) + 2), 3.8))
    width = 0.8 / len(series)
    colours: dict[str, Any] = {}
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(attacks))]
        keep = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        paper = "(paper)" in name
        base = name.replace(" (paper)", "").replace(" (ours)", "").replace("-style", "")
        colour = colours.setdefault(base, f"C{len(colours)}")
        ax.bar(
            [x for x, _ in keep],
            [v for _, v in keep],
            width,
            label=name,
            color=colour,
            alpha=0.45 if paper else 1.0,
            hatch="//" if paper else None,
            edgecolor=colour,
        )
    ax.set_xticks(range(len(attacks)))
    ax.set_xticklabels(attacks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=len(series), loc="upper center")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, prefix)


def _save(fig: Any, prefix: str | Path) -> list[Path]:
    import matplotlib.pyplot as plt

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_suffix(".png"), prefix.with_suffix(".svg")]
    for path in paths:
        fig.savefig(path, dpi=130)
    plt.close(fig)
    return paths
