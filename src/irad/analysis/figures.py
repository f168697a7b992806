"""The analysis figures: the PCA scatter (Fig. 5) and the case figures (Figs. 6-8).

matplotlib is an optional extra: without it every function returns ``[]`` and
:func:`irad.evaluate.plots.matplotlib_missing` gives the message that says how to get it.
Each figure is written as ``prefix.png`` and ``prefix.svg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from irad.analysis.case import CaseStudy
from irad.analysis.semantics import SemanticAnalysis
from irad.evaluate.plots import _save, matplotlib_missing

#: Colours of the sets in the PCA scatter, in the order of :class:`SemanticAnalysis`'s sets.
SET_COLOURS = ("tab:green", "tab:red", "tab:orange", "tab:blue", "tab:purple", "tab:brown")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pca(analysis: SemanticAnalysis, prefix: str | Path, *, title: str = "") -> list[Path]:
    """Fig. 5: every set's features on the first two principal axes of all of them."""
    if matplotlib_missing():
        return []
    plt = _pyplot()
    points = analysis.pca()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for k, (name, xy) in enumerate(points.items()):
        ax.scatter(
            xy[:, 0].numpy(),
            xy[:, 1].numpy(),
            s=10,
            alpha=0.7,
            label=name,
            color=SET_COLOURS[k % len(SET_COLOURS)],
            zorder=len(points) - k + 1,  # the clean set on top: the others are judged against it
        )
    clean = points[analysis.clean.name].mean(dim=0)
    ax.scatter(
        [float(clean[0])],
        [float(clean[1])],
        marker="x",
        s=60,
        color="black",
        label="clean centre",
        zorder=len(points) + 2,
    )
    ax.set_xlabel("principal axis 1")
    ax.set_ylabel("principal axis 2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    norm = "raw" if analysis.normalize == "none" else "L2-normalised"
    ax.set_title(title or f"penultimate features ({norm}), PCA of all sets", fontsize=9)
    fig.tight_layout()
    return _save(fig, prefix)


def plot_path_by_block(
    analysis: SemanticAnalysis, prefix: str | Path, *, title: str = ""
) -> list[Path]:
    """Decision-path similarity with the clean image, block by block (mean over images)."""
    by_block = analysis.block_similarities()
    if matplotlib_missing() or not by_block:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for k, (name, sims) in enumerate(by_block.items()):
        if name == analysis.clean.name:
            continue
        mean = sims.double().mean(dim=0)
        xs = list(range(1, len(mean) + 1))
        ax.plot(xs, mean.tolist(), marker=".", label=name, color=SET_COLOURS[k % len(SET_COLOURS)])
    ax.set_xlabel("residual block (input → output)")
    ax.set_ylabel("cosine similarity with clean")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "decision path, block by block", fontsize=9)
    fig.tight_layout()
    return _save(fig, prefix)


def _top_logits(ax: Any, case: CaseStudy, logits: torch.Tensor, k: int) -> None:
    top = torch.topk(logits.double(), min(k, logits.numel()))
    values = top.values.flip(0).tolist()
    ids = top.indices.flip(0).tolist()
    colours = [
        "tab:green" if i == case.label else "tab:red" if j == len(ids) - 1 else "tab:grey"
        for j, i in enumerate(ids)
    ]
    ax.barh(range(len(ids)), values, color=colours)
    ax.set_yticks(range(len(ids)))
    ax.set_yticklabels([case.class_name(i) for i in ids], fontsize=7)
    ax.tick_params(axis="x", labelsize=6)
    ax.set_xlabel("logit", fontsize=7)


def plot_case(
    case: CaseStudy, prefix: str | Path, *, top_k: int = 5, arrow_scale: float | None = None
) -> list[Path]:
    """Figs. 6-8 for one image, plus SampleNet's shift field and the difference maps.

    Rows: the six images (clean, adversarial, randomly resampled clean / adversarial, defended
    clean / adversarial); each image's top ``top_k`` logits (green: the true class, red: a
    wrong top-1); the shift field over the adversarial image (arrows magnified by
    ``arrow_scale``, default so that the mean arrow is 2 pixels long) and |image - clean| (max
    over RGB) of the five other images, on one colour scale.
    """
    if matplotlib_missing():
        return []
    plt = _pyplot()
    fig, axes = plt.subplots(3, 6, figsize=(13, 7.4), layout="constrained")
    for col, panel in enumerate(case.panels):
        ax = axes[0][col]
        ax.imshow(panel.image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(f"{panel.title}\n→ {case.class_name(panel.prediction)}", fontsize=8)
        ax.axis("off")
        _top_logits(axes[1][col], case, panel.logits, top_k)
    for ax in axes[2]:
        ax.axis("off")
    adv = case.panels[1].image.permute(1, 2, 0).clamp(0, 1).numpy()
    ax = axes[2][0]
    ax.imshow(adv, interpolation="nearest")
    if case.shifts is not None:
        s = case.shifts
        h, w = s.shape[:2]
        step = max(1, min(h, w) // 16)
        mean = float(s.norm(dim=-1).mean())
        scale = arrow_scale or (2.0 / mean if mean > 0 else 1.0)
        rows, cols = torch.meshgrid(
            torch.arange(0, h, step), torch.arange(0, w, step), indexing="ij"
        )
        sub = s[::step, ::step]
        ax.quiver(
            cols.numpy(),
            rows.numpy(),
            (sub[..., 1] * scale).numpy(),  # column shift: along x
            (sub[..., 0] * scale).numpy(),  # row shift: along y, which points down in imshow
            angles="xy",
            scale_units="xy",
            scale=1.0,
            color="yellow",
            width=0.006,
        )
        ax.set_title(f"SampleNet shifts on adv (×{scale:.1f})\nmean {mean:.2f} px", fontsize=8)
    else:
        ax.set_title("no SampleNet in this defense", fontsize=8)
    clean = case.panels[0].image
    diffs = [(p.image - clean).abs().amax(dim=0) for p in case.panels[1:]]
    vmax = max(max(float(d.max()) for d in diffs), 1e-8)
    diff_axes = list(axes[2][1:])
    for ax, diff, panel in zip(diff_axes, diffs, case.panels[1:], strict=True):
        im = ax.imshow(diff.numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(
            f"|{panel.title} − clean|\nmean {float(diff.mean()) * 255:.1f}/255", fontsize=8
        )
    fig.colorbar(im, ax=diff_axes, fraction=0.02, pad=0.01, label="max over RGB")
    spec = case.settings.get("defense", "")
    fig.suptitle(
        f"image {case.index} (true class {case.class_name(case.label)}), defense {spec}, "
        f"attack {case.settings.get('attack', '')}",
        fontsize=9,
    )
    return _save(fig, prefix)
