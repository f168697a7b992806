"""``irad train-...`` commands: thin wrappers that build an objective and run the one trainer.

Every command shares the training options below (``Epochs``, ``Lr``, ``Resume``, ...) and
:func:`run_training`; a new command (``train-inr``, ``train-samplenet``) declares the options it
needs with its own defaults, builds its objective, and calls :func:`run_training`.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer

from irad.cli.options import (
    DataDir,
    Device,
    Progress,
    Subset,
    SubsetSeed,
    Threads,
    pick_subset,
    set_threads,
    subset_size,
)
from irad.errors import ConfigError

# -- options shared by every train command (defaults are given per command) --------------------
Epochs = Annotated[int, typer.Option(min=1, help="Passes over the training set.")]
BatchSize = Annotated[
    int, typer.Option(min=1, help="Samples per step (summed over processes under torchrun).")
]
Lr = Annotated[float, typer.Option(min=0.0, help="Learning rate (peak rate of the schedule).")]
Optimizer = Annotated[str, typer.Option(help="sgd or adam.")]
Momentum = Annotated[float, typer.Option(help="SGD momentum (constant).")]
Nesterov = Annotated[bool, typer.Option(help="Nesterov momentum (SGD).")]
WeightDecay = Annotated[float, typer.Option(min=0.0, help="Weight decay (L2).")]
Beta1 = Annotated[float, typer.Option(help="Adam beta1.")]
Beta2 = Annotated[float, typer.Option(help="Adam beta2.")]
Schedule = Annotated[
    str,
    typer.Option(
        help="onecycle (lr/25 up to lr, cosine down to ~0), cosine (optional warm-up, then "
        "cosine to 0) or constant; stepped every batch."
    ),
]
PresetSchedule = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help="onecycle, cosine or constant, stepped every batch (default: the preset's; stage 1: "
        "paper constant, cpu cosine; stage 2: constant).",
    ),
]
Warmup = Annotated[
    float | None,
    typer.Option(
        help="Fraction of all steps spent warming up (default: 0.25 for onecycle, 0 otherwise)."
    ),
]
# the IRAD stages' numbers, whose defaults come from the preset (``None``: the preset's)
PresetEpochs = Annotated[int | None, typer.Option(min=1, help="Default: the preset's.")]
PresetBatchSize = Annotated[int | None, typer.Option(min=1, help="Default: the preset's.")]
PresetBeta1 = Annotated[float | None, typer.Option(help="Default: the preset's (0).")]
PresetBeta2 = Annotated[float | None, typer.Option(help="Default: the preset's (0.9).")]
GradClip = Annotated[float | None, typer.Option(help="Clip the gradient norm to this value.")]
Seed = Annotated[
    int, typer.Option(min=0, help="Seeds initialisation, data order, augmentation, dropout.")
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Run folder (checkpoints, history, final model). Default: runs/<model>."
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the run in --out from its last checkpoint (mid-epoch if it was "
        "interrupted); starts a new run if there is none.",
    ),
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --out.")]
CheckpointMinutes = Annotated[
    float,
    typer.Option(
        min=0.0, help="Also checkpoint mid-epoch every this many minutes (0: every step)."
    ),
]
SnapshotSteps = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Also save the model every N steps to RUN/snapshots/step-NNNNNN (for curves of "
        "held-out accuracy against training steps).",
    ),
]
MaxSteps = Annotated[
    int | None, typer.Option(min=1, help="Cut each epoch after this many steps (quick runs).")
]
Precision = Annotated[str, typer.Option(help="fp32, or bf16 autocast (GPUs).")]


def run_training(objective: Any, config: Any, *, resume: bool, overwrite: bool) -> dict[str, Any]:
    """Print the settings (rank 0), fit, and return the trainer's summary."""
    from irad.train import Trainer
    from irad.train.distributed import context_from_env

    if context_from_env().is_main:
        settings = {k: v for k, v in config.to_dict().items() if k != "progress"}
        typer.echo("config: " + json.dumps(settings), err=True)
    return Trainer(objective, config).fit(resume=resume, overwrite=overwrite)


