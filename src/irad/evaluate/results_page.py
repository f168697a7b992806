"""The results page: generated sections of ``docs/results.md`` between markers, and the
analysis stage of ``irad reproduce all``.

A generated section is everything between ``<!-- irad:begin NAME -->`` and
``<!-- irad:end NAME -->`` (each marker on a line of its own). :func:`replace_sections`
replaces the inside of the named sections and keeps every other character of the page, so the
hand-written text around them survives a regeneration. Sections:

* ``summary``: the table that opens the page (paper vs ours, the threat model named in every
  column), from :data:`SUMMARY_ROWS`: figures transcribed from the measured sections of
  ``docs/results.md`` itself, never new ones ("not measured" where none exists).
* ``analysis``: Tables 18 and 19 (and Fig. 5, Figs. 6-8) from an ``irad analysis`` /
  ``irad visualize`` run, :func:`analysis_section`.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irad.errors import InputError
from irad.utils.io import atomic_write_text

BEGIN = "<!-- irad:begin {name} -->"
END = "<!-- irad:end {name} -->"
_MARKER = re.compile(r"^[ \t]*<!-- irad:(begin|end) ([A-Za-z0-9_.-]+) -->[ \t]*$", re.MULTILINE)


class PageError(InputError):
    """The markers of a results page are unbalanced, nested, repeated or missing."""


def find_sections(text: str) -> dict[str, tuple[int, int]]:
    """Name -> ``(start, end)``: the character span *inside* each section's markers (from just
    after the begin marker's line to the start of the end marker's line).

    Raises :class:`PageError` for an end without a begin, a begin without an end, a section
    inside another, or a name used twice.

    Example:
        >>> page = "a\\n<!-- irad:begin t -->\\nold\\n<!-- irad:end t -->\\nb\\n"
        >>> start, end = find_sections(page)["t"]
        >>> page[start:end]
        'old\\n'
    """
    spans: dict[str, tuple[int, int]] = {}
    open_name: str | None = None
    open_at = 0
    for m in _MARKER.finditer(text):
        kind, name = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if kind == "begin":
            if open_name is not None:
                raise PageError(
                    f"line {line}: section {name!r} begins inside section {open_name!r}; "
                    "close it first with <!-- irad:end " + open_name + " -->"
                )
            if name in spans:
                raise PageError(f"line {line}: section {name!r} appears twice")
            open_name = name
            open_at = m.end() + 1 if m.end() < len(text) and text[m.end()] == "\n" else m.end()
        else:
            if open_name != name:
                raise PageError(
                    f"line {line}: <!-- irad:end {name} --> without a matching begin"
                    + (f" (section {open_name!r} is open)" if open_name else "")
                )
            spans[name] = (open_at, m.start())
            open_name = None
    if open_name is not None:
        raise PageError(f"section {open_name!r} has no <!-- irad:end {open_name} --> marker")
    return spans


def replace_sections(text: str, sections: Mapping[str, str], *, missing: str = "error") -> str:
    """``text`` with the inside of each named section replaced by ``sections[name]``.

    Everything outside the named sections (hand-written text, other sections, the markers
    themselves) is kept byte for byte. A section named in ``sections`` but absent from the page
    raises :class:`PageError` (``missing="error"``), is appended at the end with its markers
    (``"append"``), or is skipped (``"skip"``).

    Example:
        >>> page = "intro\\n<!-- irad:begin t -->\\nold\\n<!-- irad:end t -->\\noutro\\n"
        >>> print(replace_sections(page, {"t": "new"}), end="")
        intro
        <!-- irad:begin t -->
        new
        <!-- irad:end t -->
        outro
    """
    if missing not in ("error", "append", "skip"):
        raise InputError(f"missing must be 'error', 'append' or 'skip', got {missing!r}")
    spans = find_sections(text)
    absent = [name for name in sections if name not in spans]
    if absent and missing == "error":
        raise PageError(
            f"the page has no section(s) {', '.join(absent)}; add "
            + ", ".join(f"{BEGIN.format(name=n)} ... {END.format(name=n)}" for n in absent)
            + " where they belong"
        )
    out, pos = [], 0
    for name, (start, end) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        if name not in sections:
            continue
        out.append(text[pos:start])
        body = sections[name].strip("\n")
        out.append(body + "\n" if body else "")
        pos = end
    out.append(text[pos:])
    result = "".join(out)
    if missing == "append":
        for name in absent:
            body = sections[name].strip("\n")
            sep = "" if not result or result.endswith("\n") else "\n"
            result += f"{sep}\n{BEGIN.format(name=name)}\n{body}\n{END.format(name=name)}\n"
    return result


def update_page(path: str | Path, sections: Mapping[str, str], *, missing: str = "error") -> bool:
    """Replace sections of the page at ``path`` in place (atomically); ``True`` if it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new = replace_sections(text, sections, missing=missing)
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


