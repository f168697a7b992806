"""``irad reproduce all``: the stages as data, and the runner (skip, resume, redo, failure),
on a fake ``irad`` that writes each command's outputs without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from irad.evaluate.pipeline import CPU, PAPER, QUICK, TABLE7_TASKS, Stage, build_stages
from irad.evaluate.pipeline_runner import (
    PipelineError,
    argv_of,
    expected_marker,
    plan,
    run_pipeline,
)

W56, W20 = "weights/resnet56.th", "weights/resnet20.th"


def _value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def fake_irad(argv: list[str], env: dict[str, str], log: Path) -> int:
    """Write what each ``irad`` command leaves behind (markdown reports, figures, records)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("fake irad " + " ".join(argv) + "\n")
    command = argv[0]
    files: list[Path] = []
    if command == "diffusion-quality":
        record = {"rows": [{"t": 20, "reverse_steps": 4, "psnr_noisy": 28.5, "psnr_one_shot": 34.3,
                            "psnr_purified": 32.8, "ms_per_image": 9.0}]}  # fmt: skip
        path = Path(_value(argv, "--json"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
        return 0
    if command == "export-diffusion":
        files = [Path(_value(argv, "--out") + ".safetensors")]
    else:
        out = Path(_value(argv, "--out"))
        files = {
            "prepare-pairs": [out / "manifest.json"],
            "reproduce": [out / "comparison.md"] + ([out / "fig4.png"] * (argv[1] == "table10")),
            "convergence": [out / "convergence.json", out / "convergence.md",
                            out / "convergence.png"],
            "visualize": [out / "case-0.txt", out / "case-0.png"],
            "evaluate": [out / "table.md"],
            "analysis": [out / "fig5-pca.png", out / "path-by-block.png"],
        }.get(command, [out / "last.json", out / "model.safetensors"])  # fmt: skip
        if command == "analysis":
            out.mkdir(parents=True, exist_ok=True)
            (out / "result.json").write_text(json.dumps(ANALYSIS))
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"## {path.parent.name}\n\nmade by {command}\n")
    return 0


ANALYSIS = {
    "normalize": "none",
    "settings": {"classifier": "resnet20", "n": 4, "class": 0, "class_name": "airplane"},
    "rows": [{"set": "IRAD(Adv)", "n": 4, "distance": 4.6, "distance_std": 0.1,
              "similarity": 0.99, "similarity_std": 0.01, "accuracy": 50.0}],
}  # fmt: skip


class Recorder:
    """The fake ``irad``, recording the commands it was asked to run."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv, env, log) -> int:
        self.calls.append(list(argv))
        if self.fail is not None and self.fail in argv:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("Traceback ...\nerror: something broke\n")
            return 3
        return fake_irad(list(argv), dict(env), log)


# -- the stage list ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("quick", "protocol"), [(False, "cpu"), (True, "cpu"), (False, "paper")]
)  # fmt: skip
def test_stages_are_in_dependency_order(tmp_path, quick, protocol):
    stages = build_stages(W56, tmp_path, quick=quick, protocol=protocol, surrogate=W20)
    names = [s.name for s in stages]
    assert len(set(names)) == len(names)
    for k, stage in enumerate(stages):
        assert set(stage.needs) <= set(names[:k]), stage.name  # every input made before
    assert names[:3] == ["pairs", "eval-pairs", "inr"] and names[-2:] == ["case", "analysis"]
    kinds = [s.argv[0] for s in stages]
    # pairs, stage 1, stage 2, diffusion, (STL, NRP), the evaluations, the analysis
    order = ["prepare-pairs", "train-inr", "train-samplenet", "train-diffusion", "reproduce",
             "convergence", "analysis"]  # fmt: skip
    firsts = [kinds.index(k) for k in order]
    assert firsts == sorted(firsts)
    tables = [s.argv[1] for s in stages if s.argv[0] == "reproduce"]
    assert set(tables) == set((QUICK if quick else CPU).tables)
    # every stage writes under the pipeline's folder, each with its own marker
    assert all(Path(s.output).is_relative_to(tmp_path) for s in stages)
    assert len({s.marker for s in stages}) == len(stages)


def test_evaluations_read_the_pipelines_own_weights(tmp_path):
    stages = {s.name: s for s in build_stages(W56, tmp_path, surrogate=W20, threads=2)}
    irad_run = Path(stages["irad"].run_dir)
    table2 = list(stages["table2"].argv)
    assert _value(table2, "--irad-weights") == str(irad_run / "model")
    assert _value(table2, "--stl-weights") == stages["stl"].run_dir
    assert _value(table2, "--nrp-weights") == stages["nrp"].run_dir
    assert _value(table2, "-w") == W56
    assert set(stages["table2"].needs) == {"irad", "stl", "nrp", "diffusion-export"}
    assert _value(table2, "--diffusion-weights") == stages["diffusion-export"].output.removesuffix(
        ".safetensors"
    )
    assert _value(list(stages["table7"].argv), "--runs") == str(irad_run.parent)
    assert {f"t7-{t}" for t in TABLE7_TASKS} <= set(stages["table7"].needs)
    for task in TABLE7_TASKS:  # table7's rows read RUNS/t7-<task>/model
        assert stages[f"t7-{task}"].run_dir == str(irad_run.parent / f"t7-{task}")
    # the pairs and SampleNet use the surrogate; Table 4 runs in front of every classifier
    assert _value(list(stages["pairs"].argv), "-w") == W20
    assert _value(list(stages["irad"].argv), "-w") == W20
    assert [_value(list(stages[n].argv), "-w") for n in stages if n.startswith("table4")] == [
        W56, W20, "cifar10"]  # fmt: skip
    spec = _value(list(stages["t5-irad-diffpure20"].argv), "--defense")
    assert f"irad={irad_run / 'model'}" in spec and "diffusion-ema/model" in spec
    assert all("--threads" in s.argv for s in stages.values() if s.argv[0] != "export-diffusion")
    assert _value(list(stages["table3"].argv), "--n") == "200"  # as measured


def test_quick_and_paper_sizes(tmp_path):
    quick = {s.name: s for s in build_stages("cifar10", tmp_path, quick=True)}
    assert "table4-bundled" not in quick and "quality-t100" not in quick
    assert all(_value(list(s.argv), "--n") == "4" for s in quick.values()
               if s.argv[0] == "reproduce")  # fmt: skip
    assert "tiny" in quick["diffusion"].argv and "--max-steps-per-epoch" in quick["inr"].argv
    paper = build_stages(W56, tmp_path, protocol="paper")
    assert all(_value(list(s.argv), "--protocol") == "paper" for s in paper
               if s.argv[0] == "reproduce")  # fmt: skip
    assert all(_value(list(s.argv), "--preset") == "paper" for s in paper
               if s.argv[0].startswith("train-"))  # fmt: skip
    assert PAPER.pairs[:2] == ("--steps", "100")
    with pytest.raises(ValueError, match="cpu or paper"):
        build_stages(W56, tmp_path, protocol="custom")


def test_every_flag_is_one_the_command_has(tmp_path):
    """The stages are the project's own commands: no invented flag."""
    from irad.cli import app

    group = typer.main.get_command(app)
    for quick in (False, True):
        for stage in build_stages(W56, tmp_path, quick=quick, surrogate=W20, threads=1,
                                  device="cpu"):  # fmt: skip
            command = group.commands[stage.argv[0]]
            known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            flags = {a for a in stage.argv[1:] if a.startswith("-")}
            assert flags <= known, (stage.name, flags - known)
            for action in ("resume", "redo"):
                extra = set(argv_of(stage, action)) - set(stage.argv)
                assert extra <= known, (stage.name, extra)


def test_identity_ignores_threads_and_device(tmp_path):
    one = build_stages(W56, tmp_path, threads=1)[0]
    two = build_stages(W56, tmp_path, threads=2, device="cuda")[0]
    assert one.argv != two.argv and one.identity() == two.identity()
    assert build_stages(W56, tmp_path, seed=1)[0].identity() != one.identity()


# -- the runner ----------------------------------------------------------------------------------
def test_finished_stages_are_skipped(tmp_path):
    stages = build_stages("cifar10", tmp_path / "out", quick=True)
    first = Recorder()
    printed: list[str] = []
    record = run_pipeline(stages, tmp_path / "out", runner=first, echo=printed.append)
    assert [c[0] for c in first.calls] == [s.argv[0] for s in stages]
    assert all(s["status"] == "done" for s in record["stages"])
    assert stages[0].command in printed  # each command printed before it runs
    assert (tmp_path / "out" / "logs" / "pairs.log").is_file()
    saved = json.loads((tmp_path / "out" / "pipeline.json").read_text())
    assert saved["finished"] and [s["name"] for s in saved["stages"]] == [s.name for s in stages]
    again = Recorder()
    record = run_pipeline(stages, tmp_path / "out", runner=again, echo=printed.append)
    assert again.calls == [] and all(s["status"] == "skipped" for s in record["stages"])
    assert all(s["seconds_before"] is not None for s in record["stages"])
    # another thread count is the same stage; another seed is not
    assert build_stages("cifar10", tmp_path / "out", quick=True, threads=3)[0].name == "pairs"
    rerun = Recorder()
    run_pipeline(build_stages("cifar10", tmp_path / "out", quick=True, threads=3),
                 tmp_path / "out", runner=rerun, echo=printed.append)  # fmt: skip
    assert rerun.calls == []


def test_interrupted_training_resumes_and_changed_inputs_run_again(tmp_path):
    out = tmp_path / "out"
    stages = build_stages("cifar10", out, quick=True)
    by_name = {s.name: s for s in stages}
    run_pipeline(stages, out, runner=Recorder(), echo=lambda _: None)
    # a training killed mid-run: checkpoint, no model, no marker
    inr = by_name["inr"]
    Path(inr.output).unlink()
    inr.marker.unlink()
    assert plan(inr, by_name) == "resume"
    calls = Recorder()
    run_pipeline(stages, out, runner=calls, echo=lambda _: None)
    assert calls.calls[0] == [*inr.argv, "--resume"]
    # stage 1 made again: everything that read it runs again (trainings start over)
    names = {Path(c[c.index("--out") + 1]).name for c in calls.calls if "--out" in c}
    assert {"irad", "t15-bilinear", "table2", "case", "analysis"} <= names
    irad = next(c for c in calls.calls if c[0] == "train-samplenet")
    assert irad[-1] == "--overwrite"
    assert not any(c[0] in ("prepare-pairs", "train-diffusion") for c in calls.calls)
    assert all(plan(s, by_name) == "done" for s in stages)
    marker = json.loads(by_name["irad"].marker.read_text())
    assert marker["inputs"]["inr"] == json.loads(inr.marker.read_text())["run"]
    assert expected_marker(by_name["irad"], by_name)["argv"] == list(by_name["irad"].argv)


def test_other_settings_run_again(tmp_path):
    out = tmp_path / "out"
    run_pipeline(build_stages("cifar10", out, quick=True), out, runner=Recorder(),
                 echo=lambda _: None)  # fmt: skip
    stages = build_stages("cifar10", out, quick=True, seed=1)
    plans = {s.name: plan(s, {x.name: x for x in stages}) for s in stages}
    # export-diffusion has no seed, but its input will be made again: it is not "done" either
    assert set(plans.values()) == {"redo"}
    # a command without --overwrite starts from an empty folder, so no cache of the old run
    # (e.g. convergence's adversarial images against the old weights) is reused
    convergence = next(s for s in stages if s.argv[0] == "convergence")
    stale = Path(convergence.output).parent / "runs" / "stale.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    calls = Recorder()
    run_pipeline(stages, out, runner=calls, echo=lambda _: None)
    assert not stale.exists() and Path(convergence.output).is_file()
    assert len(calls.calls) == len(stages)
    assert all(c[-1] == "--overwrite" for c in calls.calls if c[0] in ("reproduce", "train-inr"))
    assert all("--overwrite" not in c for c in calls.calls if c[0] == "prepare-pairs")


def test_new_weights_under_the_same_name_run_again(tmp_path):
    """A stage's identity holds the contents of the files it names, not only their paths."""
    out, victim = tmp_path / "out", tmp_path / "victim.th"
    victim.write_bytes(b"first weights")
    stages = build_stages(str(victim), out, quick=True)
    by_name = {s.name: s for s in stages}
    run_pipeline(stages, out, runner=Recorder(), echo=lambda _: None)
    assert all(plan(s, by_name) == "done" for s in stages)
    marker = json.loads(by_name["pairs"].marker.read_text())
    assert list(marker["files"]) == [str(victim)] and marker["irad"]
    quality = next(s for s in stages if s.argv[0] == "diffusion-quality")
    assert Path(quality.output).is_file() and str(quality.output) in quality.argv
    assert str(quality.output) not in json.loads(quality.marker.read_text())["files"]
    victim.write_bytes(b"other weights, same path")
    plans = {s.name: plan(s, by_name) for s in stages}
    assert plans["pairs"] == "redo" and plans["table2"] == "redo"
    assert plans["diffusion"] == "done"  # reads no victim


def test_a_failing_stage_stops_the_run_and_says_where(tmp_path):
    out = tmp_path / "out"
    stages = build_stages("cifar10", out, quick=True)
    calls = Recorder(fail="train-samplenet")
    with pytest.raises(PipelineError) as err:
        run_pipeline(stages, out, runner=calls, echo=lambda _: None)
    message = str(err.value)
    assert "stage 'irad' failed (exit code 3)" in message
    assert "irad train-samplenet --representation" in message
    assert str(out / "logs" / "irad.log") in message and "something broke" in message
    assert calls.calls[-1][0] == "train-samplenet"  # nothing after it ran
    record = json.loads((out / "pipeline.json").read_text())
    status = {s["name"]: s["status"] for s in record["stages"]}
    assert (status["inr"], status["irad"], status["analysis"]) == ("done", "failed", "pending")
    # a command that exits 0 without its output fails too
    silent = [Stage("x", ("analysis", "--out", str(tmp_path / "x")), str(tmp_path / "x" / "r"))]
    with pytest.raises(PipelineError, match="no output"):
        run_pipeline(silent, tmp_path, runner=lambda a, e, log: 0, echo=lambda _: None)


# -- irad reproduce all: the page ----------------------------------------------------------------
def test_reproduce_all_writes_sections_and_figures(tmp_path, monkeypatch):
    from irad.evaluate.results_page import RESULTS_PAGE, find_sections, reproduce_all

    monkeypatch.chdir(tmp_path)  # a full run would write docs/results.md here: it must not
    out = tmp_path / "quick"
    summary = reproduce_all(None, out=out, quick=True, runner=Recorder(), echo=lambda _: None)
    page = (out / "results.md").read_text()
    spans = find_sections(page)
    stages = build_stages("cifar10", out, quick=True)
    assert {s.section for s in stages if s.section} | {"summary"} == set(spans)
    table2 = page[slice(*spans["table2"])]
    assert table2.startswith("```bash\nirad reproduce table2 -w cifar10") and "## table2" in table2
    assert "| t | reverse steps |" in page[slice(*spans["quality-t20"])]
    analysis = page[slice(*spans["analysis"])]
    assert "| IRAD(Adv) | 50.0 |" in analysis
    assert "](figures/fig6-case.png)" in analysis and "](figures/fig5-pca.png)" in analysis
    assert "](figures/fig4.png)" in page[slice(*spans["table10"])]
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "fig-path-by-block.png", "fig4.png", "fig5-pca.png", "fig6-case.png"]  # fmt: skip
    assert not RESULTS_PAGE.exists() and "29 stages" in summary
    # a second run gives the same page (sections appended at the end nest the same way)
    reproduce_all(None, out=out, quick=True, runner=Recorder(), echo=lambda _: None)
    assert (out / "results.md").read_text() == page
    # hand-written text around the sections stays when the page is regenerated
    (out / "results.md").write_text(page.replace("## Analysis", "## Analysis, by hand"))
    reproduce_all(None, out=out, quick=True, runner=Recorder(), echo=lambda _: None)
    assert "## Analysis, by hand" in (out / "results.md").read_text()


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, monkeypatch, capsys):
    import sys

    from irad.cli import main

    out = tmp_path / "all"
    args = ["irad", "reproduce", "all", "-w", W56, "--surrogate", W20, "--out", str(out),
            "--threads", "2", "--dry-run"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as code:
        main()
    assert code.value.code in (0, None)
    printed = capsys.readouterr().out.splitlines()
    stages = build_stages(W56, out, surrogate=W20, threads=2)
    assert [line for line in printed if line.startswith("irad ")] == [s.command for s in stages]
    assert printed[0] == "# 1/37 pairs: run" and "nothing run" in printed[-1]
    assert not out.exists()


def test_full_run_needs_the_victim_and_the_repository_root(tmp_path, monkeypatch):
    from irad.errors import ConfigError
    from irad.evaluate.results_page import reproduce_all

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="--weights is required"):
        reproduce_all(None, out=tmp_path / "x")
    with pytest.raises(ConfigError, match="repository root"):
        reproduce_all(W56, out=tmp_path / "x", runner=Recorder())