def _train_config(defaults: dict[str, Any], flags: dict[str, Any], **fixed: Any) -> Any:
    """The run's :class:`~irad.train.TrainConfig`: the one place where flags become settings.

    ``flags`` are a command's options (``dict(locals())`` on entry); those named like a
    TrainConfig field, and ``beta1`` / ``beta2``, override ``defaults`` (a preset stage's
    settings, or none) unless they are ``None`` (not given); ``fixed`` holds values the command
    derived (the run folder).
    """
    from irad.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)} | {"beta1", "beta2"}
    options = {k: v for k, v in flags.items() if k in names} | fixed
    return TrainConfig.from_options(defaults, **options)


# Old name, still imported by cli/diffusion.py; new code imports irad.cli.options.set_threads.
_set_threads = set_threads


def _prepare(threads: int | None, device: str, out: Path) -> None:
    """Before any work: threads, the device and a writable run folder."""
    from irad.utils.env import resolve_device
    from irad.utils.io import check_writable_folder

    set_threads(threads)
    resolve_device(device)
    check_writable_folder(out, "--out")


# -- train-classifier ---------------------------------------------------------------------------
CLASSIFIER_EPILOG = """\
Examples:

\b
  # ResNet-20 on CIFAR-10, 5 epochs: 83.4 % test accuracy, 32 min on a shared 2-core CPU
  # (40 epochs: 91.3 %, 2 hours; the classifier the package ships)
  export IRAD_DATA=../shared/data/cifar10
  irad train-classifier --model resnet20 --epochs 5 --out runs/resnet20
\b
  # continue it after Ctrl-C or a kill (mid-epoch, same result as uninterrupted)
  irad train-classifier --model resnet20 --epochs 5 --out runs/resnet20 --resume
\b
  # then measure it on the whole test set
  irad classify --weights runs/resnet20/model
\b
  # a WideResNet on 4 GPUs (batch 512 split over the processes)
  torchrun --nproc_per_node 4 --no-python irad train-classifier \\
      --model wrn-28-10 --epochs 100 --batch-size 512 --lr 0.4 --schedule cosine --out runs/wrn
\b
  # your own data: an .npz file (x uint8 [N,H,W,3], y int [N]) or an image folder with one
  # sub-folder per class (label k = k-th sub-folder name, sorted); mean/std are computed on
  # the training images and saved with the class names (docs/own-data.md)
  irad train-classifier --dataset data/train --eval-dataset data/test --subset stratified \\
      --model resnet20 --out runs/clf
"""


