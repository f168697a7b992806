"""Training: one :class:`Trainer` for every model; each model brings an :class:`Objective`.

Example:
    >>> from irad.data import load_dataset
    >>> from irad.models import build_classifier
    >>> from irad.train import ClassifierObjective, TrainConfig, Trainer
    >>> config = TrainConfig(epochs=5, batch_size=128, lr=0.2, out_dir="runs/r20")
    >>> objective = ClassifierObjective(
    ...     build_classifier("resnet20"), load_dataset("cifar10", "train"),
    ...     load_dataset("cifar10", "test").subset(1000), batch_size=128)  # doctest: +SKIP
    >>> Trainer(objective, config).fit()  # doctest: +SKIP
    >>> Trainer(objective, config).fit(resume=True)  # after an interruption  # doctest: +SKIP
"""

from irad.train.classifier import ClassifierObjective, evaluate_classifier, write_evaluation
from irad.train.config import (
    OPTIMIZERS,
    RESUMABLE_CHANGES,
    SCHEDULES,
    TrainConfig,
    build_optimizer,
    build_scheduler,
)
from irad.train.distributed import DistributedContext, setup_distributed, shard_batch
from irad.train.inr import ImplicitRepresentationObjective
from irad.train.pairs import PairConfig, PairDataset, generate_pairs, prepare_pairs
from irad.train.samplenet import SampleNetObjective
from irad.train.tasks import TASKS, build_task
from irad.train.trainer import Objective, Trainer, TrainingTerminated, epoch_generator

__all__ = [
    "OPTIMIZERS",
    "RESUMABLE_CHANGES",
    "SCHEDULES",
    "TASKS",
    "ClassifierObjective",
    "DistributedContext",
    "ImplicitRepresentationObjective",
    "Objective",
    "PairConfig",
    "PairDataset",
    "SampleNetObjective",
    "TrainConfig",
    "Trainer",
    "TrainingTerminated",
    "build_optimizer",
    "build_scheduler",
    "build_task",
    "epoch_generator",
    "evaluate_classifier",
    "generate_pairs",
    "prepare_pairs",
    "setup_distributed",
    "shard_batch",
    "write_evaluation",
]
