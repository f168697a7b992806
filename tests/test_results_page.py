"""Generated sections of ``docs/results.md``: replaced between markers, the text around kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from irad.evaluate.results_page import (
    BEGIN,
    END,
    NOT_MEASURED,
    SUMMARY_ROWS,
    PageError,
    analysis_section,
    find_sections,
    page_template,
    replace_sections,
    summary_section,
    update_page,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"

PAGE = """# Results

Hand-written intro, kept.
<!-- irad:begin summary -->
old summary
spanning lines
<!-- irad:end summary -->

## Middle, by hand

Text between sections.

<!-- irad:begin other -->
untouched generated text
<!-- irad:end other -->
<!-- irad:begin analysis -->
<!-- irad:end analysis -->
Trailing words, no newline at the end"""


def _outside(text: str) -> str:
    """The page with the inside of every section removed: what must never change."""
    spans = sorted(find_sections(text).values())
    parts, pos = [], 0
    for start, end in spans:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return "\x00".join(parts)


def test_sections_are_replaced_and_the_text_around_them_kept():
    new = replace_sections(PAGE, {"summary": "| a | b |\n|---|---|", "analysis": "fresh\n\n"})
    assert "old summary" not in new and "| a | b |\n|---|---|\n<!-- irad:end summary -->" in new
    assert "<!-- irad:begin analysis -->\nfresh\n<!-- irad:end analysis -->" in new
    assert "untouched generated text" in new  # a section not named is left alone
    assert _outside(new) == _outside(PAGE)
    assert new.endswith("Trailing words, no newline at the end")
    # regenerating with the same content changes nothing
    assert replace_sections(new, {"summary": "| a | b |\n|---|---|", "analysis": "fresh"}) == new
    # an empty body leaves the markers adjacent
    empty = replace_sections(new, {"analysis": ""})
    assert "<!-- irad:begin analysis -->\n<!-- irad:end analysis -->" in empty


def test_find_sections_spans():
    spans = find_sections(PAGE)
    assert set(spans) == {"summary", "other", "analysis"}
    start, end = spans["summary"]
    assert PAGE[start:end] == "old summary\nspanning lines\n"
    assert PAGE[slice(*spans["analysis"])] == ""


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ("<!-- irad:begin a -->\n", "no <!-- irad:end a -->"),
        ("<!-- irad:end a -->\n", "without a matching begin"),
        ("<!-- irad:begin a -->\n<!-- irad:begin b -->\n", "inside section 'a'"),
        (
            "<!-- irad:begin a -->\n<!-- irad:end a -->\n<!-- irad:begin a -->\n"
            "<!-- irad:end a -->\n",
            "appears twice",
        ),
        ("<!-- irad:begin a -->\n<!-- irad:end b -->\n", "without a matching begin"),
    ],
)
def test_bad_markers_are_refused(page, message):
    with pytest.raises(PageError, match=re.escape(message)):
        find_sections(page)


def test_missing_sections_error_append_or_skip():
    with pytest.raises(PageError, match="no section"):
        replace_sections("text\n", {"summary": "x"})
    appended = replace_sections("text\n", {"summary": "x"}, missing="append")
    assert appended == f"text\n\n{BEGIN.format(name='summary')}\nx\n{END.format(name='summary')}\n"
    assert replace_sections("text\n", {"summary": "x"}, missing="skip") == "text\n"
    # a marker inside an indented code example is still a marker only on its own line
    assert find_sections("see `<!-- irad:begin x -->` here\n") == {}


def test_update_page_in_place(tmp_path):
    page = tmp_path / "results.md"
    page.write_text(page_template())
    assert update_page(page, {"summary": "S", "analysis": "A"}) is True
    assert update_page(page, {"summary": "S", "analysis": "A"}) is False
    text = page.read_text()
    assert text.startswith("# Measured results\n") and "## Analysis" in text


def test_summary_names_the_threat_model_in_every_column():
    text = summary_section()
    header = text.splitlines()[0].split("|")[2:6]
    assert all(("oblivious" in h or "BPDA" in h or "adaptive" in h or "clean" in h) for h in header)
    assert text.count("\n| ") == len(SUMMARY_ROWS)  # one line per row after the header


def test_summary_figures_all_appear_in_the_results_page():
    """No invented numbers: every figure of the summary is one docs/results.md already has."""
    page = (DOCS / "results.md").read_text(encoding="utf-8")
    body = page
    spans = find_sections(page)
    if "summary" in spans:  # judge the measured sections, not the summary itself
        start, end = spans["summary"]
        body = page[:start] + page[end:]
    for row in SUMMARY_ROWS:
        for ours, paper in (row.sa, row.oblivious, row.bpda, row.adaptive):
            for cell in (ours, paper):
                if cell in (NOT_MEASURED, "–"):
                    continue
                number = re.match(r"[\d.]+", cell).group(0)
                assert re.search(rf"(?<![\d.]){re.escape(number)}", body), (row.defense, cell)


def test_results_page_has_the_generated_summary():
    page = (DOCS / "results.md").read_text(encoding="utf-8")
    spans = find_sections(page)
    assert "summary" in spans
    assert page[slice(*spans["summary"])].strip() == summary_section().strip()


@pytest.mark.parametrize("surrogate", [None, "r20.th"])
def test_every_stage_section_has_its_place_in_the_results_page(tmp_path, surrogate):
    """A full `irad reproduce all` writes each table beside the hand-written one it repeats,
    not appended at the end of the page: every section a stage feeds has its markers."""
    from irad.evaluate.pipeline import build_stages

    spans = find_sections((DOCS / "results.md").read_text(encoding="utf-8"))
    stages = build_stages("r56.th", tmp_path, surrogate=surrogate)
    wanted = {s.section for s in stages if s.section is not None}
    assert wanted and not wanted - set(spans), sorted(wanted - set(spans))


def test_analysis_section_from_a_record():
    record = {
        "normalize": "none",
        "settings": {"classifier": "resnet56", "n": 100, "class": 0, "class_name": "airplane",
                     "data": "cifar10/test", "attack": "pgd:steps=10", "seed": 0},
        "rows": [
            {"set": s, "n": 100, "distance": d, "distance_std": 0.1, "similarity": c,
             "similarity_std": 0.01, "accuracy": a}
            for s, d, c, a in (("Clean", 3.6, 1.0, 88.0), ("Adv", 14.0, 0.92, 0.0),
                               ("IRAD(Adv)", 4.6, 0.99, 57.0))
        ],
    }  # fmt: skip
    text = analysis_section(record, command="irad analysis ...", figures=["figures/a.png"])
    assert "| Adv | 0.0 | 14.00 ± 0.10 | 2.91 | 0.9200 ± 0.0100 | 0.5482 | – |" in text
    assert "| Clean | 88.0 | 3.60 ± 0.10 | – |" in text
    assert "![a](figures/a.png)" in text and text.startswith("```bash\nirad analysis ...")


@pytest.mark.slow
@pytest.mark.data
def test_cli_reproduce_all_quick(tmp_path):
    """``irad reproduce all --quick`` from a clean clone: every stage at tiny sizes (pairs,
    stage 1 and 2, diffusion, STL, NRP, the tables, the diffusion measurements, the analysis),
    each as its own ``irad`` process, a few minutes on one thread; then a rerun skips them all."""
    import json
    import os

    from typer.testing import CliRunner

    from irad.cli import app

    data = os.environ.get("IRAD_DATA")
    if not data or not (Path(data) / "test.npz").is_file():
        pytest.skip("no local CIFAR-10 copy (IRAD_DATA)")
    docs_before = (DOCS / "results.md").read_text(encoding="utf-8")
    args = ["reproduce", "all", "--quick", "--threads", "1", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "pipeline.json").read_text())
    assert record["finished"] and {s["status"] for s in record["stages"]} == {"done"}
    page = (tmp_path / "results.md").read_text()
    sections = find_sections(page)
    assert {"summary", "analysis", "table1", "table2", "table5", "table10", "quality-t20"} <= set(
        sections
    )
    assert "IRAD(Adv)" in page and "| **IRAD** |" in page and "| IRAD (ours) |" in page
    for name in ("fig6-case.png", "fig5-pca.png", "fig4.png"):
        assert (tmp_path / "figures" / name).is_file()
    assert (DOCS / "results.md").read_text(encoding="utf-8") == docs_before  # docs untouched
    again = CliRunner().invoke(app, args)  # everything finished: nothing runs again
    assert again.exit_code == 0, again.output
    record = json.loads((tmp_path / "pipeline.json").read_text())
    assert {s["status"] for s in record["stages"]} == {"skipped"}
    assert (tmp_path / "results.md").read_text() == page


def test_report_headings_nest_under_the_page_section():
    from irad.evaluate.results_page import level_at, nest_headings

    report = "# Title\n\n```bash\n# a comment, not a heading\n```\n## Notes\n#hashtag"
    assert nest_headings(report, under=3) == (
        "#### Title\n\n```bash\n# a comment, not a heading\n```\n##### Notes\n#hashtag"
    )
    assert nest_headings("no heading", under=2) == "no heading"
    assert nest_headings("###### deep\n# top", under=5).split("\n") == ["###### deep", "###### top"]
    page = "# P\n## A\n```\n## not\n```\n<!-- irad:begin t -->\n<!-- irad:end t -->\n"
    assert level_at(page, "t") == 2 and level_at(page, "absent") == 2  # appended at the end
    assert level_at("no heading", "absent") == 0
    # a heading inside an earlier generated section is not the one that holds the next section
    page = (
        "# P\n<!-- irad:begin a -->\n## A\n<!-- irad:end a -->\n"
        "<!-- irad:begin b -->\n<!-- irad:end b -->\n"
    )
    assert level_at(page, "b") == 1