def train_classifier(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Architecture: resnet20, resnet56, wrn-28-10, ...")
    ] = "resnet20",
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="Training data: cifar10, cifar100, an .npz file or a folder."
        ),
    ] = "cifar10",
    eval_dataset: Annotated[
        str | None,
        typer.Option(
            help="Evaluation data (default: the test split of a named --dataset; none for a path)."
        ),
    ] = None,
    data_dir: DataDir = None,
    train_n: Annotated[
        int | None, typer.Option(min=1, help="Train on N training images only (see --subset).")
    ] = None,
    eval_n: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Evaluate on N evaluation images after every epoch, picked by --subset "
            "(default: 1000, or all if fewer; 0: never).",
        ),
    ] = None,
    subset: Subset = "first",
    subset_seed: SubsetSeed = 0,
    mean: Annotated[
        str | None,
        typer.Option(
            help="Input normalisation mean per channel, 'R,G,B' in [0, 1] (default: CIFAR-10's "
            "for cifar10/cifar100, else computed on the training images); saved with the model.",
        ),
    ] = None,
    std: Annotated[
        str | None,
        typer.Option(help="Input normalisation std per channel, 'R,G,B' (default: as --mean)."),
    ] = None,
    final_eval: Annotated[
        bool, typer.Option(help="After training, evaluate on the whole evaluation set.")
    ] = True,
    epochs: Epochs = 5,
    batch_size: BatchSize = 128,
    lr: Lr = 0.2,
    optimizer: Optimizer = "sgd",
    momentum: Momentum = 0.9,
    nesterov: Nesterov = True,
    weight_decay: WeightDecay = 5e-4,
    beta1: Beta1 = 0.9,
    beta2: Beta2 = 0.999,
    schedule: Schedule = "onecycle",
    warmup: Warmup = None,
    label_smoothing: Annotated[
        float, typer.Option(min=0.0, max=0.99, help="Cross-entropy label smoothing.")
    ] = 0.1,
    augment: Annotated[
        bool, typer.Option(help="Random crop (padding 4) and horizontal flip of training images.")
    ] = True,
    channels_last: Annotated[
        bool, typer.Option(help="Channels-last memory layout (faster convolutions on CPUs).")
    ] = True,
    grad_clip: GradClip = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    threads: Threads = None,
    checkpoint_minutes: CheckpointMinutes = 5.0,
    max_steps_per_epoch: MaxSteps = None,
    precision: Precision = "fp32",
    progress: Progress = True,
) -> None:
    """Train an image classifier (SGD, one-cycle or cosine schedule, crop+flip augmentation).

    Writes RUN/model.safetensors + model.json (load with `irad classify --weights RUN/model`),
    RUN/last.* (resumable checkpoint, every epoch and every --checkpoint-minutes),
    RUN/history.jsonl (per-epoch metrics) and RUN/summary.json.
    """
    flags = dict(locals())  # the options as given, before any other local exists
    from irad.data import load_dataset
    from irad.data.classes import check_dataset_classes
    from irad.models import build_classifier
    from irad.train import ClassifierObjective, write_evaluation
    from irad.train.distributed import context_from_env
    from irad.utils.seed import seed_everything

    out_dir = out if out is not None else Path("runs") / model
    given = _given_stats(mean, std)  # bad values are refused before any work
    _prepare(threads, device, out_dir)
    main = context_from_env().is_main
    train = load_dataset(dataset, "train", data_dir)
    train = pick_subset(train, train_n, None, "--train-n", subset, subset_seed)
    evaluation = None
    if eval_dataset is not None:
        evaluation = load_dataset(eval_dataset, "test", data_dir)
    elif not Path(dataset).exists():  # a named data set has a test split
        evaluation = load_dataset(dataset, "test", data_dir)
    per_epoch = None
    if evaluation is not None and eval_n != 0:
        per_epoch = pick_subset(evaluation, eval_n, 1000, "--eval-n", subset, subset_seed)

    config = _train_config({}, flags, out_dir=out_dir)
    stats = _normalisation(dataset, train, given, main)
    seed_everything(seed)  # the initial weights
    classifier = build_classifier(
        model,
        num_classes=len(train.classes),
        mean=stats[0],
        std=stats[1],
        classes=train.classes,
    )
    if evaluation is not None:  # label k must mean the same class as in training
        check_dataset_classes(classifier, evaluation)
    objective = ClassifierObjective(
        classifier,
        train,
        per_epoch,
        batch_size=config.batch_size,
        label_smoothing=label_smoothing,
        augment="default" if augment else None,
        channels_last=channels_last,
    )
    if main:
        typer.echo(
            f"data: {train.description} ({len(train)} images, {len(train.classes)} classes); "
            f"evaluation: {per_epoch.description if per_epoch else 'none'}",
            err=True,
        )
    summary = run_training(objective, config, resume=resume, overwrite=overwrite)
    if not main:
        return
    final = summary["final"]
    shown = ", ".join(f"{k} {v:.4g}" for k, v in final.items() if k.endswith(("_acc", "_loss")))
    minutes = summary["train_seconds"] / 60
    typer.echo(f"trained {model} for {epochs} epochs in {minutes:.1f} min: {shown}")
    if final_eval and evaluation is not None:
        record = write_evaluation(classifier, evaluation, out_dir, channels_last=channels_last)
        typer.echo(
            f"accuracy on {record['dataset']} ({record['images']} images): "
            f"{100 * record['accuracy']:.2f} %"
        )
    typer.echo(f"model: {summary['model']}")


def _channel_values(text: str, option: str) -> list[float]:
    """``--mean`` / ``--std``: three comma-separated numbers (R, G, B)."""
    from irad.checks import check_float

    parts = [t for t in text.replace(" ", ",").split(",") if t]
    if len(parts) != 3:
        raise typer.BadParameter(
            f"give three comma-separated numbers (R,G,B), e.g. 0.49,0.48,0.45; got {text!r}",
            param_hint=option,
        )
    return [check_float(t, option, 0, 1, text=True) for t in parts]


