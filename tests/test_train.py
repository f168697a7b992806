"""The trainer, its schedules, checkpoints and resumption, the classifier objective and its CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from irad.checkpoint import TornCheckpoint, load_state, save_state
from irad.data import ImageDataset
from irad.errors import CheckpointError, ConfigError
from irad.models import build_classifier, load_classifier
from irad.train import (
    ClassifierObjective,
    TrainConfig,
    Trainer,
    build_optimizer,
    build_scheduler,
    epoch_generator,
    shard_batch,
)


class Kill(Exception):
    """Stands in for the process dying mid-step."""


class ToyObjective:
    """Noisy linear regression through a small MLP with dropout.

    Batch order and input noise come from the trainer's generator and the batch index only, as
    the Objective protocol asks. ``fail_at=k`` raises ``Kill`` in the k-th call of ``loss``,
    ``interrupt_at=k`` raises KeyboardInterrupt there (Ctrl-C).
    """

    def __init__(
        self,
        n: int = 64,
        batch_size: int = 8,
        dim: int = 6,
        dropout: float = 0.2,
        fail_at: int | None = None,
        interrupt_at: int | None = None,
        init_seed: int = 0,
    ) -> None:
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.randn(dim, 1, generator=g) / dim**0.5 + 0.5
        with torch.random.fork_rng():
            torch.manual_seed(init_seed)
            self.module = nn.Sequential(
                nn.Linear(dim, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 1)
            )
        self.n, self.batch_size, self.dim, self.dropout = n, batch_size, dim, dropout
        self.fail_at, self.interrupt_at, self.calls = fail_at, interrupt_at, 0

    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def batches(self, epoch, generator, start_batch):
        order = torch.randperm(self.n, generator=generator)
        noise_seed = int(torch.randint(0, 2**31, (1,), generator=generator))
        for b in range(start_batch, self.steps_per_epoch()):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            noise = torch.randn(
                len(rows), self.dim, generator=torch.Generator().manual_seed(noise_seed + b)
            )
            yield self.x[rows] + 0.01 * noise, self.y[rows]

    def loss(self, batch):
        self.calls += 1
        if self.calls == self.fail_at:
            raise Kill
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        x, y = batch
        pred = self.module(x)
        return F.mse_loss(pred, y), {"mae": (pred - y).abs().mean().detach()}

    @torch.no_grad()
    def evaluate(self):
        return {"val_mse": float(F.mse_loss(self.module(self.x), self.y))}

    def model_config(self):
        return {"name": "toy-mlp", "dim": self.dim, "dropout": self.dropout}

    def save_model(self, prefix):
        return save_state(prefix, self.module.state_dict(), self.model_config())


def config(tmp_path: Path, name: str = "run", **kw) -> TrainConfig:
    base = dict(
        epochs=3,
        batch_size=8,
        lr=0.05,
        seed=7,
        out_dir=tmp_path / name,
        device="cpu",
        progress=False,
        checkpoint_minutes=None,
    )
    base.update(kw)
    return TrainConfig(**base)


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out_dir / "model.safetensors"))


def history(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "history.jsonl").read_text().splitlines()]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


# -- the loop ----------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_the_run_folder(tmp_path):
    objective = ToyObjective()
    before = objective.evaluate()["val_mse"]
    cfg = config(tmp_path, epochs=4, lr=0.05)
    summary = Trainer(objective, cfg).fit()

    records = history(cfg_dir := Path(cfg.out_dir))
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["val_mse"] < 0.25 * before
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert {"train_loss", "train_mae", "val_mse", "lr", "train_seconds", "eval_seconds"} <= set(
        records[0]
    )
    assert summary["global_step"] == 4 * objective.steps_per_epoch()
    assert summary["final"] == records[-1]

    meta = json.loads((cfg_dir / "last.json").read_text())
    assert meta["seed"] == 7 and meta["config"]["seed"] == 7
    assert meta["environment"]["torch"] == torch.__version__
    assert meta["progress"]["epoch"] == 4 and meta["progress"]["batch"] == 0
    assert meta["model_config"] == objective.model_config()
    # The final weights are the trained module's, in the objective's own format.
    saved = weights(cfg_dir)
    for k, v in objective.module.state_dict().items():
        assert torch.equal(saved[k], v)
    assert json.loads((cfg_dir / "summary.json").read_text())["config"]["lr"] == 0.05


@pytest.mark.parametrize(
    ("optimizer", "schedule", "warmup"),
    [("sgd", "onecycle", None), ("adam", "cosine", 0.2), ("sgd", "constant", 0.1)],
)
def test_resume_mid_epoch_matches_an_uninterrupted_run(tmp_path, optimizer, schedule, warmup):
    kw = dict(optimizer=optimizer, schedule=schedule, warmup=warmup, betas=(0.0, 0.9))
    full = config(tmp_path, "full", **kw)
    Trainer(ToyObjective(), full).fit()

    # Checkpoint after every step; die in the 13th step (epoch 2, batch 5 of 8).
    cut = config(tmp_path, "cut", checkpoint_minutes=0, **kw)
    with pytest.raises(Kill):
        Trainer(ToyObjective(fail_at=13), cut).fit()
    meta = json.loads((Path(cut.out_dir) / "last.json").read_text())
    assert (meta["progress"]["epoch"], meta["progress"]["batch"]) == (1, 4)
    assert not (Path(cut.out_dir) / "model.safetensors").exists()

    # A fresh process would build a differently initialised module: the checkpoint wins.
    Trainer(ToyObjective(init_seed=99), cut).fit(resume=True)
    assert_same_weights(weights(Path(full.out_dir)), weights(Path(cut.out_dir)))
    keys = ("epoch", "global_step", "lr", "train_loss", "train_mae", "val_mse")
    assert [{k: r[k] for k in keys} for r in history(Path(cut.out_dir))] == [
        {k: r[k] for k in keys} for r in history(Path(full.out_dir))
    ]


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    full = config(tmp_path, "full")
    Trainer(ToyObjective(), full).fit()
    cut = config(tmp_path, "cut")  # no periodic checkpoints: only the interrupt saves mid-epoch
    with pytest.raises(KeyboardInterrupt):
        Trainer(ToyObjective(interrupt_at=11), cut).fit()
    meta = json.loads((Path(cut.out_dir) / "last.json").read_text())
    assert (meta["progress"]["epoch"], meta["progress"]["batch"]) == (1, 2)
    Trainer(ToyObjective(), cut).fit(resume=True)
    assert_same_weights(weights(Path(full.out_dir)), weights(Path(cut.out_dir)))


def test_interrupt_during_evaluation_resumes_with_that_evaluation(tmp_path):
    class InterruptedEvaluation(ToyObjective):
        def evaluate(self):
            raise KeyboardInterrupt

    full = config(tmp_path, "full", epochs=2)
    Trainer(ToyObjective(), full).fit()
    cut = config(tmp_path, "cut", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(InterruptedEvaluation(), cut).fit()
    meta = json.loads((Path(cut.out_dir) / "last.json").read_text())
    assert (meta["progress"]["epoch"], meta["progress"]["batch"]) == (0, 8)  # trained, not scored
    Trainer(ToyObjective(), cut).fit(resume=True)
    assert [r["epoch"] for r in history(Path(cut.out_dir))] == [1, 2]
    assert_same_weights(weights(Path(full.out_dir)), weights(Path(cut.out_dir)))


def test_refuses_to_overwrite_a_run_unless_asked(tmp_path):
    cfg = config(tmp_path, epochs=1)
    Trainer(ToyObjective(), cfg).fit()
    with pytest.raises(ConfigError, match=r"already holds a training run.*--resume.*--overwrite"):
        Trainer(ToyObjective(), cfg).fit()
    summary = Trainer(ToyObjective(), cfg).fit(overwrite=True)
    assert summary["global_step"] == ToyObjective().steps_per_epoch()
    assert len(history(Path(cfg.out_dir))) == 1


def test_resume_refuses_a_checkpoint_with_other_settings(tmp_path):
    Trainer(ToyObjective(), config(tmp_path, epochs=1)).fit()
    with pytest.raises(ConfigError, match=r"lr: checkpoint 0\.05, now 0\.1.*original settings"):
        Trainer(ToyObjective(), config(tmp_path, epochs=1, lr=0.1)).fit(resume=True)
    with pytest.raises(ConfigError, match=r"model_config\.dim"):
        Trainer(ToyObjective(dim=5), config(tmp_path, epochs=1)).fit(resume=True)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        Trainer(ToyObjective(n=80), config(tmp_path, epochs=1)).fit(resume=True)
    # Where it writes may change; a finished run resumes to the same end, with no new steps.
    summary = Trainer(ToyObjective(), config(tmp_path, epochs=1, checkpoint_minutes=3)).fit(
        resume=True
    )
    assert summary["global_step"] == ToyObjective().steps_per_epoch()


def test_snapshots_every_n_steps_hold_the_model_of_that_step_and_survive_a_resume(tmp_path):
    full = config(tmp_path, "full", epochs=2)
    Trainer(ToyObjective(), full).fit()
    cut = config(tmp_path, "cut", epochs=2, snapshot_steps=5, checkpoint_minutes=0)
    with pytest.raises(Kill):
        Trainer(ToyObjective(fail_at=12), cut).fit()
    Trainer(ToyObjective(), cut).fit(resume=True)  # steps 5, 10 before the kill, 15 after
    snaps = sorted(p.stem for p in (Path(cut.out_dir) / "snapshots").glob("*.safetensors"))
    assert snaps == ["step-000005", "step-000010", "step-000015"]
    last = load_file(str(Path(cut.out_dir) / "snapshots" / "step-000015.safetensors"))
    assert not all(torch.equal(v, weights(Path(cut.out_dir))[k]) for k, v in last.items())
    # The snapshot of the final step is the final model; snapshots change nothing else.
    cut16 = config(tmp_path, "cut16", epochs=2, snapshot_steps=16)
    Trainer(ToyObjective(), cut16).fit()
    final = load_file(str(Path(cut16.out_dir) / "snapshots" / "step-000016.safetensors"))
    assert_same_weights(final, weights(Path(full.out_dir)))
    assert_same_weights(weights(Path(cut16.out_dir)), weights(Path(full.out_dir)))
    with pytest.raises(ConfigError, match="snapshot_steps"):
        TrainConfig(snapshot_steps=0)


def test_resume_without_a_checkpoint_starts_a_new_run(tmp_path):
    cfg = config(tmp_path, epochs=1)
    summary = Trainer(ToyObjective(), cfg).fit(resume=True)
    assert summary["global_step"] == ToyObjective().steps_per_epoch()


def test_a_kill_while_saving_resumes_from_the_previous_checkpoint(tmp_path, monkeypatch):
    import irad.checkpoint as ckpt

    full = config(tmp_path, "full")
    Trainer(ToyObjective(), full).fit()

    # Die at the end of epoch 2, after last.safetensors is written and before last.json is.
    cut = config(tmp_path, "cut")
    real_write, written = ckpt.atomic_write_bytes, []

    def dying(path, data):
        if Path(path).name == "last.json" and written.count("last.json") == 1:
            raise Kill
        written.append(Path(path).name)
        return real_write(path, data)

    monkeypatch.setattr(ckpt, "atomic_write_bytes", dying)
    with pytest.raises(Kill):
        Trainer(ToyObjective(), cut).fit()
    monkeypatch.undo()
    out = Path(cut.out_dir)
    with pytest.raises(TornCheckpoint):
        load_state(out / "last")  # new weights, old JSON: refused, never mixed
    assert load_state(out / "previous")[1]["progress"]["epoch"] == 1  # kept until committed
    with pytest.warns(UserWarning, match=r"not the weights file.*resuming from the previous"):
        Trainer(ToyObjective(init_seed=99), cut).fit(resume=True)
    assert_same_weights(weights(Path(full.out_dir)), weights(out))
    assert [r["epoch"] for r in history(out)] == [1, 2, 3]


def test_a_torn_checkpoint_without_a_previous_one_is_refused(tmp_path):
    cfg = config(tmp_path, epochs=1)
    Trainer(ToyObjective(), cfg).fit()
    out = Path(cfg.out_dir)
    assert not (out / "previous.json").exists()  # one save only
    save_state(tmp_path / "other", {"w": torch.zeros(1)}, {})
    (tmp_path / "other.safetensors").replace(out / "last.safetensors")
    with pytest.raises(CheckpointError, match=r"cannot resume .*not the weights file.*--overwrite"):
        Trainer(ToyObjective(), cfg).fit(resume=True)


_HOLD_LOCK = """
import sys, time
from irad.utils.lock import RunLock
RunLock(sys.argv[1], purpose="another training").acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_run_into_a_busy_folder_fails_at_once(tmp_path):
    from irad.utils.lock import RunFolderBusy

    cfg = config(tmp_path, epochs=1)
    out = Path(cfg.out_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(RunFolderBusy, match=rf"in use by pid {holder.pid} .*another folder"):
            Trainer(ToyObjective(), cfg).fit()
        assert time.monotonic() - started < 10
        assert [p.name for p in out.iterdir()] == [".lock"]  # nothing read or written
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is stale, and the run goes ahead (and lets go of the folder).
    with pytest.warns(UserWarning, match="stale lock"):
        Trainer(ToyObjective(), cfg).fit()
    assert (out / "model.safetensors").is_file() and not (out / ".lock").exists()


def test_divergence_is_reported(tmp_path):
    class Exploding(ToyObjective):
        def loss(self, batch):
            loss, metrics = super().loss(batch)
            return loss * float("nan"), metrics

    with pytest.raises(ConfigError, match=r"diverged.*lower the learning rate"):
        Trainer(Exploding(), config(tmp_path, epochs=1)).fit()


def test_bad_objectives_and_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"lacks.*steps_per_epoch"):
        Trainer(object(), config(tmp_path))

    with pytest.raises(ConfigError, match=r"batches of 16.*batch_size is 8"):
        Trainer(ToyObjective(batch_size=16), config(tmp_path)).fit()
    with pytest.raises(ConfigError, match="unknown optimizer 'adamw'"):
        TrainConfig(optimizer="adamw")
    with pytest.raises(ConfigError, match="unknown schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ConfigError, match="warmup"):
        TrainConfig(warmup=1.5)


def test_config_round_trip_and_resumable_fields():
    cfg = TrainConfig(optimizer="adam", betas=(0, 0.9), out_dir=Path("runs/a"))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.betas == (0.0, 0.9)
    moved = TrainConfig(optimizer="adam", betas=(0, 0.9), out_dir="elsewhere", device="cuda")
    assert cfg.differences(moved) == {}
    assert cfg.differences(TrainConfig(optimizer="adam", betas=(0, 0.9), epochs=6)) == {
        "epochs": (5, 6)
    }


# -- schedules ---------------------------------------------------------------------------------


def lr_curve(cfg: TrainConfig, total: int) -> np.ndarray:
    opt = build_optimizer(nn.Linear(2, 2).parameters(), cfg)
    sched = build_scheduler(opt, cfg, total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


def test_onecycle_rises_to_lr_then_anneals_to_near_zero():
    lrs = lr_curve(TrainConfig(lr=0.4), 100)
    peak = int(lrs.argmax())
    assert lrs[0] == pytest.approx(0.4 / 25)
    assert lrs.max() == pytest.approx(0.4)
    assert 20 <= peak <= 26  # warm-up: a quarter of the steps
    assert np.all(np.diff(lrs[: peak + 1]) > 0) and np.all(np.diff(lrs[peak:]) < 0)
    assert lrs[-1] < 1e-3 * 0.4


def test_cosine_warms_up_linearly_then_decays_to_zero():
    lrs = lr_curve(TrainConfig(lr=0.1, schedule="cosine", warmup=0.1), 100)
    assert np.allclose(np.diff(lrs[:11]), lrs[1] - lrs[0])  # linear ramp
    assert lrs.argmax() == 10 and lrs.max() == pytest.approx(0.1)
    assert np.all(np.diff(lrs[10:]) <= 0) and lrs[-1] < 1e-3 * 0.1
    no_warmup = lr_curve(TrainConfig(lr=0.1, schedule="cosine"), 50)
    assert no_warmup[0] == pytest.approx(0.1) and np.all(np.diff(no_warmup) < 0)


def test_constant_schedule_and_adam_betas_stay_put():
    cfg = TrainConfig(lr=1e-4, optimizer="adam", betas=(0, 0.9), schedule="constant")
    assert np.allclose(lr_curve(cfg, 20), 1e-4)
    warm = lr_curve(TrainConfig(lr=1.0, schedule="constant", warmup=0.25), 20)
    assert np.all(np.diff(warm[:6]) > 0) and np.allclose(warm[5:], 1.0)
    adam = TrainConfig(optimizer="adam", betas=(0, 0.9))  # with the onecycle schedule
    opt = build_optimizer(nn.Linear(2, 2).parameters(), adam)
    sched = build_scheduler(opt, adam, 10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert tuple(opt.param_groups[0]["betas"]) == (0.0, 0.9)  # onecycle does not cycle beta1


@pytest.mark.parametrize("total", [2, 3, 5])
def test_onecycle_copes_with_very_short_runs(total):
    lrs = lr_curve(TrainConfig(lr=0.2), total)
    assert lrs[0] == pytest.approx(0.2 / 25) and lrs.max() <= 0.2 and lrs[-1] < 0.01


def test_epoch_generator_depends_on_seed_and_epoch_only():
    draw = lambda s, e: torch.randperm(50, generator=epoch_generator(s, e))  # noqa: E731
    assert torch.equal(draw(0, 1), draw(0, 1))
    assert not torch.equal(draw(0, 1), draw(0, 2))
    assert not torch.equal(draw(0, 1), draw(1, 1))


# -- DDP helpers -------------------------------------------------------------------------------


def test_shard_batch_takes_each_process_slice():
    batch = {"x": torch.arange(12).view(6, 2), "pair": (torch.arange(6), 3.5)}
    parts = [shard_batch(batch, r, 3) for r in range(3)]
    assert torch.equal(torch.cat([p["x"] for p in parts]), batch["x"])
    assert parts[2]["pair"][0].tolist() == [4, 5] and parts[2]["pair"][1] == 3.5
    with pytest.raises(ConfigError, match="cannot be split evenly over 4"):
        shard_batch(batch, 0, 4)


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from test_train import ToyObjective, config
from irad.train import Trainer
from pathlib import Path
objective = ToyObjective(dropout=0.0)
sizes, loss = [], objective.loss
objective.loss = lambda batch: sizes.append(len(batch[0])) or loss(batch)
Trainer(objective, config(Path({tmp!r}), "ddp", epochs=2)).fit()
assert set(sizes) == {{4}}, sizes  # each process takes half of every batch of 8
"""


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    """torchrun with 2 CPU processes: each takes half of every batch, DDP averages gradients."""
    Trainer(ToyObjective(dropout=0.0), config(tmp_path, "single", epochs=2)).fit()
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--master_port", "29517", str(script)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single, ddp = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-5, atol=1e-6)
    meta = json.loads((tmp_path / "ddp" / "last.json").read_text())
    assert meta["world_size"] == 2
    assert len(history(tmp_path / "ddp")) == 2


# -- the classifier objective --------------------------------------------------------------------


def tiny_images(n: int = 48, size: int = 8, classes: int = 4, seed: int = 0) -> ImageDataset:
    """Images whose class sets the mean colour: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    palette = torch.tensor([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])
    noise = torch.randint(-30, 31, (n, size, size, 3), generator=g)
    x = (palette[y][:, None, None, :] + noise).clamp(0, 255).to(torch.uint8)
    return ImageDataset(x, y, classes=["r", "g", "b", "y"][:classes], name="tiny")


def test_classifier_objective_learns_and_saves_a_loadable_model(tmp_path):
    data = tiny_images(n=32)
    torch.manual_seed(0)
    clf = build_classifier("resnet20", num_classes=4)
    objective = ClassifierObjective(clf, data, data.subset(16), batch_size=16, label_smoothing=0.1)
    cfg = config(tmp_path, epochs=3, batch_size=16, optimizer="adam", lr=3e-3, schedule="constant")
    Trainer(objective, cfg).fit()
    records = history(Path(cfg.out_dir))
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert {"train_acc", "test_acc", "test_loss"} <= set(records[-1])

    loaded = load_classifier(Path(cfg.out_dir) / "model")
    x, _ = data.tensors()
    clf.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x[:4]), clf(x[:4]))
    meta = json.loads((Path(cfg.out_dir) / "model.json").read_text())["metadata"]
    assert meta["training"]["label_smoothing"] == 0.1
    assert meta["training"]["last_evaluation"]["test_acc"] == records[-1]["test_acc"]


def test_classifier_resume_mid_epoch_is_exact(tmp_path):
    """Real batching and crop/flip augmentation, batch-norm buffers: resuming changes nothing."""
    data = tiny_images(n=24)

    def run(name, **kw):
        torch.manual_seed(0)
        clf = build_classifier("resnet20", num_classes=4)
        objective = ClassifierObjective(clf, data, None, batch_size=8)
        original = objective.loss
        calls = {"n": 0}

        def loss(batch):
            calls["n"] += 1
            if calls["n"] == kw.get("fail_at"):
                raise Kill
            return original(batch)

        objective.loss = loss
        extra = {"checkpoint_minutes": 0} if "fail_at" in kw else {}
        return Trainer(objective, config(tmp_path, name, epochs=2, **extra))

    run("full").fit()
    with pytest.raises(Kill):
        run("cut", fail_at=6).fit()  # epoch 2 of 3 steps each, third batch
    run("cut").fit(resume=True)
    assert_same_weights(weights(tmp_path / "full"), weights(tmp_path / "cut"))


def test_classifier_objective_checks_its_inputs():
    data = tiny_images(n=8)
    with pytest.raises(Exception, match="fewer than one batch"):
        ClassifierObjective(build_classifier("resnet20", num_classes=4), data, batch_size=16)
    with pytest.raises(Exception, match="num_classes=4"):
        ClassifierObjective(build_classifier("resnet20", num_classes=3), data, batch_size=4)


# -- the command line --------------------------------------------------------------------------


def test_train_classifier_help_has_examples():
    from typer.testing import CliRunner

    from irad.cli import app

    result = CliRunner().invoke(app, ["train-classifier", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output and "--resume" in result.output
    assert "irad train-classifier --model resnet20" in result.output


def test_train_classifier_cli_writes_a_model_that_loads(tmp_path):
    from typer.testing import CliRunner

    from irad.cli import app

    data = tiny_images(n=24)
    np.savez(tmp_path / "tiny.npz", x=data.x.numpy(), y=data.y.numpy())
    out = tmp_path / "run"
    args = ["train-classifier", "--dataset", str(tmp_path / "tiny.npz")]
    args += ["--eval-dataset", str(tmp_path / "tiny.npz"), "--eval-n", "8"]
    args += ["--model", "resnet20", "--epochs", "1", "--batch-size", "8"]
    args += ["--max-steps-per-epoch", "2", "--out", str(out), "--device", "cpu", "--no-progress"]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    clf = load_classifier(out / "model.safetensors")
    assert clf.num_classes == 4 and clf.config["arch"] == "resnet20"
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["images"] == 24 and 0 <= evaluation["accuracy"] <= 1

    again = runner.invoke(app, args)  # same folder, no --resume
    assert isinstance(again.exception, ConfigError)
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