# -- the summary table ---------------------------------------------------------------------------
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class SummaryRow:
    """One defense in the summary: each cell ``"ours / paper"`` as written on the page.

    Every figure here is transcribed from a measured section of ``docs/results.md`` (named in
    ``source``); a cell with no measurement says :data:`NOT_MEASURED`, and "–" stands for a
    paper figure this page does not quote.
    """

    defense: str
    sa: tuple[str, str]
    oblivious: tuple[str, str]
    bpda: tuple[str, str]
    adaptive: tuple[str, str]
    source: str


#: The page's own figures (ResNet-56 victim; paper: WRN-28-10), see each row's ``source``.
SUMMARY_ROWS: tuple[SummaryRow, ...] = (
    SummaryRow(
        "no defense", ("92.6", "94.77"), ("0.0", "0.00"), ("0.0", "0.02"),
        ("0.0 (AutoAttack, n = 50)", "–"), "Tables 1, 3, 5",
    ),
    SummaryRow(
        "bit reduction (4 bits)", ("90.9", "92.66"), ("1.7", "1.05"), ("0.5", "0.40"),
        ("0.5 (PGD-10)", "–"), "Tables 1, 3",
    ),
    SummaryRow(
        "JPEG (quality 75)", ("82.4", "83.66"), ("49.4", "50.79"), ("4.0", "5.50"),
        ("1.5 (PGD-10)", "–"), "Tables 1, 3",
    ),
    SummaryRow(
        "randomization (p = 0.8)", ("91.6", "93.87"), ("10.6", "6.86"), ("32.5 (no EOT)", "34.81"),
        (NOT_MEASURED, "–"), "Tables 1, 3",
    ),
    SummaryRow(
        "median filter (3×3)", ("81.2", "79.66"), ("42.9", "42.54"), ("32.5", "25.12"),
        ("0.0 (PGD-10)", "–"), "Tables 1, 3",
    ),
    SummaryRow(
        "IR(bil, d = 1.5)", ("84.9", "85.24"), ("41.2", "42.30"), ("86.5", "–"),
        ("0.0 (PGD-10)", "–"), "Tables 1, 3",
    ),
    SummaryRow(
        "DISCO-style (implicit representation, no sampling)", ("91.0", "89.25"),
        ("53.9", "85.63"), (NOT_MEASURED, "–"), ("0.0 (AutoAttack, n = 50)", "0.00"),
        "Tables 2, 5",
    ),
    SummaryRow(
        "**IRAD**", ("86.8", "91.70"), ("68.0", "89.72"), (NOT_MEASURED, "–"),
        ("0.0 (AutoAttack, n = 200)", "0.00"), "Tables 2, 5",
    ),
    SummaryRow(
        "DiffPure (t = 20, 4 reverse steps; random)", ("90.6", "93.66"), (NOT_MEASURED, "–"),
        (NOT_MEASURED, "–"), ("0.0 (EOT-PGD-10, n = 64)", "8.01"), "Diffusion, Table 5",
    ),
    SummaryRow(
        "DiffPure (t = 100, 20 reverse steps; random)", ("65.5", "89.73"), (NOT_MEASURED, "–"),
        (NOT_MEASURED, "–"), ("27.1 (upper bound, not converged; EOT-PGD-10, n = 16)", "75.12"),
        "Diffusion, Table 5",
    ),
    SummaryRow(
        "IRAD+DiffPure (t = 20, 4 reverse steps; random)", ("87.5 (n = 64)", "93.42"),
        (NOT_MEASURED, "–"), (NOT_MEASURED, "–"), ("0.0 (EOT-PGD-10, n = 64)", "74.05"),
        "Diffusion, Table 5",
    ),
)  # fmt: skip