def _given_stats(
    mean: str | None, std: str | None
) -> tuple[list[float] | None, list[float] | None]:
    """``--mean`` and ``--std`` parsed and checked (``None``: not given)."""
    given_mean = _channel_values(mean, "--mean") if mean is not None else None
    given_std = _channel_values(std, "--std") if std is not None else None
    if given_std is not None and min(given_std) <= 0:
        raise typer.BadParameter(f"every std must be positive, got {std!r}", param_hint="--std")
    return given_mean, given_std


def _normalisation(
    dataset: str, train: Any, given: tuple[list[float] | None, list[float] | None], main: bool
) -> tuple[list[float], list[float]]:
    """The input normalisation saved with the classifier: the flags, CIFAR-10's statistics for
    a named CIFAR set (as before), else the training images' own (printed)."""
    from irad.data import DATASETS, channel_stats
    from irad.models.classifier import CIFAR10_MEAN, CIFAR10_STD

    given_mean, given_std = given
    if given_mean is not None and given_std is not None:
        return given_mean, given_std
    if dataset in DATASETS:
        how = "CIFAR-10's"
        computed = (list(CIFAR10_MEAN), list(CIFAR10_STD))
    else:
        computed = channel_stats(train)
        size = min(len(train), 10_000)
        how = f"computed on {size} training images"
    out_mean, out_std = given_mean or computed[0], given_std or computed[1]
    if min(out_std) <= 0:
        raise typer.BadParameter(
            f"the training images have a channel with no variation (std {out_std}); pass --std",
            param_hint="--std",
        )
    if main:
        typer.echo(f"normalisation: mean {out_mean} std {out_std} ({how})", err=True)
    return out_mean, out_std


# -- train-inr / train-samplenet (stage 1 and stage 2 of IRAD) ----------------------------------
# Owned by the implicit-representation work (irad.train.inr, irad.train.samplenet); defaults come
# from the preset (irad.models.implicit_presets), which every run prints.
INR_EPILOG = """\
Examples:

\b
  # CPU protocol, the paper's task (PGD denoising) on pairs from `irad prepare-pairs`
  export IRAD_DATA=../shared/data/cifar10
  irad train-inr --preset cpu --pairs pairs/cifar10-r20 --out runs/inr-cpu
\b
  # Table 7 ablation: another task, same clean images, a shorter schedule
  irad train-inr --preset cpu --pairs pairs/cifar10-r20 --task gaussian-denoising \\
      --sigma 8 --epochs 2 --out runs/inr-gaussian
\b
  # resume after an interruption (mid-epoch)
  irad train-inr --preset cpu --pairs pairs/cifar10-r20 --out runs/inr-cpu --resume
"""


def _preset_config(preset: str, **changes: Any) -> Any:
    """The named preset with the fields in ``changes`` that are not ``None`` replaced."""
    from irad.models.implicit_presets import get_preset

    p = get_preset(preset)
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        try:
            p = p.replace(**changes)
            p.representation_config()  # validates the changed sizes
        except ConfigError as err:
            raise typer.BadParameter(str(err)) from err
    return p


def _show_preset(p: Any, stage: str, config: Any, train_count: int, pairs: Any | None) -> Any:
    """Print the preset as this run uses it: the stage's epochs, batch size, rate and training
    count as the flags set them, and the pairs actually given; returns that preset."""
    trained = getattr(p, stage).replace(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        betas=tuple(config.betas),
        schedule=config.schedule,
        train_n=train_count,
    )
    changes: dict[str, Any] = {stage: trained}
    if pairs is not None:
        made = pairs.manifest.get("config", {})
        changes["pairs_n"] = int(pairs.manifest.get("data", {}).get("n", len(pairs)))
        changes["pairs_steps"] = made.get("steps", p.pairs_steps)
        other = "samplenet" if stage == "inr" else "inr"
        preset_n = getattr(p, other).train_n
        capped = len(pairs) if preset_n is None else min(preset_n, len(pairs))
        changes[other] = getattr(p, other).replace(train_n=capped)
    shown = p.replace(**changes)
    what = "pairs" if pairs is not None else "images"
    name = "stage 1" if stage == "inr" else "stage 2"
    typer.echo(f"{shown.summary()}; this run: {name} on {train_count} {what}", err=True)
    return shown


