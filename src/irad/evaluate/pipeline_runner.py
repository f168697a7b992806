"""Run the stages of :mod:`irad.evaluate.pipeline` in order, each as ``python -m irad ...``.

A finished stage leaves ``stage.json`` beside its output: its identity
(:meth:`~irad.evaluate.pipeline.Stage.identity`) and the run ids of the stages it read. A stage
is skipped when its output exists and its marker matches, i.e. the same arguments on the same
inputs; a stage whose inputs were made again runs again. A training stage interrupted (its run
folder holds ``last.json``, it has no marker) continues with ``--resume``; one whose marker is
stale starts over with ``--overwrite`` (a command without that flag gets its output folder
emptied first, so that no cache of the earlier run is reused). So a killed pipeline resumes
where it stopped when the same command is run again. Each stage's stdout and stderr go to
``OUT/logs/<stage>.log``; ``OUT/pipeline.json`` records every stage's status, seconds and
command.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from irad import __version__
from irad.errors import IradError
from irad.evaluate.pipeline import Stage
from irad.utils.io import atomic_write_json, atomic_write_text, sha256_file

#: ``runner(argv, env, log) -> exit code``: how a stage's command is executed.
StageRunner = Callable[[Sequence[str], Mapping[str, str], Path], int]

RECORD = "pipeline.json"
#: The commands with ``--overwrite`` (replace a run of other settings in their folder).
OVERWRITE_COMMANDS = ("reproduce", "train-inr", "train-samplenet", "train-diffusion",
                      "train-stl", "train-nrp")  # fmt: skip
# Fields of a marker that say which run made it, not which settings.
_RUN_FIELDS = ("run", "finished", "irad")


_WHY = {
    "run": "",
    "resume": " (interrupted earlier: resumed)",
    "redo": " (made earlier with other settings or inputs: run again)",
}


class PipelineError(IradError):
    """A stage of ``irad reproduce all`` failed; the message names its command and log."""


def finished(folder: Path, stage: Mapping[str, Any], output: str) -> bool:
    """Whether ``folder`` holds ``output`` from a run of exactly these settings (``stage``),
    as recorded in ``folder/stage.json`` (its ``run`` / ``finished`` / ``irad`` fields aside).
    A marker written before markers held ``files`` matches on the rest, so that upgrading irad
    does not throw finished trainings away."""
    marker = _read(folder / "stage.json")
    if not (folder / output).is_file() or marker is None:
        return False
    kept = {k: v for k, v in marker.items() if k not in _RUN_FIELDS}
    wanted = json.loads(json.dumps(stage))
    if "files" not in kept:
        wanted.pop("files", None)
    return kept == wanted


def mark_finished(folder: Path, stage: Mapping[str, Any]) -> None:
    """Record ``stage`` (the settings of the run that finished) in ``folder/stage.json``, with
    a fresh run id that the stages reading this output record in turn, and the irad version
    that made it (provenance: a new version alone does not make a stage run again)."""
    record = {**stage, "run": uuid.uuid4().hex, "finished": _now(), "irad": __version__}
    atomic_write_text(folder / "stage.json", json.dumps(record, indent=2) + "\n")


def expected_marker(stage: Stage, stages: Mapping[str, Stage]) -> dict[str, Any]:
    """The marker a finished ``stage`` would have now: its identity, the run ids of the stages
    it needs (``None`` for one not finished) and the sha256 of every checkpoint file its
    arguments name outside its own output folder (:func:`named_files`: the victim's weights, so
    that replaced weights under the same name make the stage run again)."""
    inputs = {}
    for name in stage.needs:
        marker = _read(stages[name].marker) if name in stages else None
        inputs[name] = None if marker is None else marker.get("run")
    own = Path(stage.output).parent.resolve()  # its own outputs are not inputs
    argv = stage.identity()["argv"]
    files = {str(f): _digest(f) for f in named_files(argv) if own not in f.resolve().parents}
    return {**stage.identity(), "inputs": inputs, "files": files}


def named_files(argv: Sequence[str]) -> list[Path]:
    """The files an argument list names: each argument that is a file, and the weights and
    config of each that is a checkpoint prefix (``runs/x/model``) or a ``save_pretrained``
    folder (``runs/x``). Bundled names (``cifar10``) name no file."""
    from irad.checkpoint import checkpoint_paths

    found: list[Path] = []
    for arg in argv:
        path = Path(arg)
        if path.is_file():
            found.append(path)
            continue
        prefix = path / "model" if path.is_dir() else path
        pair = checkpoint_paths(prefix)
        if all(p.is_file() for p in pair):
            found.extend(pair)
    return found


def _digest(path: Path) -> str:
    try:
        s = os.stat(path)
    except OSError:  # gone since it was listed: a changed input
        return "missing"
    key = (os.path.abspath(path), s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino)
    return _cached_digest(*key)


@functools.lru_cache(maxsize=64)
def _cached_digest(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """sha256 of ``path``; keyed on its size, times and inode too (the ctime cannot be set by
    hand), so a changed file is read again (:func:`plan` asks for the same markers many
    times)."""
    return sha256_file(path)


def plan(stage: Stage, stages: Mapping[str, Stage]) -> str:
    """What running ``stage`` now means: ``"done"`` (skip it), ``"resume"`` (an interrupted
    training: ``--resume``), ``"redo"`` (a run of other settings or inputs is there:
    ``--overwrite`` where the command has it) or ``"run"``."""
    out = Path(stage.output)
    upstream_done = all(plan(stages[n], stages) == "done" for n in stage.needs if n in stages)
    if upstream_done and finished(out.parent, expected_marker(stage, stages), out.name):
        return "done"
    if stage.marker.is_file():
        return "redo"
    if stage.run_dir is not None and (Path(stage.run_dir) / "last.json").is_file():
        return "resume"
    return "run"


def argv_of(stage: Stage, action: str) -> list[str]:
    """The arguments after ``irad`` that carry out ``action`` (:func:`plan`) for ``stage``."""
    if action == "resume" and stage.run_dir is not None:
        return [*stage.argv, "--resume"]
    if action == "redo" and stage.argv[0] in OVERWRITE_COMMANDS:
        return [*stage.argv, "--overwrite"]
    return list(stage.argv)


def subprocess_runner(argv: Sequence[str], env: Mapping[str, str], log: Path) -> int:
    """Run ``python -m irad ARGV`` with ``env``, stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        f.write(f"\n# {time.strftime('%Y-%m-%dT%H:%M:%S')} irad {' '.join(argv)}\n".encode())
        f.flush()
        done = subprocess.run(
            [sys.executable, "-m", "irad", *argv], env=dict(env), stdout=f, stderr=f, check=False
        )
    return done.returncode


