"""Presets of the implicit representation and SampleNet: sizes and training settings, as data.

* ``paper``: the paper's sizes (Sec. 4.4, A.1): EDSR-baseline encoder (16 residual blocks,
  64 channels), decoder and SampleNet five-layer MLPs with hidden 256 × 4; stage 1 Adam
  lr 1e-4, betas (0, 0.9), batch 128, L1; stage 2 Adam lr 2e-4, betas (0, 0.9), batch 400;
  pairs from PGD-100 over the whole training set. The number of epochs is not given in the
  paper; ours is marked as our choice.
* ``cpu``: the CPU protocol (``PROTOCOL.md``): a smaller encoder and MLPs, pairs from PGD-10 on
  the whole training set, and random subsets of query pixels per image, chosen so that stage 1
  trains in about 70 minutes and stage 2 in about 40 on one thread of a 2-core CPU.

Every training run prints and records the preset it used (:meth:`ImplicitPreset.to_dict`).

Example:
    >>> p = get_preset("cpu")
    >>> p.representation_config().encoder.n_feats == p.encoder_channels
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from irad.models.edsr import EDSRConfig
from irad.models.liif import ImplicitConfig
from irad.models.samplenet import SampleNetConfig
from irad.registry import Registry


@dataclass(frozen=True)
class StageTraining:
    """How one IRAD stage trains (Adam, no weight decay): settings a preset owns, as data.

    Attributes:
        epochs, batch_size, lr, betas, schedule: the optimiser and its schedule.
        train_n: training images (stage 1) or pairs (stage 2) to use, ``None`` for all.

    Example:
        >>> StageTraining(epochs=2, batch_size=32, lr=2e-4).config_fields()["optimizer"]
        'adam'
    """

    epochs: int
    batch_size: int
    lr: float
    betas: tuple[float, float] = (0.0, 0.9)
    schedule: str = "constant"
    train_n: int | None = None

    def config_fields(self) -> dict[str, Any]:
        """The :class:`irad.train.TrainConfig` fields these settings fix."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "optimizer": "adam",
            "weight_decay": 0.0,
            "betas": tuple(self.betas),
            "schedule": self.schedule,
        }

    def replace(self, **changes: Any) -> StageTraining:
        return replace(self, **changes)


@dataclass(frozen=True)
class ImplicitPreset:
    """Sizes and training settings of the implicit representation and SampleNet.

    Architecture: ``encoder_blocks``, ``encoder_channels``, ``res_scale``, ``decoder_hidden``,
    ``samplenet_hidden``. How stage 1 (``inr``) and stage 2 (``samplenet``) train
    (:class:`StageTraining`), and the adversarial pairs (``pairs_*``); ``inr_sample_q`` is the
    number of random query pixels per image in stage 1 (``None``: every pixel); ``chunk_size``
    is the number of query points per pass at inference.
    """

    name: str
    description: str
    encoder_blocks: int
    encoder_channels: int
    decoder_hidden: tuple[int, ...]
    samplenet_hidden: tuple[int, ...]
    res_scale: float = 1.0
    skip: str = "none"
    # stage 1: implicit representation (Sec. 4.2, A.1)
    inr: StageTraining = StageTraining(epochs=100, batch_size=128, lr=1e-4)
    inr_sample_q: int | None = None
    # adversarial pairs (Sec. 6, A.1)
    pairs_n: int | None = None
    pairs_steps: int = 100
    pairs_eps: float = 8.0
    pairs_alpha: float = 2.0
    # stage 2: SampleNet (A.1)
    samplenet: StageTraining = StageTraining(epochs=20, batch_size=400, lr=2e-4)
    # inference
    chunk_size: int = 8192

    def representation_config(self) -> ImplicitConfig:
        """Architecture of the implicit representation for this preset."""
        return ImplicitConfig(
            encoder=EDSRConfig(
                n_resblocks=self.encoder_blocks,
                n_feats=self.encoder_channels,
                res_scale=self.res_scale,
            ),
            decoder_hidden=tuple(self.decoder_hidden),
            skip=self.skip,
        )

    def samplenet_config(self, **overrides: Any) -> SampleNetConfig:
        """SampleNet settings for this preset (``overrides`` e.g. ``shared_encoder=False``)."""
        return SampleNetConfig(hidden=tuple(self.samplenet_hidden), **overrides)

    def replace(self, **changes: Any) -> ImplicitPreset:
        """A copy with some fields changed (e.g. a shorter schedule for an ablation)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples become lists, at every depth

    def summary(self) -> str:
        """One line for logs: sizes and the main training settings."""
        return (
            f"preset {self.name}: EDSR {self.encoder_blocks} blocks x {self.encoder_channels} ch, "
            f"decoder MLP {list(self.decoder_hidden)} (skip: {self.skip}), "
            f"SampleNet MLP {list(self.samplenet_hidden)}; "
            f"stage 1 Adam lr {self.inr.lr} betas {tuple(self.inr.betas)} batch "
            f"{self.inr.batch_size} x {self.inr.epochs} epochs ({self.inr.schedule}), query "
            f"pixels {self.inr_sample_q or 'all'}; pairs PGD-{self.pairs_steps} on "
            f"{self.pairs_n or 'all'} images; stage 2 Adam lr {self.samplenet.lr} batch "
            f"{self.samplenet.batch_size} x {self.samplenet.epochs} epochs on "
            f"{self.samplenet.train_n or 'all'} pairs"
        )


IMPLICIT_PRESETS: Registry[ImplicitPreset] = Registry("implicit-representation preset")


@IMPLICIT_PRESETS.register("paper")
def paper_preset() -> ImplicitPreset:
    """The paper's sizes and optimiser settings (epochs: our choice, the paper gives none)."""
    return ImplicitPreset(
        name="paper",
        description="Cao et al. 2024 (Sec. 4.4, A.1): EDSR-baseline 16x64, MLPs 256x4",
        encoder_blocks=16,
        encoder_channels=64,
        decoder_hidden=(256, 256, 256, 256),
        samplenet_hidden=(256, 256, 256, 256),
        inr=StageTraining(epochs=100, batch_size=128, lr=1e-4),
        inr_sample_q=None,
        pairs_n=None,
        pairs_steps=100,
        samplenet=StageTraining(epochs=20, batch_size=400, lr=2e-4),
        chunk_size=8192,
    )