def _training_pairs(
    pairs: Path,
    train_n: int | None,
    default_n: int | None,
    eval_pairs: Path | None,
    data_dir: Path | None,
    subset: str = "first",
    subset_seed: int = 0,
) -> tuple[Any, Any, Any]:
    """``(training pairs, evaluation pairs, all pairs)``: ``train_n`` pairs
    (:func:`~irad.cli.options.subset_size`) picked by ``subset``, and the pairs to evaluate on.

    Without ``eval_pairs``, evaluate on the pairs left out of training (held out) when there are
    any, else on the training pairs.
    """
    from irad.data import select_subset
    from irad.train.pairs import PairDataset

    full = PairDataset(pairs, data_dir=data_dir)
    limit = subset_size(train_n, default_n, len(full), "--train-n", f"pairs in {pairs}")
    held_out: Any = None
    if limit is None:
        data = full
    elif subset == "first":  # row ranges: the record of runs made before --subset existed
        data = full.head(limit)
        held_out = full.rows(limit) if len(full) > limit else None
    else:
        data = select_subset(full, limit, subset, subset_seed)
        held_out = full.complement(data)
    if eval_pairs is not None:
        return data, PairDataset(eval_pairs, data_dir=data_dir), full
    if held_out is None:
        typer.echo(
            f"warning: every pair of {pairs} trains and no --eval-pairs was given, so the "
            "per-epoch evaluation scores training pairs; pass --eval-pairs (e.g. pairs made "
            "with --split test) or --train-n N to hold pairs out",
            err=True,
        )
        return data, data, full
    return data, held_out, full


def _eval_pairs(
    eval_n: int | None, default: int, evaluation: Any, subset: str, subset_seed: int
) -> tuple[Any, int]:
    """``--eval-n`` pairs of ``evaluation`` picked by ``--subset``, and their count (0: none)."""
    if eval_n == 0 or evaluation is None:
        return evaluation, 0
    what = f"pairs in {getattr(evaluation, 'root', 'the evaluation pairs')}"
    n = subset_size(eval_n, default, len(evaluation), "--eval-n", what)
    if n is None:
        return evaluation, len(evaluation)
    if subset == "first":  # the objectives evaluate on the first n (head warns if skewed)
        return (evaluation.head(n) if n < len(evaluation) else evaluation), n
    picked = pick_subset(evaluation, n, None, "--eval-n", subset, subset_seed, "pairs")
    return picked, len(picked)


