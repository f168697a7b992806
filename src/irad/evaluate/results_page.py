"""The results page: generated sections of ``docs/results.md`` between markers, written by
``irad reproduce all`` (:func:`reproduce_all`, over the stages of :mod:`irad.evaluate.pipeline`).

A generated section is everything between ``<!-- irad:begin NAME -->`` and
``<!-- irad:end NAME -->`` (each marker on a line of its own). :func:`replace_sections`
replaces the inside of the named sections and keeps every other character of the page, so the
hand-written text around them survives a regeneration. Sections:

* ``summary``: the table that opens the page (paper vs ours, the threat model named in every
  column), from :data:`SUMMARY_ROWS`: figures transcribed from the measured sections of
  ``docs/results.md`` itself, never new ones ("not measured" where none exists).
* ``analysis``: Tables 18 and 19 (and Fig. 5, Figs. 6-8) from an ``irad analysis`` /
  ``irad visualize`` run, :func:`analysis_section`.
* one section per table or measurement stage (``table2``, ``quality-t20``, ...): the command
  and its report, :func:`stage_section`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irad.errors import ConfigError, InputError
from irad.evaluate.pipeline import Stage, build_stages
from irad.evaluate.pipeline_runner import (
    StageRunner,
    plan,
    run_pipeline,
    stage_env,
    subprocess_runner,
)
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
        "NRP (trained here, cpu preset)", ("86.2", "92.89"), ("81.8", "3.82"),
        ("75.0 (BPDA artefact)", "0.27"), ("0.0 (AutoAttack, n = 200)", "–"), "Table 2 + STL/NRP",
    ),
    SummaryRow(
        "STL (trained here, cpu preset, λ = 0.2)", ("66.9", "90.65"), ("50.0", "57.48"),
        ("0.0", "2.10"), ("0.0 (PGD-10, n = 50)", "–"), "Table 2 + STL/NRP",
    ),
    SummaryRow(
        "DISCO-style (implicit representation, no sampling)", ("90.4", "89.25"),
        ("63.9", "85.63"), (NOT_MEASURED, "–"), ("0.0 (AutoAttack, n = 50)", "0.00"),
        "Tables 2, 5",
    ),
    SummaryRow(
        "**IRAD**", ("89.6", "91.70"), ("80.0", "89.72"), (NOT_MEASURED, "–"),
        ("0.0 (AutoAttack, n = 200)", "0.00"), "Tables 2, 5",
    ),
    SummaryRow(
        "DiffPure (t = 20, 4 reverse steps; random)", ("90.8", "93.66"), (NOT_MEASURED, "–"),
        (NOT_MEASURED, "–"), ("0.0 (EOT-PGD-10, n = 64)", "8.01"), "Diffusion, Table 5",
    ),
    SummaryRow(
        "DiffPure (t = 100, 20 reverse steps; random)", ("70.0", "89.73"), ("65.5", "87.54"),
        ("64.5 (n = 200)", "87.06"),
        ("27.1 (upper bound, not converged; EOT-PGD-10, n = 16, weights at 30 %)", "75.12"),
        "Diffusion, Table 5",
    ),
    SummaryRow(
        "IRAD+DiffPure (t = 20, 4 reverse steps; random)", ("89.1 (n = 64)", "93.42"),
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


# -- irad reproduce all: the stages and the page -------------------------------------------
#: The page and figures folder ``irad reproduce all`` regenerates (relative to the repository).
RESULTS_PAGE = Path("docs/results.md")
FIGURES_DIR = Path("docs/figures")


def page_template() -> str:
    """A minimal page with the two generated sections and hand-written text around them."""
    return (
        "# Measured results\n\n"
        f"{BEGIN.format(name='summary')}\n{END.format(name='summary')}\n\n"
        "## Analysis\n\n"
        f"{BEGIN.format(name='analysis')}\n{END.format(name='analysis')}\n"
    )


_HEADING = re.compile(r"(#{1,6}) ")


def _headings(text: str) -> list[tuple[int, int]]:
    """``(line index, level)`` of each Markdown ATX heading of ``text``, outside code fences."""
    found, fence = [], None
    for i, line in enumerate(text.split("\n")):
        stripped = line.lstrip()
        marker = stripped[:3] if stripped[:3] in ("```", "~~~") else None
        if marker is not None:
            fence = None if fence == marker else (fence or marker)
        elif fence is None and (m := _HEADING.match(line)):
            found.append((i, len(m.group(1))))
    return found


def nest_headings(text: str, under: int) -> str:
    """``text`` with its headings shifted so that the highest becomes level ``under + 1``
    (code fences left alone): a report's ``# Title`` or ``## Title`` nests under the page's
    heading of level ``under`` that holds it. Levels stop at 6.

    Example:
        >>> print(nest_headings("## T\\n```\\n# not a heading\\n```\\n### U", under=3))
        #### T
        ```
        # not a heading
        ```
        ##### U
    """
    found = _headings(text)
    if not found:
        return text
    shift = under + 1 - min(level for _, level in found)
    lines = text.split("\n")
    for i, level in found:
        lines[i] = "#" * min(6, max(1, level + shift)) + lines[i][level:]
    return "\n".join(lines)


def level_at(page: str, name: str) -> int:
    """The level of the last hand-written heading above section ``name`` of ``page``, or, for
    a section the page lacks, above its end, where it will be appended (0: no heading).
    Headings inside other generated sections do not count, so that publishing a section again
    gives the same page."""
    spans = find_sections(page)
    start = spans[name][0] if name in spans else len(page)
    kept, pos = [], 0
    for s, e in sorted(spans.values()):
        if e <= start:
            kept.append(page[pos:s])
            pos = e
    kept.append(page[pos:start])
    found = _headings("".join(kept))
    return found[-1][1] if found else 0


def stage_section(stage: Stage, figures: Sequence[tuple[str, str]] = ()) -> str:
    """The page section of a finished stage: its command, then its report (``comparison.md``,
    ``convergence.md``, a ``diffusion-quality`` record, or the ``irad analysis`` record as
    Tables 18-19), then its ``figures`` (``(path relative to the page, caption)``)."""
    if stage.report is None:
        raise InputError(f"stage {stage.name!r} feeds no section")
    report = Path(stage.report)
    if stage.argv[0] == "analysis":
        return analysis_section(report, command=stage.command, figures=figures)
    if stage.argv[0] == "diffusion-quality":
        from irad.evaluate.denoising import format_denoising_table

        body = format_denoising_table(json.loads(report.read_text(encoding="utf-8")))
    else:
        body = report.read_text(encoding="utf-8").strip("\n")
    lines = ["```bash", stage.command, "```", "", body]
    for path, caption in figures:
        lines += ["", f"![{caption}]({path})"]
    return "\n".join(lines)


def publish_stage(
    stage: Stage, stages: Mapping[str, Stage], page: str | Path, figures_dir: str | Path
) -> list[Path]:
    """Copy a finished stage's figures into ``figures_dir`` and write its section into ``page``
    (appended at the end when the page lacks it). The section shows the stage's figures and
    those of the stages it needs that have no section of their own (Fig. 6 beside Table 18).
    Returns the figures copied."""
    page, figs = Path(page), Path(figures_dir)
    copied = []
    for fig in stage.figures:
        if Path(fig.source).is_file():
            figs.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fig.source, figs / fig.name)
            copied.append(figs / fig.name)
    if stage.section is None:
        return copied
    shown = list(stage.figures)
    for name in stage.needs:
        if name in stages and stages[name].section is None:
            shown += stages[name].figures
    links = [(_relative(figs / f.name, page.parent), f.caption) for f in shown
             if (figs / f.name).is_file()]  # fmt: skip
    body = stage_section(stage, links)
    text = page.read_text(encoding="utf-8") if page.is_file() else ""
    body = nest_headings(body, under=level_at(text, stage.section))
    update_page(page, {stage.section: body}, missing="append")
    return copied


def reproduce_all(
    weights: str | None,
    model: str | None = None,
    out: str | Path | None = None,
    quick: bool = False,
    seed: int = 0,
    data_dir: str | Path | None = None,
    threads: int | None = None,
    device: str | None = None,
    *,
    protocol: str = "cpu",
    surrogate: str | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
    runner: StageRunner = subprocess_runner,
) -> str:
    """``irad reproduce all``: every stage of :func:`~irad.evaluate.pipeline.build_stages` in
    order (pairs, stage 1, stage 2, diffusion, STL, NRP, the tables, the diffusion
    measurements, the analysis), then the results page.

    Each stage is an ``irad`` command run as a subprocess (logs in ``OUT/logs``, record in
    ``OUT/pipeline.json``); finished stages are skipped and interrupted trainings resumed, so a
    killed run continues where it stopped. Each table's ``comparison.md`` and each measurement
    becomes a generated section of the page (appended when absent), with the ``summary`` and
    ``analysis`` sections; figures go to the figures folder.

    Full run: the victim ``weights`` (required), ``surrogate`` for the pairs and stage 2
    (default: the victim), everything under ``out`` (default ``results/all``), the page
    :data:`RESULTS_PAGE` and :data:`FIGURES_DIR` (run from the repository root). ``quick``: the
    bundled classifier unless ``weights`` is given, tiny sizes, ``out`` (default
    ``results/all-quick``) holding ``results.md`` and ``figures/``; the docs stay untouched.
    ``dry_run``: print the stages and their commands, run nothing. Returns a summary.
    """
    if weights is None:
        if not quick:
            raise ConfigError("--weights is required: the victim classifier checkpoint")
        weights = "cifar10"
    out_dir = Path(out) if out is not None else Path("results") / ("all-quick" if quick else "all")
    stages = build_stages(
        weights, out_dir, quick=quick, protocol=protocol, seed=seed, threads=threads,
        surrogate=surrogate, model=model, device=device,
    )  # fmt: skip
    by_name = {s.name: s for s in stages}
    if dry_run:
        for k, stage in enumerate(stages, 1):
            needs = f", needs {', '.join(stage.needs)}" if stage.needs else ""
            echo(f"# {k}/{len(stages)} {stage.name}: {plan(stage, by_name)}{needs}")
            echo(stage.command)
        return f"{len(stages)} stages; nothing run (--dry-run)"
    if quick:
        page, figures = out_dir / "results.md", out_dir / "figures"
        if not page.is_file():
            atomic_write_text(page, page_template())
    elif not RESULTS_PAGE.is_file():
        raise ConfigError(
            f"{RESULTS_PAGE} not found: run `irad reproduce all` from the repository root "
            "(or --quick, which writes its page under --out)"
        )
    else:
        page, figures = RESULTS_PAGE, FIGURES_DIR
    record = run_pipeline(
        stages,
        out_dir,
        env=stage_env(data_dir, threads),
        runner=runner,
        echo=echo,
        after=lambda stage: publish_stage(stage, by_name, page, figures),
    )
    update_page(page, {"summary": summary_section()}, missing="append")
    ran = [s for s in record["stages"] if s["status"] == "done"]
    lines = [
        f"{len(stages)} stages in {out_dir}: {len(ran)} run ({record['seconds']} s), "
        f"{len(stages) - len(ran)} finished earlier",
        *(f"  {s['name']}: {s['status']}, {s['seconds']} s" for s in record["stages"]),
        f"page {page}; figures in {figures}; record {out_dir / 'pipeline.json'}",
    ]
    return "\n".join(lines)


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())