@IMPLICIT_PRESETS.register("cpu")
def cpu_preset() -> ImplicitPreset:
    """The CPU protocol: small models trained on all 50,000 CIFAR-10 training pairs (stage 1
    about 68 min, stage 2 about 37 min on one thread of the 2-core machine)."""
    return ImplicitPreset(
        name="cpu",
        # With the fast path (docs/implicit.md) a stage-1 step of 128 images costs about 1 CPU-s
        # and a stage-2 step of 32 pairs about 1.4 CPU-s, so the preset trains on every training
        # image: 10 epochs of 50,000 pairs (3,900 steps) in 68 min and one epoch of stage 2
        # (1,562 steps) in 37 min on one thread. Against 10,000 / 6,000 pairs, this took IRAD
        # from SA 86.8 / RA 68.0 to 89.6 / 80.0 (oblivious AutoAttack, docs/results.md).
        description="CPU protocol: EDSR 4x32, MLPs 128x4 with a bilinear skip, 256 query "
        "pixels per image",
        encoder_blocks=4,
        encoder_channels=32,
        decoder_hidden=(128, 128, 128, 128),
        samplenet_hidden=(128, 128, 128, 128),
        # Without the skip, 625 steps barely get past learning to copy the image (PSNR of the
        # reconstructed adversarial image 33.5 dB against 32.9 for the input); with it, 160
        # steps reach 35.3 dB (docs/implicit.md).
        skip="bilinear",
        # 3,900 steps instead of the paper's hundreds of epochs: a higher rate that decays to 0
        # gets much further in a short run than the paper's constant 1e-4.
        inr=StageTraining(epochs=10, batch_size=128, lr=5e-4, schedule="cosine"),
        inr_sample_q=256,
        pairs_n=None,
        pairs_steps=10,
        # Batch 32: more, smaller steps than 64 for the same CPU time per pair (31 steps of 64
        # left IRAD's clean accuracy 12 points below the reconstruction's). RA on the victim
        # still rose at the end of the epoch (75.0 % after 122 steps, 80.1 % after 1,546).
        samplenet=StageTraining(epochs=1, batch_size=32, lr=2e-4),
        chunk_size=8192,
    )


def get_preset(name: str | ImplicitPreset) -> ImplicitPreset:
    """The preset called ``name`` (``"paper"`` or ``"cpu"``); a preset passes through."""
    if isinstance(name, ImplicitPreset):
        return name
    return IMPLICIT_PRESETS.build(name)


def preset_names() -> list[str]:
    return IMPLICIT_PRESETS.names()
