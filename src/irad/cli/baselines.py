"""``irad train-stl`` and ``irad train-nrp``: Table 2's learned baselines, on the one trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from irad.cli.options import DataDir, Device, Progress, Threads, subset_size
from irad.cli.train import (
    CheckpointMinutes,
    GradClip,
    MaxSteps,
    Overwrite,
    Resume,
    Seed,
    _prepare,
    run_training,
)

Dataset = Annotated[
    str, typer.Option("--dataset", "-d", help="cifar10, cifar100, an .npz file or a folder.")
]
TrainN = Annotated[
    int | None,
    typer.Option(min=0, help="Train on the first N training images (default: all; 0: all)."),
]
EvalN = Annotated[
    int | None,
    typer.Option(min=0, help="Held-out test images for the per-epoch metrics (0: none)."),
]
PresetEpochs = Annotated[int | None, typer.Option(min=1, help="Default: the preset's.")]
PresetBatch = Annotated[int | None, typer.Option(min=1, help="Default: the preset's.")]
PresetLr = Annotated[float | None, typer.Option(min=0.0, help="Default: the preset's.")]


def _data(dataset: str, data_dir: Path | None, train_n: int | None, eval_n: int | None, dflt: int):
    """The training images (the first ``train_n``) and the first ``eval_n`` test images."""
    from irad.data import load_dataset

    train = load_dataset(dataset, "train", data_dir)
    size = subset_size(train_n, None, len(train), "--train-n", f"images of {train.description}")
    train = train if size is None else train.subset(size)
    evaluation = None
    if eval_n != 0 and not Path(dataset).exists():  # a named data set has a test split
        test = load_dataset(dataset, "test", data_dir)
        size = subset_size(eval_n, dflt, len(test), "--eval-n", f"images of {test.description}")
        evaluation = test if size is None else test.subset(size)
    return train, evaluation


def _report(summary: dict, keys: tuple[str, ...]) -> None:
    from irad.train.distributed import context_from_env

    if context_from_env().is_main:
        final = summary["final"]
        shown = ", ".join(f"{k} {final[k]:.4g}" for k in keys if k in final)
        typer.echo(f"trained in {summary['train_seconds'] / 60:.1f} min: {shown}")
        typer.echo(f"model: {summary['model']}")


STL_EPILOG = """\
Examples:

\b
  # the cpu dictionary: 32 filters of 8x8, λ = 0.2, one epoch of 16x16 windows
  export IRAD_DATA=../shared/data/cifar10
  irad train-stl --preset cpu --out runs/stl-cpu --threads 2
  irad evaluate -w ../shared/data/weights/resnet56-4bfd9763.th --defense stl:checkpoint=runs/stl-cpu
\b
  # Sun et al.'s sizes (64 filters of 8x8, 200 iterations) on whole images, on a GPU
  irad train-stl --preset paper --out runs/stl-paper --device cuda
"""


def train_stl(
    preset: Annotated[
        str, typer.Option(help="cpu (32 filters, 40 FISTA iterations) or paper (64, 200).")
    ] = "cpu",
    dataset: Dataset = "cifar10",
    data_dir: DataDir = None,
    train_n: TrainN = None,
    eval_n: EvalN = None,
    atoms: Annotated[int | None, typer.Option(min=1, help="Dictionary filters.")] = None,
    kernel_size: Annotated[int | None, typer.Option(min=1, help="Filter side.")] = None,
    lmbda: Annotated[
        float | None, typer.Option(min=0.0, help="Sparsity weight λ (default 0.2).")
    ] = None,
    iterations: Annotated[int | None, typer.Option(min=1, help="FISTA iterations.")] = None,
    crop: Annotated[
        int | None, typer.Option(min=0, help="Side of the coded training windows (0: whole).")
    ] = None,
    epochs: PresetEpochs = None,
    batch_size: PresetBatch = None,
    lr: PresetLr = None,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/stl"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    threads: Threads = None,
    checkpoint_minutes: CheckpointMinutes = 5.0,
    max_steps_per_epoch: MaxSteps = None,
    progress: Progress = True,
) -> None:
    """Learn STL's convolutional dictionary on clean images (Sun et al. 2019).

    Writes RUN/model.safetensors + model.json (load with build_defense("stl", checkpoint="RUN")
    or --defense stl:checkpoint=RUN), RUN/last.* (resumable), RUN/history.jsonl.
    """
    from irad.models.sparse_coding import ConvSparseCoder, SparseCodingConfig
    from irad.train.stl import DictionaryObjective, stl_train_config
    from irad.utils.seed import seed_everything

    _prepare(threads, device, out)
    sizes = {"atoms": atoms, "kernel_size": kernel_size, "lmbda": lmbda, "iterations": iterations}
    model_config = SparseCodingConfig.from_preset(
        preset, **{k: v for k, v in sizes.items() if v is not None}
    )
    config, crop = stl_train_config(
        preset, epochs=epochs, batch_size=batch_size, lr=lr, crop=crop, seed=seed, out_dir=out,
        device=device, checkpoint_minutes=checkpoint_minutes,
        max_steps_per_epoch=max_steps_per_epoch, progress=progress,
    )  # fmt: skip
    train, evaluation = _data(dataset, data_dir, train_n, eval_n, 100)
    seed_everything(seed)  # the initial dictionary
    objective = DictionaryObjective(
        ConvSparseCoder(model_config), train, evaluation, batch_size=config.batch_size, crop=crop
    )
    typer.echo(
        f"STL preset {preset}: {model_config.atoms} filters of {model_config.kernel_size}x"
        f"{model_config.kernel_size}, λ {model_config.lmbda}, {model_config.iterations} FISTA "
        f"iterations, windows {crop or 'whole'}; data: {train.description} ({len(train)} images)",
        err=True,
    )
    summary = run_training(objective, config, resume=resume, overwrite=overwrite)
    _report(summary, ("train_loss", "train_detail_mse", "eval_psnr", "eval_objective"))


NRP_EPILOG = """\
Examples:

