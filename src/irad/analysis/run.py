"""The analysis runs behind ``irad analysis`` and ``irad visualize``: pick the images, attack
them, measure, write the table, the record and the figures into a folder.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from irad.analysis.case import DEFAULT_RESAMPLE, CaseStudy, case_study, make_adversarial
from irad.analysis.semantics import SemanticAnalysis, format_semantic_tables, semantic_analysis
from irad.checks import check_count, check_int
from irad.defenses import build_defense_spec
from irad.errors import ConfigError
from irad.models.classifier import Classifier
from irad.utils.env import environment_info
from irad.utils.io import atomic_write_json, atomic_write_text

#: The defenses of Tables 18-19: the implicit representation alone, then the full IRAD.
DEFAULT_DEFENSES = ("recons", "irad")
#: The oblivious attack of the analysis unless told otherwise: cheap, and it fools the victim.
DEFAULT_ATTACK = "pgd:steps=10"

_LABELS = {
    "recons": "RECONS",
    "disco": "RECONS",
    "implicit-reconstruction": "RECONS",
    "irad": "IRAD",
}


def defense_label(spec: str) -> str:
    """The row name of a defense applied to the adversarial images: ``"irad"`` ->
    ``"IRAD(Adv)"``, ``"recons:checkpoint=x"`` -> ``"RECONS(Adv)"``, others ``"<spec>(Adv)"``.

    Example:
        >>> defense_label("irad:checkpoint=runs/a"), defense_label("jpeg:quality=75")
        ('IRAD(Adv)', 'jpeg:quality=75(Adv)')
    """
    name = spec.split(":", 1)[0].strip().lower()
    if ">" not in spec and name in _LABELS:
        return f"{_LABELS[name]}(Adv)"
    return f"{spec}(Adv)"


def resolve_class(data: Any, target: int | str) -> int:
    """A class id from an id or a class name of ``data`` (e.g. ``3`` or ``"cat"``)."""
    classes = list(getattr(data, "classes", []))
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        if target not in classes:
            raise ConfigError(f"unknown class {target!r}; the data's classes are {classes}")
        return classes.index(target)
    k = int(target)
    check_int(k, "class", 0, max(len(classes) - 1, 0))
    return k


def class_images(data: Any, target: int, n: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The first ``n`` images of class ``target`` in data-set order, their labels and rows."""
    rows = torch.nonzero(data.y == target).flatten()
    check_count(n, "--n", len(rows), f"images of class {target} in {data.description}")
    rows = rows[:n]
    x, y = data.take(rows)
    return x, y, [int(r) for r in rows]


def run_semantics(
    classifier: Classifier,
    data: Any,
    out_dir: str | Path,
    *,
    target_class: int | str = 0,
    n: int = 100,
    attack: str = DEFAULT_ATTACK,
    defenses: Sequence[str] = DEFAULT_DEFENSES,
    normalize: str = "none",
    batch_size: int = 100,
    seed: int = 0,
    device: str | torch.device = "cpu",
    metadata: dict[str, Any] | None = None,
) -> tuple[SemanticAnalysis, str, list[Path]]:
    """Tables 18-19 and Fig. 5 for the first ``n`` images of one class; writes ``table.md``,
    ``result.json``, ``fig5-pca.png`` / ``.svg`` and ``path-by-block.png`` / ``.svg`` (the
    decision-path similarity per block) into ``out_dir``.

    The adversarial images are ``attack`` run on the classifier alone (oblivious); each defense
    spec is applied to them. Returns the analysis, the table text and the figure paths.
    """
    from irad.analysis.figures import plot_path_by_block, plot_pca

    start = time.perf_counter()
    target = resolve_class(data, target_class)
    x, y, rows = class_images(data, target, n)
    x, y = x.to(device), y.to(device)
    classifier.eval()
    torch.manual_seed(seed)
    adv = torch.cat(
        [
            make_adversarial(
                classifier, x[i : i + batch_size], y[i : i + batch_size], attack, seed=seed
            )
            for i in range(0, len(x), batch_size)
        ]
    )
    built = {defense_label(s): build_defense_spec(s).to(device).eval() for s in defenses}
    classes = list(getattr(data, "classes", []))
    settings = {
        "classifier": classifier.name,
        "data": getattr(data, "description", "images"),
        "class": target,
        "class_name": classes[target] if target < len(classes) else str(target),
        "n": len(rows),
        "rows": rows,
        "attack": attack,
        "threat": "oblivious",
        "defenses": list(defenses),
        "seed": seed,
        **(metadata or {}),
    }
    analysis = semantic_analysis(
        classifier, x, adv, built, y, normalize=normalize, batch_size=batch_size, settings=settings
    )
    analysis.settings["seconds"] = round(time.perf_counter() - start, 1)
    analysis.settings["environment"] = environment_info(device)
    text = format_semantic_tables(analysis)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "table.md", text + "\n")
    atomic_write_json(out / "result.json", analysis.to_dict())
    name = settings["class_name"]
    title = f"{classifier.name}, {len(rows)} images of class {name}\nattack {attack} (oblivious)"
    paths = plot_pca(analysis, out / "fig5-pca", title=title)
    paths += plot_path_by_block(analysis, out / "path-by-block", title=title)
    return analysis, text, paths


def run_case(
    classifier: Classifier,
    data: Any,
    index: int,
    out_dir: str | Path,
    *,
    defense: str = "irad",
    attack: str = DEFAULT_ATTACK,
    resample: str = DEFAULT_RESAMPLE,
    seed: int = 0,
    top_k: int = 5,
    prefix: str | None = None,
    device: str | torch.device = "cpu",
) -> tuple[CaseStudy, list[Path]]:
    """Figs. 6-8 for image ``index`` of ``data``: writes ``case-<index>.png`` / ``.svg`` and
    ``case-<index>.txt`` (the predictions) into ``out_dir``."""
    from irad.analysis.figures import plot_case

    check_int(index, "--index", 0, len(data) - 1)
    x, y = data.take([index])
    x, y = x.to(device), y.to(device)
    torch.manual_seed(seed)
    adv = make_adversarial(classifier, x, y, attack, seed=seed)
    settings = {"defense": defense, "attack": f"{attack} (oblivious)", "resample": resample}
    case = case_study(
        classifier,
        x,
        int(y[0]),
        adv,
        defense,
        resample=resample,
        classes=getattr(data, "classes", None),
        index=index,
        settings=settings,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = prefix or f"case-{index}"
    lines = [f"image {index} of {getattr(data, 'description', 'the data')}", *case.summary()]
    atomic_write_text(out / f"{stem}.txt", "\n".join(lines) + "\n")
    paths = plot_case(case, out / stem, top_k=top_k)
    return case, paths
