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