\b
  # the cpu purifier against SSP on the protocol's surrogate (akamaster ResNet-20, layer2)
  export IRAD_DATA=../shared/data/cifar10
  irad train-nrp --preset cpu --extractor ../shared/data/weights/resnet20-12fca82f.th \\
      --out runs/nrp-cpu --threads 2
  irad evaluate -w ../shared/data/weights/resnet56-4bfd9763.th --defense nrp:checkpoint=runs/nrp-cpu
\b
  # NRP's RRDB purifier (64 channels, 23 blocks), on a GPU
  irad train-nrp --preset paper --extractor resnet20-12fca82f.th --out runs/nrp-paper --device cuda
"""


def train_nrp(
    extractor: Annotated[
        str,
        typer.Option(
            "--extractor",
            "-w",
            help="Frozen feature network: a classifier checkpoint (the CPU protocol: the "
            "akamaster resnet20-12fca82f.th surrogate; default: the bundled 'cifar10' ResNet-20).",
        ),
    ] = "cifar10",
    extractor_arch: Annotated[
        str | None, typer.Option(help="Its architecture, for a third-party file.")
    ] = None,
    layer: Annotated[
        str, typer.Option(help="The extractor's sub-module whose output is the feature.")
    ] = "net.layer2",
    preset: Annotated[
        str, typer.Option(help="cpu (4 residual blocks, 32 channels) or paper (RRDB 64x23).")
    ] = "cpu",
    dataset: Dataset = "cifar10",
    data_dir: DataDir = None,
    train_n: TrainN = None,
    eval_n: EvalN = None,
    eps: Annotated[float, typer.Option(min=0.0, help="SSP's L∞ radius, in /255.")] = 16.0,
    ssp_steps: Annotated[int | None, typer.Option(min=0, help="SSP steps (preset's).")] = None,
    ssp_step_size: Annotated[
        float | None, typer.Option(min=0.0, help="SSP step, in /255 (preset's).")
    ] = None,
    noise_std: Annotated[float, typer.Option(min=0.0, help="SSP's initial noise σ.")] = 0.05,
    pixel_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the pixel MSE (100: same order as features).")
    ] = 100.0,
    feature_weight: Annotated[
        float, typer.Option(min=0.0, help="Weight of the feature MSE.")
    ] = 1.0,
    epochs: PresetEpochs = None,
    batch_size: PresetBatch = None,
    lr: PresetLr = None,
    grad_clip: GradClip = None,
    seed: Seed = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/nrp"),
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    threads: Threads = None,
    checkpoint_minutes: CheckpointMinutes = 5.0,
    max_steps_per_epoch: MaxSteps = None,
    progress: Progress = True,
) -> None:
    """Train NRP's purifier against self-supervised perturbations (Naseer et al. 2020).

    Writes RUN/model.safetensors + model.json (load with build_defense("nrp", checkpoint="RUN")
    or --defense nrp:checkpoint=RUN), RUN/last.* (resumable), RUN/history.jsonl.
    """
    from irad.models import load_classifier
    from irad.models.nrp import Purifier, PurifierConfig
    from irad.train.nrp import NRPObjective, nrp_train_config
    from irad.utils.seed import seed_everything

    _prepare(threads, device, out)
    config, ssp = nrp_train_config(
        preset, epochs=epochs, batch_size=batch_size, lr=lr, grad_clip=grad_clip, seed=seed,
        out_dir=out, device=device, checkpoint_minutes=checkpoint_minutes,
        max_steps_per_epoch=max_steps_per_epoch, progress=progress,
    )  # fmt: skip
    if ssp_steps is not None:
        ssp["ssp_steps"] = ssp_steps
    if ssp_step_size is not None:
        ssp["ssp_step_size"] = ssp_step_size / 255
    train, evaluation = _data(dataset, data_dir, train_n, eval_n, 500)
    network = load_classifier(extractor, arch=extractor_arch)
    seed_everything(seed)  # the initial weights
    objective = NRPObjective(
        Purifier(PurifierConfig.from_preset(preset)), network, train, evaluation, layer=layer,
        batch_size=config.batch_size, eps=eps / 255, noise_std=noise_std,
        pixel_weight=pixel_weight, feature_weight=feature_weight, **ssp,
    )  # fmt: skip
    params = sum(p.numel() for p in objective.model.parameters())
    typer.echo(
        f"NRP preset {preset}: {params / 1e6:.3f} M parameters; extractor {extractor} at {layer}; "
        f"SSP ε {eps:g}/255, {ssp['ssp_steps']} steps of {ssp['ssp_step_size'] * 255:g}/255; "
        f"data: {train.description} ({len(train)} images)",
        err=True,
    )
    summary = run_training(objective, config, resume=resume, overwrite=overwrite)
    _report(summary, ("train_loss", "eval_psnr_clean", "eval_psnr_ssp", "eval_feature_ssp"))


def register(app: typer.Typer) -> None:
    app.command("train-stl", epilog=STL_EPILOG)(train_stl)
    app.command("train-nrp", epilog=NRP_EPILOG)(train_nrp)