def stage_env(data_dir: str | Path | None = None, threads: int | None = None) -> dict[str, str]:
    """This process's environment with ``IRAD_DATA`` and the OpenMP thread count set."""
    env = dict(os.environ)
    if data_dir is not None:
        env["IRAD_DATA"] = str(data_dir)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_pipeline(
    stages: Sequence[Stage],
    out: str | Path,
    *,
    env: Mapping[str, str] | None = None,
    runner: StageRunner = subprocess_runner,
    echo: Callable[[str], None] = print,
    after: Callable[[Stage], None] | None = None,
) -> dict[str, Any]:
    """Run ``stages`` in order, skipping finished ones; returns the ``pipeline.json`` record.

    Prints each command before it runs. ``after(stage)`` is called once a stage is done (run
    now or earlier), e.g. to put its table on the results page.

    Raises:
        PipelineError: a stage failed (non-zero exit, or no output); the message names the
            stage, its command and its log. The stages after it are not run.
    """
    out = Path(out)
    env = dict(os.environ if env is None else env)
    before = _previous_seconds(out / RECORD)
    record: dict[str, Any] = {"started": _now(), "finished": None, "stages": []}
    for stage in stages:
        log = str(out / "logs" / f"{stage.name}.log")
        entry = {"name": stage.name, "status": "pending", "seconds": None, "log": log}
        record["stages"].append({**entry, "command": stage.command})
    by_name = {s.name: s for s in stages}
    for k, (stage, entry) in enumerate(zip(stages, record["stages"], strict=True), 1):
        action = plan(stage, by_name)
        if action == "done":
            entry.update(status="skipped", seconds=0.0, seconds_before=before.get(stage.name))
            echo(f"[{k}/{len(stages)}] {stage.name}: finished earlier, skipped ({stage.output})")
        else:
            echo(f"[{k}/{len(stages)}] {stage.name}{_WHY[action]}")
            settings = expected_marker(stage, by_name)  # before: inputs as the run read them
            _run_stage(stage, action, entry, record, out, env, runner, echo)
            mark_finished(stage.marker.parent, settings)
            entry["status"] = "done"
            echo(f"    done in {entry['seconds']} s")
        if after is not None:
            after(stage)
        _write(out, record)
    record["finished"] = _now()
    record["seconds"] = round(sum(s["seconds"] or 0.0 for s in record["stages"]), 1)
    _write(out, record)
    return record