def train_inr(
    pairs: Annotated[
        Path | None,
        typer.Option(help="Pairs folder from `irad prepare-pairs` (needed for pgd-denoising)."),
    ] = None,
    preset: Annotated[str, typer.Option(help="Sizes and defaults: cpu or paper.")] = "cpu",
    task: Annotated[
        list[str] | None,
        typer.Option(
            help="clean2clean, super-resolution, inpainting, gaussian-denoising or pgd-denoising "
            "(repeat to cycle several, batch by batch).",
        ),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(
            help="Clean training data when no --pairs are given: cifar10, cifar100, an .npz "
            "file or an image folder."
        ),
    ] = "cifar10",
    train_n: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Train on N pairs / images, picked by --subset (default: the preset's; 0: all).",
        ),
    ] = None,
    subset: Subset = "first",
    subset_seed: SubsetSeed = 0,
    data_dir: DataDir = None,
    sigma: Annotated[float, typer.Option(help="Gaussian-denoising sigma in /255.")] = 8.0,
    sr_scale: Annotated[int, typer.Option(min=2, help="Super-resolution factor.")] = 2,
    sample_q: Annotated[
        int | None,
        typer.Option(min=0, help="Query pixels per image (default: the preset's; 0: all)."),
    ] = None,
    skip: Annotated[
        str | None,
        typer.Option(
            help="Decoder skip: none (LIIF, the paper) or bilinear (predict a correction to the "
            "bilinearly sampled input). Default: the preset's (paper none, cpu bilinear)."
        ),
    ] = None,
    eval_pairs: Annotated[
        Path | None,
        typer.Option(
            help="Pairs for the per-epoch PSNR (default: --pairs beyond --train-n if any, else "
            "the first training pairs)."
        ),
    ] = None,
    eval_n: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Pairs in the per-epoch evaluation (default: 256, or all if fewer; 0: none).",
        ),
    ] = None,
    epochs: PresetEpochs = None,
    batch_size: PresetBatchSize = None,
    lr: Annotated[
        float | None, typer.Option(min=0.0, help="Default: the preset's (paper 1e-4, cpu 5e-4).")
    ] = None,
    beta1: PresetBeta1 = None,
    beta2: PresetBeta2 = None,
    schedule: PresetSchedule = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    threads: Threads = None,
    checkpoint_minutes: CheckpointMinutes = 5.0,
    max_steps_per_epoch: MaxSteps = None,
    snapshot_steps: SnapshotSteps = None,
    progress: Progress = True,
) -> None:
    """Stage 1: train the implicit representation (EDSR encoder + LIIF decoder) with L1.

    Writes RUN/model.safetensors + model.json (load with ImplicitReconstruction.from_pretrained
    or `irad quality --recons RUN`), RUN/last.* (resumable), RUN/history.jsonl.
    """
    flags = dict(locals())  # the options as given, before any other local exists
    from irad.data import load_dataset
    from irad.train.inr import ImplicitRepresentationObjective
    from irad.train.pairs import PairDataset
    from irad.utils.seed import seed_everything

    out_dir = out if out is not None else Path("runs") / f"inr-{preset}"
    _prepare(threads, device, out_dir)
    p = _preset_config(preset, skip=skip)
    tasks = task or ["pgd-denoising"]
    data: Any
    all_pairs = None
    if pairs is not None:
        data, evaluation, all_pairs = _training_pairs(
            pairs, train_n, p.inr.train_n, eval_pairs, data_dir, subset, subset_seed
        )
    else:
        evaluation = PairDataset(eval_pairs, data_dir=data_dir) if eval_pairs else None
        data = load_dataset(dataset, "train", data_dir)
        data = pick_subset(data, train_n, p.inr.train_n, "--train-n", subset, subset_seed)
    evaluation, eval_count = _eval_pairs(eval_n, 256, evaluation, subset, subset_seed)
    config = _train_config(p.inr.config_fields(), flags, out_dir=out_dir)
    _show_preset(p, "inr", config, len(data), all_pairs)
    seed_everything(seed)  # the initial weights
    q = p.inr_sample_q if sample_q is None else (sample_q or None)
    objective = ImplicitRepresentationObjective.from_preset(
        p,
        data,
        tasks,
        batch_size=config.batch_size,
        sample_q=q,
        eval_data=evaluation,
        eval_n=eval_count,
        task_kwargs={"sigma": sigma, "scale": sr_scale},
    )
    typer.echo(
        f"tasks: {[t.config() for t in objective.tasks]}; data: {data!r} ({len(data)} images)",
        err=True,
    )
    summary = run_training(objective, config, resume=resume, overwrite=overwrite)
    typer.echo(f"model: {summary['model']}")


SAMPLENET_EPILOG = """\
Examples:

\b
  # CPU protocol: SampleNet on the stage-1 model, surrogate ResNet-20; held-out pairs for the
  # per-epoch evaluation (the preset trains on every pair of --pairs)
  export IRAD_DATA=../shared/data/cifar10
  irad train-samplenet --representation runs/inr-cpu --pairs pairs/cifar10-r20 \\
      --eval-pairs pairs/cifar10-r20-test1000 \\
      --weights ../shared/data/weights/resnet20-12fca82f.th --out runs/irad-cpu
\b
  # the official release's layout (own encoder copy fed [0, 1], shifts in [-1, 1] units)
  irad train-samplenet --representation runs/inr-cpu --pairs pairs/cifar10-r20 \\
      --weights resnet20-12fca82f.th --official-layout --out runs/irad-official
\b
The classifier must have the pairs' classes (label k = output k): one trained on another
data set is refused.
"""


