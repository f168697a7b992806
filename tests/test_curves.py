"""Curves, not only points: RA against ε and against attack steps, as tables, CSV and figures,
and the sanity check that reads them."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from irad.defenses import Identity
from irad.errors import ConfigError
from irad.evaluate import AttackSpec, evaluate_defenses
from irad.evaluate.curves import curves, curves_csv, curves_markdown, parse_values, sweep
from irad.evaluate.results import DefenseOutcome
from irad.evaluate.sanity import check_curves

sys.path.insert(0, str(Path(__file__).parent))
from test_evaluate import Noise, make_classifier, make_data

FAST = {"batch_size": 8, "cost_repeats": 0, "progress": False, "threads": 1}


def test_sweep_expands_every_attack() -> None:
    specs = [AttackSpec.parse("fgsm"), AttackSpec.parse("pgd:steps=20")]
    labels = [s.label for s in sweep(specs, eps=[2, 8])]
    assert labels == ["fgsm:eps=2", "fgsm", "pgd:steps=20,eps=2", "pgd:steps=20"]
    by_steps = [s.label for s in sweep(specs, steps=[5, 10])]
    assert by_steps == ["fgsm", "pgd:steps=5", "pgd:steps=10"]  # FGSM has no steps: once
    assert parse_values("16,4, 8,4", "--eps") == [4.0, 8.0, 16.0]
    with pytest.raises(ConfigError, match="numbers separated by commas"):
        parse_values("4;8", "--eps")
    with pytest.raises(ConfigError, match="units of 1/255"):
        sweep(specs, eps=[0.03])


@pytest.fixture(scope="module")
def eps_run(tmp_path_factory: pytest.TempPathFactory):
    """PGD at 2, 4, 8, 16 and 32/255 (and FGSM) on the template task, under BPDA."""
    specs = sweep(
        [AttackSpec.parse("pgd:steps=10,alpha=4"), AttackSpec.parse("fgsm")], eps=[2, 4, 8, 16, 32]
    )
    cache = tmp_path_factory.mktemp("cache")
    return evaluate_defenses(
        {"none": Identity(), "noise": Noise(0.05)},
        make_classifier(),
        make_data(),
        specs,
        "bpda-eot",
        eot_samples=2,
        cache_dir=cache,
        **FAST,
    )


def test_curves_of_a_run_fall_with_eps_and_carry_intervals(eps_run) -> None:
    record = eps_run.to_dict()
    found = curves(record, "eps")
    families = {(c.defense, c.family) for c in found}
    assert families == {
        (d, f) for d in ("none", "noise") for f in ("pgd:steps=10,alpha=4", "fgsm", "worst-case")
    }
    none_pgd = next(c for c in found if c.defense == "none" and c.family == "pgd:steps=10,alpha=4")
    assert none_pgd.xs == [2, 4, 8, 16, 32]
    ras = [p.ra.percent for p in none_pgd.points]
    assert ras == sorted(ras, reverse=True) and ras[0] > ras[-1] == 0.0
    for p in none_pgd.points:
        low, high = p.ci95
        assert low <= p.ra.percent <= high
    worst = next(c for c in found if c.defense == "none" and c.family == "worst-case")
    for i, p in enumerate(worst.points):  # worst case: never above either attack
        assert p.ra.correct <= none_pgd.points[i].ra.correct
    assert curves(record, "steps") == []  # nothing was swept in steps
    text = curves_markdown(found)
    assert "## RA against ε" in text and "| Defense | SA | ε=2/255 |" in text
    assert "per-image worst case over the attack families" in text
    rows = curves_csv(found).splitlines()
    assert rows[0].startswith("defense,family,axis,x,attack,ra,ra_ci95_low")
    assert len(rows) == 1 + 6 * 5
    assert "## RA against ε" in eps_run.to_markdown()  # the report shows the curves too


def test_the_sanity_checks_read_the_curves(eps_run) -> None:
    none = eps_run.defenses["none"]
    names = {c.check: c.status for c in none.checks}
    assert names["ra-monotonic-in-eps"] == "pass"
    # a curve whose RA rises with eps is flagged
    broken = DefenseOutcome.from_dict(none.to_dict())
    weakest, strongest = (
        broken.attacks["pgd:steps=10,alpha=4,eps=2"],
        broken.attacks["pgd:steps=10,alpha=4,eps=32"],
    )
    weakest.per_image, strongest.per_image = strongest.per_image, weakest.per_image
    flagged = [c for c in check_curves(broken, margin=2.0) if c.status == "warn"]
    assert flagged and "RA rose from" in flagged[0].message and "eps=32" in flagged[0].message


def test_a_steps_sweep_gives_ra_against_steps(tmp_path: Path) -> None:
    specs = sweep([AttackSpec.parse("pgd:eps=8,alpha=1,random_start=false")], steps=[1, 2, 8])
    result = evaluate_defenses(
        {"none": Identity()}, make_classifier(), make_data(), specs, "oblivious",
        cache_dir=tmp_path, **FAST,
    )  # fmt: skip
    (curve,) = curves(result.to_dict(), "steps")
    assert curve.family == "pgd:alpha=1,random_start=false" and curve.xs == [1, 2, 8]
    ras = [p.ra.percent for p in curve.points]
    assert ras == sorted(ras, reverse=True)
    assert any(c.check == "ra-monotonic-in-steps" for c in result.defenses["none"].checks)


def _cli_files(tmp_path: Path) -> list[str]:
    from irad.data import ImageDataset
    from irad.models import build_classifier, save_classifier

    torch.manual_seed(0)
    x = (torch.rand(6, 32, 32, 3) * 255).to(torch.uint8)
    ImageDataset(x, torch.arange(6) % 10, name="tiny").save_npz(tmp_path / "tiny.npz")
    save_classifier(build_classifier("resnet20"), tmp_path / "r20")
    return ["-w", str(tmp_path / "r20"), "--dataset", str(tmp_path / "tiny.npz")]


def test_cli_eps_curve_writes_tables_and_figures(tmp_path: Path, monkeypatch) -> None:
    from irad.cli import app

    files = _cli_files(tmp_path)
    args = shlex.split(
        "evaluate --defense none --defense bit-depth:bits=4 --attack fgsm --eps 2,4,8,16 "
        "--n 6 --batch-size 3 --cost-repeats 0 --threads 1 --no-progress --protocol custom"
    )
    args += [*files, "--cache-dir", str(tmp_path / "cache")]
    out = tmp_path / "out"
    done = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert "## RA against ε" in done.output and "ε=16/255" in done.output
    assert (out / "curve_eps.csv").is_file()
    pytest.importorskip("matplotlib")
    assert (out / "curve_eps.png").stat().st_size > 0 and (out / "curve_eps.svg").is_file()

    # without matplotlib the tables still appear and the message says how to get the figures
    import irad.evaluate.plots as plots

    monkeypatch.setattr(
        plots, "matplotlib_missing", lambda: "figures skipped: pip install matplotlib"
    )
    bare = tmp_path / "bare"
    done = CliRunner().invoke(app, [*args, "--out", str(bare)])
    assert done.exit_code == 0, done.output
    assert "## RA against ε" in done.output
    assert "figures skipped: pip install matplotlib" in done.output
    assert (bare / "curve_eps.csv").is_file() and not (bare / "curve_eps.png").exists()

    # irad curves: several runs side by side
    done = CliRunner().invoke(
        app,
        ["curves", str(out / "result.json"), str(bare / "result.json"), "--out",
         str(tmp_path / "both")],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert done.output.count("## RA against ε") == 2
    assert (tmp_path / "both.csv").is_file()
    nothing = CliRunner().invoke(
        app, ["curves", str(out / "result.json"), "--axis", "steps", "--out", str(tmp_path / "x")]
    )
    assert isinstance(nothing.exception, ConfigError)
    assert "no RA-against-steps curve" in str(nothing.exception)
    assert json.loads((out / "result.json").read_text())["attacks"][0]["eps"] == 2.0