def test_a_checkpoint_prefix_is_hashed_and_old_markers_still_match(tmp_path):
    """Weights named as a prefix (runs/clf/model) or a save_pretrained folder count with both
    files; a marker from before markers held ``files`` still matches (no rerun on upgrade)."""
    from irad.evaluate.pipeline_runner import named_files

    folder = tmp_path / "clf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w")
    (folder / "model.json").write_text("{}")
    pair = [folder / "model.safetensors", folder / "model.json"]
    assert named_files([str(folder / "model")]) == pair == named_files([str(folder)])
    assert named_files(["cifar10", "--threads", "1"]) == []

    out = tmp_path / "out"
    stages = build_stages(str(folder / "model"), out, quick=True)
    by_name = {s.name: s for s in stages}
    run_pipeline(stages, out, runner=Recorder(), echo=lambda _: None)
    pairs = by_name["pairs"]
    marker = json.loads(pairs.marker.read_text())
    assert sorted(marker["files"]) == sorted(map(str, pair))
    del marker["files"]  # as written by an earlier irad
    pairs.marker.write_text(json.dumps(marker))
    assert plan(pairs, by_name) == "done"
    (folder / "model.json").write_text('{"changed": 1}')
    assert plan(by_name["pairs"], by_name) == "done"  # the old marker cannot know
    assert plan(by_name["table2"], by_name) == "redo"  # a new marker does
