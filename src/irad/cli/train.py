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

from irad.cli.options import DataDir, Device, Progress, Threads, set_threads, subset_size
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
  # your own data: an .npz file (x uint8 [N,H,W,3], y int [N]) or an image folder
  irad train-classifier --dataset train.npz --eval-dataset test.npz --model resnet18
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
        int | None, typer.Option(min=1, help="Train on the first N training images only.")
    ] = None,
    eval_n: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Evaluate on the first N evaluation images after every epoch (default: 1000, "
            "or all if fewer; 0: never).",
        ),
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
    from irad.models import build_classifier
    from irad.train import ClassifierObjective, write_evaluation
    from irad.train.distributed import context_from_env
    from irad.utils.seed import seed_everything

    out_dir = out if out is not None else Path("runs") / model
    _prepare(threads, device, out_dir)
    main = context_from_env().is_main
    train = load_dataset(dataset, "train", data_dir)
    n = subset_size(train_n, None, len(train), "--train-n", f"images in {train.description}")
    if n is not None:
        train = train.subset(n)
    evaluation = None
    if eval_dataset is not None:
        evaluation = load_dataset(eval_dataset, "test", data_dir)
    elif not Path(dataset).exists():  # a named data set has a test split
        evaluation = load_dataset(dataset, "test", data_dir)
    per_epoch = None
    if evaluation is not None and eval_n != 0:
        what = f"images in {evaluation.description}"
        m = subset_size(eval_n, 1000, len(evaluation), "--eval-n", what)
        per_epoch = evaluation.subset(m) if m is not None else evaluation

    config = _train_config({}, flags, out_dir=out_dir)
    seed_everything(seed)  # the initial weights
    classifier = build_classifier(model, num_classes=len(train.classes))
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
    typer.echo(p.summary(), err=True)
    return p


def _training_pairs(
    pairs: Path,
    train_n: int | None,
    default_n: int | None,
    eval_pairs: Path | None,
    data_dir: Path | None,
) -> tuple[Any, Any]:
    """The first ``train_n`` pairs (:func:`~irad.cli.options.subset_size`) and the pairs to
    evaluate on.

    Without ``eval_pairs``, evaluate on the pairs beyond the training ones (held out from
    training) when there are any, else on the training pairs.
    """
    from irad.train.pairs import PairDataset

    full = PairDataset(pairs, data_dir=data_dir)
    limit = subset_size(train_n, default_n, len(full), "--train-n", f"pairs in {pairs}")
    data = full.head(limit) if limit is not None else full
    if eval_pairs is not None:
        return data, PairDataset(eval_pairs, data_dir=data_dir)
    return data, full.rows(len(data)) if len(full) > len(data) else data


def _eval_count(eval_n: int | None, default: int, evaluation: Any) -> int:
    """``--eval-n`` resolved against the evaluation pairs (0: no evaluation)."""
    if eval_n == 0 or evaluation is None:
        return 0
    what = f"pairs in {getattr(evaluation, 'root', 'the evaluation pairs')}"
    n = subset_size(eval_n, default, len(evaluation), "--eval-n", what)
    return len(evaluation) if n is None else n


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
        str, typer.Option(help="Clean training data when no --pairs are given.")
    ] = "cifar10",
    train_n: Annotated[
        int | None,
        typer.Option(
            min=0, help="Train on the first N pairs / images (default: the preset's; 0: all)."
        ),
    ] = None,
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
    if pairs is not None:
        data, evaluation = _training_pairs(pairs, train_n, p.inr.train_n, eval_pairs, data_dir)
    else:
        evaluation = PairDataset(eval_pairs, data_dir=data_dir) if eval_pairs else None
        data = load_dataset(dataset, "train", data_dir)
        what = f"images in {data.description}"
        limit = subset_size(train_n, p.inr.train_n, len(data), "--train-n", what)
        if limit is not None:
            data = data.subset(limit)
    config = _train_config(p.inr.config_fields(), flags, out_dir=out_dir)
    seed_everything(seed)  # the initial weights
    q = p.inr_sample_q if sample_q is None else (sample_q or None)
    objective = ImplicitRepresentationObjective.from_preset(
        p,
        data,
        tasks,
        batch_size=config.batch_size,
        sample_q=q,
        eval_data=evaluation,
        eval_n=_eval_count(eval_n, 256, evaluation),
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
  # CPU protocol: SampleNet on the stage-1 model, surrogate ResNet-20
  export IRAD_DATA=../shared/data/cifar10
  irad train-samplenet --representation runs/inr-cpu --pairs pairs/cifar10-r20 \\
      --weights ../shared/data/weights/resnet20-12fca82f.th --out runs/irad-cpu
\b
  # the official release's layout (own encoder copy fed [0, 1], shifts in [-1, 1] units)
  irad train-samplenet --representation runs/inr-cpu --pairs pairs/cifar10-r20 \\
      --weights resnet20-12fca82f.th --official-layout --out runs/irad-official
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
        typer.Option(min=0, help="Train on the first N pairs (default: the preset's; 0: all)."),
    ] = None,
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
    progress: Progress = True,
) -> None:
    """Stage 2: train SampleNet (representation and classifier frozen) with CE on clean + adv.

    Writes RUN/model.* as a complete IRAD checkpoint (IRAD.from_pretrained(RUN)), plus
    RUN/last.* (resumable) and RUN/history.jsonl.
    """
    flags = dict(locals())  # the options as given, before any other local exists
    from irad.defenses.implicit import IRAD
    from irad.models import load_classifier
    from irad.models.samplenet import SampleNetConfig
    from irad.train.samplenet import SampleNetObjective
    from irad.utils.seed import seed_everything

    out_dir = out if out is not None else Path("runs") / f"irad-{preset}"
    _prepare(threads, device, out_dir)
    p = _preset_config(preset)
    data, evaluation = _training_pairs(pairs, train_n, p.samplenet.train_n, eval_pairs, data_dir)
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
    seed_everything(seed)  # SampleNet's initial weights
    irad = IRAD.from_representation(representation, preset=p, samplenet_config=sn_config)
    classifier = load_classifier(weights, arch=surrogate)
    objective = SampleNetObjective(
        irad,
        classifier,
        data,
        batch_size=config.batch_size,
        eval_pairs=evaluation,
        eval_n=_eval_count(eval_n, 200, evaluation),
    )
    summary = run_training(objective, config, resume=resume, overwrite=overwrite)
    typer.echo(f"model: {summary['model']}")


def register(app: typer.Typer) -> None:
    """Add the ``train-*`` commands to ``app``."""
    app.command("train-classifier", epilog=CLASSIFIER_EPILOG)(train_classifier)
    app.command("train-inr", epilog=INR_EPILOG)(train_inr)
    app.command("train-samplenet", epilog=SAMPLENET_EPILOG)(train_samplenet)