def _run_stage(
    stage: Stage,
    action: str,
    entry: dict[str, Any],
    record: Mapping[str, Any],
    out: Path,
    env: Mapping[str, str],
    runner: StageRunner,
    echo: Callable[[str], None],
) -> None:
    """Run one stage, recording its status, seconds and command in ``entry``."""
    argv = argv_of(stage, action)
    entry.update(status="running", action=action, command="irad " + shlex.join(argv))
    echo(entry["command"])
    _write(out, record)
    stage.marker.unlink(missing_ok=True)  # a kill from here on must not look finished
    if action == "redo" and stage.argv[0] not in OVERWRITE_COMMANDS:
        _clear(Path(stage.output).parent, out)  # no --overwrite: stale results must not be reused
    start = time.perf_counter()
    try:
        code = runner(argv, env, Path(entry["log"]))
    except BaseException:  # Ctrl-C: the record says where it stopped
        entry.update(status="interrupted", seconds=round(time.perf_counter() - start, 1))
        _write(out, record)
        raise
    entry["seconds"] = round(time.perf_counter() - start, 1)
    if code != 0 or not Path(stage.output).is_file():
        entry["status"] = "failed"
        _write(out, record)
        raise PipelineError(_failure(stage, entry, code))


def _clear(folder: Path, root: Path) -> None:
    """Delete a stage's output ``folder`` before it runs again, if it lies inside ``root``."""
    folder, root = folder.resolve(), root.resolve()
    if folder.is_dir() and folder != root and folder.is_relative_to(root):
        shutil.rmtree(folder)


def _failure(stage: Stage, entry: Mapping[str, Any], code: int) -> str:
    log = Path(entry["log"])
    what = f"exit code {code}" if code != 0 else f"no output {stage.output}"
    tail = ""
    if log.is_file():
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-8:]
        tail = "\n" + "\n".join("    " + line for line in lines)
    return (
        f"stage {stage.name!r} failed ({what}) after {entry['seconds']} s:\n  "
        f"{entry['command']}\nits output: {log}{tail}\nFix the cause and run the same "
        "`irad reproduce all` again: the finished stages are kept."
    )


def _previous_seconds(path: Path) -> dict[str, float]:
    """Each stage's seconds in an earlier ``pipeline.json`` (the run that did the work)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    out = {}
    for s in old.get("stages", []):
        seconds = s.get("seconds") if s.get("status") == "done" else s.get("seconds_before")
        if seconds is not None:
            out[s["name"]] = seconds
    return out


def _write(out: Path, record: Mapping[str, Any]) -> None:
    atomic_write_json(out / RECORD, record)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