def summary_section(rows: Sequence[SummaryRow] = SUMMARY_ROWS) -> str:
    """The table that opens ``docs/results.md``: one row per defense, ours / paper per cell."""
    lines = [
        "| defense | SA, clean images | RA, oblivious AutoAttack (attack sees the classifier "
        "only) | RA, BPDA PGD-10 (defense's backward = identity) | RA, full adaptive (real "
        "gradients through defense + classifier) | measured in |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        cells = [f"{ours} / {paper}" for ours, paper in (r.sa, r.oblivious, r.bpda, r.adaptive)]
        lines.append(f"| {r.defense} | " + " | ".join(cells) + f" | {r.source} |")
    lines += [
        "",
        "Each cell: **ours / paper**, accuracy in %. Ours: ResNet-56 victim, CPU protocol, first "
        "1,000 CIFAR-10 test images (BPDA and PGD-10 adaptive: first 200; adaptive AutoAttack: "
        "the n given), ε = 8/255, seed 0. Paper: WideResNet-28-10, all 10,000 images. "
        f"'{NOT_MEASURED}': no run on this page measured it; '–': the paper has no such figure "
        "or this page does not quote it. The full adaptive column is the one that says how "
        "robust a defense is against an attacker who knows it: every deterministic defense "
        "here is at or near 0 %, and so are the diffusion chains at t = 20; DiffPure at "
        "t = 100 keeps at most 27 % against an attack that had not yet converged.",
    ]
    return "\n".join(lines)


# -- the analysis section (Tables 18-19, Figs. 5-8) ---------------------------------------------
def analysis_section(
    result: Mapping[str, Any] | str | Path,
    *,
    command: str = "",
    figures: Sequence[str | tuple[str, str]] = (),
) -> str:
    """Tables 18 and 19 from an ``irad analysis`` record (``result.json`` or its dict), with the
    command that made it and the figures (paths relative to the page, or ``(path, caption)``)
    inline."""
    from irad.analysis.semantics import PAPER_DISTANCE, PAPER_SIMILARITY

    if not isinstance(result, Mapping):
        result = json.loads(Path(result).read_text(encoding="utf-8"))
    s = result.get("settings", {})
    env = s.get("environment", {})
    lines = []
    if command:
        lines += ["```bash", command, "```", ""]
    norm = "raw" if result.get("normalize", "none") == "none" else "L2-normalised"
    lines.append(
        f"Victim {s.get('classifier', '?')}, the first {s.get('n', '?')} images of class "
        f"{s.get('class', '?')} ({s.get('class_name', '?')}) of {s.get('data', '?')}; adversarial "
        f"images: {s.get('attack', '?')} on the classifier alone ({s.get('threat', 'oblivious')}), "
        f"seed {s.get('seed', 0)}; penultimate features {norm}; {s.get('seconds', '?')} s wall"
        + (
            f" ({env.get('date_utc', '?')}, irad {env.get('irad', '?')}, torch "
            f"{env.get('torch', '?')}, {env.get('torch_threads', '?')} thread(s) on "
            f"{env.get('cpu_count', '?')} CPUs, {env.get('device', 'cpu')})."
            if env
            else "."
        )
    )
    lines += [
        "",
        "| images | accuracy (%) | feature distance (Table 18) | paper | decision-path "
        "similarity (Table 19) | paper | last block only |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.get("rows", []):
        name = row["set"]
        dist = PAPER_DISTANCE.get(name)
        sim = PAPER_SIMILARITY.get(name)
        lines.append(
            f"| {name} | {row['accuracy']:.1f} | {row['distance']:.2f} ± "
            f"{row['distance_std']:.2f} | {_number(dist, 2)} | "
            f"{row['similarity']:.4f} ± {row['similarity_std']:.4f} | {_number(sim)} | "
            f"{_number(row.get('last_block_similarity'))} |"
        )
    for fig in figures:
        path, caption = fig if isinstance(fig, tuple) else (fig, Path(fig).stem)
        lines += ["", f"![{caption}]({path})"]
    return "\n".join(lines)


# -- irad reproduce all: the analysis stage and the page --------------------------------------
def reproduce_analysis(
    classifier: Any,
    data: Any,
    out_dir: str | Path,
    *,
    page: str | Path | None = None,
    figures_dir: str | Path | None = None,
    quick: bool = False,
    target_class: int = 0,
    case_index: int = 0,
    seed: int = 0,
    defenses: Sequence[str] = ("recons", "irad"),
    attack: str = "pgd:steps=10",
    command: str = "",
    device: Any = "cpu",
) -> dict[str, Any]:
    """The analysis stage of ``irad reproduce all`` and the page it feeds.

    Runs Tables 18-19 / Fig. 5 (100 images of ``target_class``; ``quick``: 4) and the case
    figure of image ``case_index`` into ``out_dir``; copies the figures into ``figures_dir``
    (default ``out_dir/figures``) and writes the ``summary`` and ``analysis`` sections into
    ``page``. ``quick`` (the smoke test) never touches a page it was not given: with
    ``page=None`` it writes ``out_dir/results.md`` from a two-section template. A part finished
    with the same settings (its output and ``stage.json`` present) is reused, so a killed run
    resumes; a part made with other settings is run again.

    Returns what was written: ``{"seconds", "page", "figures", "sections"}``.
    """
    from irad.analysis.run import run_case, run_semantics

    start = time.perf_counter()
    out = Path(out_dir)
    figs = Path(figures_dir) if figures_dir is not None else out / "figures"
    n = 4 if quick else 100
    sem_dir = out / f"analysis-class{target_class}-n{n}"
    stage = {"n": n, "class": target_class, "attack": attack, "defenses": list(defenses)}
    stage.update(seed=seed, classifier=getattr(classifier, "name", "?"), data=_describe(data))
    if not _finished(sem_dir, stage, "result.json"):
        run_semantics(
            classifier, data, sem_dir, target_class=target_class, n=n, attack=attack,
            defenses=defenses, seed=seed, batch_size=100, device=device,
        )  # fmt: skip
        _mark_finished(sem_dir, stage)
    case_dir = out / "case"
    case_stage = {**stage, "index": case_index, "defense": defenses[-1]}
    if not _finished(case_dir, case_stage, f"case-{case_index}.txt"):
        run_case(
            classifier, data, case_index, case_dir, defense=defenses[-1], attack=attack,
            seed=seed, device=device,
        )  # fmt: skip
        _mark_finished(case_dir, case_stage)
    copied = []
    figs.mkdir(parents=True, exist_ok=True)
    sources = {
        sem_dir / "fig5-pca.png": "fig5-pca.png",
        sem_dir / "path-by-block.png": "fig-path-by-block.png",
        case_dir / f"case-{case_index}.png": "fig6-case.png",
    }
    for src, name in sources.items():
        if src.is_file():
            shutil.copyfile(src, figs / name)
            copied.append(figs / name)
    if page is None:
        page = out / "results.md"
        if not page.is_file():
            atomic_write_text(page, page_template())
    page = Path(page)
    captions = {
        "fig5-pca.png": "Fig. 5 in our protocol: PCA of the penultimate features of the four sets",
        "fig-path-by-block.png": "Decision-path similarity with the clean images, block by block",
        "fig6-case.png": f"Fig. 6 in our protocol: test image {case_index}, defense "
        f"{defenses[-1]}, attack {attack} (oblivious)",
    }
    rel = [(_relative(p, page.parent), captions[p.name]) for p in copied]
    sections = {
        "summary": summary_section(),
        "analysis": analysis_section(sem_dir / "result.json", command=command, figures=rel),
    }
    update_page(page, sections, missing="append")
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "page": str(page),
        "figures": [str(p) for p in copied],
        "sections": sorted(sections),
    }


def page_template() -> str:
    """A minimal page with the two generated sections and hand-written text around them."""
    return (
        "# Measured results\n\n"
        f"{BEGIN.format(name='summary')}\n{END.format(name='summary')}\n\n"
        "## Analysis\n\n"
        f"{BEGIN.format(name='analysis')}\n{END.format(name='analysis')}\n"
    )


def _describe(data: Any) -> str:
    return str(getattr(data, "description", type(data).__name__))


def _finished(folder: Path, stage: Mapping[str, Any], output: str) -> bool:
    """Whether ``folder`` holds ``output`` from a run of exactly these settings (``stage``)."""
    marker = folder / "stage.json"
    if not (folder / output).is_file() or not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")) == json.loads(json.dumps(stage))
    except json.JSONDecodeError:
        return False


def _mark_finished(folder: Path, stage: Mapping[str, Any]) -> None:
    atomic_write_text(folder / "stage.json", json.dumps(stage, indent=2) + "\n")


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


#: The page and figures folder ``irad reproduce all`` regenerates (relative to the repository).
RESULTS_PAGE = Path("docs/results.md")
FIGURES_DIR = Path("docs/figures")


def reproduce_all(
    weights: str | None,
    model: str | None = None,
    out: str | Path | None = None,
    quick: bool = False,
    seed: int = 0,
    data_dir: str | Path | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> str:
    """``irad reproduce all``: the analysis stage (Tables 18-19, Figs. 5-6) and the results page.

    Full run: the victim ``weights`` (required), 100 images of class 0, the page
    :data:`RESULTS_PAGE` and :data:`FIGURES_DIR` (run from the repository root). ``quick``: the
    bundled classifier unless ``weights`` is given, 4 images, everything under ``out`` (default
    ``results/all-quick``), the docs untouched. Returns a summary of what was written.

    The table stages (``irad reproduce tableN``) are not chained here yet; run them one by one.
    """
    from irad.cli.options import set_threads
    from irad.data import load_dataset
    from irad.errors import ConfigError
    from irad.models import load_classifier
    from irad.utils.env import resolve_device

    if weights is None:
        if not quick:
            raise ConfigError("--weights is required: the victim classifier checkpoint")
        weights = "cifar10"
    page = figures = None
    if not quick:
        if not RESULTS_PAGE.is_file():
            raise ConfigError(
                f"{RESULTS_PAGE} not found: run `irad reproduce all` from the repository root "
                "(or --quick, which writes its page under --out)"
            )
        page, figures = RESULTS_PAGE, FIGURES_DIR
    set_threads(threads)
    dev = resolve_device(device or "cpu")
    out_dir = Path(out) if out is not None else Path("results") / ("all-quick" if quick else "all")
    data = load_dataset("cifar10", "test", data_dir)
    classifier = load_classifier(weights, arch=model).to(dev).eval()
    command = f"irad reproduce all -w {weights}" + (" --quick" if quick else "")
    done = reproduce_analysis(
        classifier,
        data,
        out_dir,
        page=page,
        figures_dir=figures,
        quick=quick,
        seed=seed,
        command=command,
        device=dev,
    )
    lines = [
        f"analysis (Tables 18-19, Figs. 5-6) in {out_dir}: {done['seconds']} s",
        f"page {done['page']}: sections {', '.join(done['sections'])}",
        *(f"figure {p}" for p in done["figures"]),
        "table stages not chained yet: run `irad reproduce --list` and each table",
    ]
    return "\n".join(lines)
