"""``irad train-diffusion``: the score model of DiffPure and IRAD+DiffPure, on the one trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Device, Progress, Threads, set_threads, subset_size
from irad.cli.train import (
    CheckpointMinutes,
    GradClip,
    MaxSteps,
    Overwrite,
    Resume,
    Seed,
    run_training,
)

EPILOG = """\
Examples:

\b
  # the bundled `cpu` purifier: a 2.5 M-parameter UNet on t in [1, 120], CIFAR-10
  export IRAD_DATA=../shared/data/cifar10
  irad train-diffusion --preset cpu --out runs/diffusion-cpu --threads 2
\b
  # continue after a kill
  irad train-diffusion --preset cpu --out runs/diffusion-cpu --threads 2 --resume
\b
  # Ho et al.'s DDPM CIFAR-10 UNet on the whole range, on GPUs
  torchrun --nproc_per_node 4 --no-python irad train-diffusion --preset paper --out runs/ddpm
"""


def train_diffusion(
    preset: Annotated[
        str, typer.Option(help="Sizes and training settings: cpu (2.5 M UNet, t <= 120) or paper.")
    ] = "cpu",
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="cifar10, cifar100, an .npz file or a folder.")
    ] = "cifar10",
    data_dir: DataDir = None,
    eval_n: Annotated[
        int | None,
        typer.Option(
            min=0, help="Held-out test images for the per-epoch PSNR (default 512; 0: none)."
        ),
    ] = None,
    t_max: Annotated[
        int | None, typer.Option(min=1, help="Train on t in [1, T_MAX] (default: the preset's).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Default: the preset's.")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Default: the preset's.")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Default: the preset's.")] = None,
    ema_decay: Annotated[
        float | None, typer.Option(min=0.0, max=0.99999, help="Default: the preset's.")
    ] = None,
    grad_clip: GradClip = 1.0,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/diffusion"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    threads: Threads = None,
    checkpoint_minutes: CheckpointMinutes = 5.0,
    max_steps_per_epoch: MaxSteps = None,
    progress: Progress = True,
) -> None:
    """Train a diffusion purifier (ε-prediction, EMA) for DiffPure and IRAD+DiffPure.

    Writes RUN/model.safetensors + model.json (the EMA weights; load with
    build_defense("diffpure", model="RUN")), RUN/last.* (resumable), RUN/history.jsonl.
    """
    from irad.data import load_dataset
    from irad.models.diffusion import DiffusionConfig, DiffusionModel
    from irad.train.diffusion import DiffusionObjective, diffusion_train_config
    from irad.train.distributed import context_from_env
    from irad.utils.seed import seed_everything

    set_threads(threads)
    model_config = DiffusionConfig.from_preset(preset, **({"t_max": t_max} if t_max else {}))
    config, ema = diffusion_train_config(
        preset,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        ema_decay=ema_decay,
        grad_clip=grad_clip,
        seed=seed,
        out_dir=out,
        device=device,
        checkpoint_minutes=checkpoint_minutes,
        max_steps_per_epoch=max_steps_per_epoch,
        progress=progress,
    )
    train = load_dataset(dataset, "train", data_dir)
    evaluation = None
    if eval_n != 0 and not Path(dataset).exists():  # a named data set has a test split
        test = load_dataset(dataset, "test", data_dir)
        size = subset_size(eval_n, 512, len(test), "--eval-n", f"images of {test.description}")
        evaluation = test if size is None else test.subset(size)
    seed_everything(seed)  # the initial weights
    objective = DiffusionObjective(
        DiffusionModel(model_config),
        train,
        evaluation,
        batch_size=config.batch_size,
        ema_decay=ema,
    )
    if context_from_env().is_main:
        params = sum(p.numel() for p in objective.model.parameters())
        typer.echo(
            f"diffusion preset {preset}: {params / 1e6:.2f} M parameters, t in [1, "
            f"{model_config.t_max}], EMA {ema}; data: {train.description} ({len(train)} images)",
            err=True,
        )
    summary = run_training(objective, config, resume=resume, overwrite=overwrite)
    if context_from_env().is_main:
        final = summary["final"]
        shown = ", ".join(f"{k} {v:.3g}" for k, v in final.items() if "psnr" in k)
        typer.echo(f"trained in {summary['train_seconds'] / 60:.1f} min: {shown}")
        typer.echo(f"model: {summary['model']}")


QUALITY_EPILOG = """\
Examples:

\b
  # the bundled purifier on the first 1000 test images, t = 20 and t = 100
  export IRAD_DATA=../shared/data/cifar10
  irad diffusion-quality --model cifar10 --t 20,100 --n 1000 --json q.json
"""


def diffusion_quality(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Diffusion checkpoint, folder or bundled name.")
    ] = "cifar10",
    t: Annotated[str, typer.Option("--t", help="Comma-separated diffusion steps.")] = "20,100",
    reverse_steps: Annotated[
        int | None, typer.Option(min=1, help="Reverse-chain length (default: t).")
    ] = None,
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Clean images.")] = "cifar10",
    split: Annotated[str, typer.Option(help="Split of a named data set.")] = "test",
    data_dir: DataDir = None,
    n: Annotated[int, typer.Option("--n", min=1, help="The first N images.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1)] = 100,
    classifier: Annotated[
        str | None,
        typer.Option(help="Also measure this classifier's accuracy on the DiffPure outputs (SA)."),
    ] = None,
    seed: Seed = 0,
    threads: Threads = None,
    device: Device = "cpu",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
    progress: Progress = True,
) -> None:
    """PSNR of the noisy x_t, the one-shot estimate and the DiffPure output against the clean
    images, for each t."""
    from irad.checks import check_count
    from irad.data import load_dataset
    from irad.errors import InputError
    from irad.evaluate.denoising import format_denoising_table, run_denoising_quality

    set_threads(threads)
    try:
        steps = [int(s) for s in t.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--t takes comma-separated integers, e.g. 20,100; got {t!r}") from None
    data = load_dataset(dataset, split, data_dir)
    check_count(n, "--n", len(data), f"images of {data.description}")
    record = run_denoising_quality(
        model,
        data.subset(n),
        steps,
        reverse_steps=reverse_steps,
        classifier=classifier,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        json_path=json_out,
        device=device,
    )
    typer.echo(f"{record['n']} images of {data.description}, diffusion model {model}, seed {seed}")
    typer.echo(format_denoising_table(record))


def export_diffusion(
    run: Annotated[Path, typer.Option("--run", help="A train-diffusion run folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint prefix to write.")],
) -> None:
    """Write the EMA weights of a train-diffusion run's latest checkpoint (RUN/last.*) as a
    diffusion checkpoint, e.g. to use a run before it has finished."""
    from irad.train.diffusion import export_ema

    typer.echo(f"wrote {export_ema(run, out)}")


def register(app: typer.Typer) -> None:
    app.command("train-diffusion", epilog=EPILOG)(train_diffusion)
    app.command("diffusion-quality", epilog=QUALITY_EPILOG)(diffusion_quality)
    app.command("export-diffusion")(export_diffusion)
