"""Generated sections of ``docs/results.md``: replaced between markers, the text around kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

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
def test_reproduce_all_quick_smoke(tmp_path):
    """``irad reproduce all --quick``'s analysis stage on tiny models and data."""
    from irad.data import ImageDataset
    from irad.defenses import IRAD
    from irad.evaluate.results_page import reproduce_analysis
    from irad.models import build_classifier
    from irad.models.edsr import EDSRConfig
    from irad.models.liif import ImplicitConfig, ImplicitRepresentation
    from irad.models.samplenet import SampleNetConfig

    torch.manual_seed(0)
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(n_resblocks=1, n_feats=4), (8, 8)))
    IRAD(rep, preset=None, samplenet_config=SampleNetConfig(hidden=(8, 8))).save_pretrained(
        tmp_path / "irad"
    )
    x = torch.randint(0, 256, (10, 32, 32, 3), dtype=torch.uint8)
    data = ImageDataset(x, torch.arange(10) % 2, ["a", "b"], "tiny")
    clf = build_classifier("resnet20", num_classes=2).eval()
    ckpt = tmp_path / "irad"
    defenses = (f"recons:checkpoint={ckpt}", f"irad:checkpoint={ckpt}")
    out = tmp_path / "run"
    done = reproduce_analysis(
        clf, data, out, quick=True, defenses=defenses, attack="pgd:steps=1", command="irad ..."
    )
    assert done["seconds"] >= 0
    page = (out / "results.md").read_text()
    assert "RECONS(Adv)" in page and "| **IRAD** |" in page and "## Analysis" in page
    assert done["figures"] and all(Path(p).is_file() for p in done["figures"])
    # a second run reuses the finished parts and leaves the page as it is
    same = {"quick": True, "defenses": defenses, "attack": "pgd:steps=1", "command": "irad ..."}
    stamp = (out / "case" / "case-0.txt").stat().st_mtime_ns
    reproduce_analysis(clf, data, out, **same)
    assert (out / "results.md").read_text() == page
    assert (out / "case" / "case-0.txt").stat().st_mtime_ns == stamp
    # other settings: the parts run again
    reproduce_analysis(clf, data, out, **{**same, "attack": "fgsm"})
    assert "fgsm on the classifier alone" in (out / "results.md").read_text()
    assert (out / "case" / "case-0.txt").stat().st_mtime_ns != stamp


@pytest.mark.slow
@pytest.mark.data
def test_cli_reproduce_all_quick(tmp_path):
    """``irad reproduce all --quick`` from a clean clone: bundled classifier and IRAD, 4 images."""
    import os

    from typer.testing import CliRunner

    from irad.cli import app

    data = os.environ.get("IRAD_DATA")
    if not data or not (Path(data) / "test.npz").is_file():
        pytest.skip("no local CIFAR-10 copy (IRAD_DATA)")
    docs_before = (DOCS / "results.md").read_text(encoding="utf-8")
    result = CliRunner().invoke(
        app, ["reproduce", "all", "--quick", "--threads", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "results.md").read_text()
    assert "IRAD(Adv)" in page and "| **IRAD** |" in page
    assert (tmp_path / "figures" / "fig6-case.png").is_file()
    assert (DOCS / "results.md").read_text(encoding="utf-8") == docs_before  # docs untouched