def train_samplenet(
    representation: Annotated[
        str, typer.Option(help="Stage-1 checkpoint (RUN folder or prefix from train-inr).")
    ],
    pairs: Annotated[Path, typer.Option(help="Pairs folder from `irad prepare-pairs`.")],
    weights: Annotated[
        str, typer.Option("--weights", "-w", help="Frozen classifier (the surrogate).")
    ],
    surrogate: Annotated[
        str | None, typer.Option("--surrogate", "-m", help="Its architecture (resnet20, ...).")
    ] = None,
    preset: Annotated[str, typer.Option(help="Defaults: cpu or paper.")] = "cpu",
    official_layout: Annotated[
        bool,
        typer.Option(
            help="SampleNet with its own frozen encoder copy fed [0, 1] and shifts in "
            "normalised units, as in the official release (default: shared encoder, pixels)."
        ),
    ] = False,
    render: Annotated[
        str,
        typer.Option(
            help="Render the shifted points with the implicit representation (IRAD) or with a "
            "naive bilinear / nearest reconstruction of the input (Table 15)."
        ),
    ] = "implicit",
    eval_pairs: Annotated[
        Path | None,
        typer.Option(help="Pairs for the per-epoch accuracies (default: the training pairs)."),
    ] = None,
    eval_n: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Pairs in the per-epoch evaluation (default: 200, or all if fewer; 0: none).",
        ),
    ] = None,
    train_n: Annotated[
        int | None,
        typer.Option(
            min=0, help="Train on N pairs, picked by --subset (default: the preset's; 0: all)."
        ),
    ] = None,
    subset: Subset = "first",
    subset_seed: SubsetSeed = 0,
    data_dir: DataDir = None,
    epochs: PresetEpochs = None,
    batch_size: PresetBatchSize = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Default: the preset's (2e-4).")] = None,
    beta1: PresetBeta1 = None,
    beta2: PresetBeta2 = None,
    schedule: PresetSchedule = None,
    seed: Seed = 0,
    out: Out = None,
    resume: Resume = False,
    overwrite: Overwrite = False,
    device: Device = "auto",
    threads: Threads = None,
    checkpoint_minutes: CheckpointMinutes = 5.0,
    max_steps_per_epoch: MaxSteps = None,
    snapshot_steps: SnapshotSteps = None,
    progress: Progress = True,
) -> None:
    """Stage 2: train SampleNet (representation and classifier frozen) with CE on clean + adv.

    Writes RUN/model.* as a complete IRAD checkpoint (IRAD.from_pretrained(RUN)), plus
    RUN/last.* (resumable) and RUN/history.jsonl.
    """
    flags = dict(locals())  # the options as given, before any other local exists
    from irad.data.classes import check_dataset_classes
    from irad.defenses.irad import IRAD
    from irad.models import load_classifier
    from irad.models.samplenet import SampleNetConfig
    from irad.train.samplenet import SampleNetObjective
    from irad.utils.seed import seed_everything

    out_dir = out if out is not None else Path("runs") / f"irad-{preset}"
    _prepare(threads, device, out_dir)
    p = _preset_config(preset)
    data, evaluation, all_pairs = _training_pairs(
        pairs, train_n, p.samplenet.train_n, eval_pairs, data_dir, subset, subset_seed
    )
    classifier = load_classifier(weights, arch=surrogate)
    for part in (data, evaluation) if evaluation is not data else (data,):
        check_dataset_classes(classifier, part)  # label k must be the classifier's output k
    evaluation, eval_count = _eval_pairs(eval_n, 200, evaluation, subset, subset_seed)
    sn_config = (
        SampleNetConfig.official(p.samplenet_hidden) if official_layout else p.samplenet_config()
    )
    try:
        sn_config = replace(sn_config, render=render)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--render") from err
    if render == "nearest":
        raise typer.BadParameter(
            "nearest rendering has no gradient with respect to the sampling points, so stage 2 "
            "cannot train SampleNet through it; evaluate trained shifts rendered with nearest "
            "instead (build_defense('irad', checkpoint=..., render='nearest'))",
            param_hint="--render",
        )
    config = _train_config(p.samplenet.config_fields(), flags, out_dir=out_dir)
    _show_preset(p, "samplenet", config, len(data), all_pairs)
    seed_everything(seed)  # SampleNet's initial weights
    irad = IRAD.from_representation(representation, preset=p, samplenet_config=sn_config)
    objective = SampleNetObjective(
        irad,
        classifier,
        data,
        batch_size=config.batch_size,
        eval_pairs=evaluation,
        eval_n=eval_count,
    )
    summary = run_training(objective, config, resume=resume, overwrite=overwrite)
    typer.echo(f"model: {summary['model']}")


def register(app: typer.Typer) -> None:
    """Add the ``train-*`` commands to ``app``."""
    app.command("train-classifier", epilog=CLASSIFIER_EPILOG)(train_classifier)
    app.command("train-inr", epilog=INR_EPILOG)(train_inr)
    app.command("train-samplenet", epilog=SAMPLENET_EPILOG)(train_samplenet)
