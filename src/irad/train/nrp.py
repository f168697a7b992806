"""Train NRP's purifier against self-supervised perturbations (Naseer et al., CVPR 2020).

Each step, for a batch of clean images ``x``:

1. **SSP attack** (self-supervised perturbation): start from ``x + N(0, σ²)`` and take
   ``ssp_steps`` signed-gradient steps that *increase* the feature distortion
   ``||F(x') - F(x)||²`` of a frozen feature extractor ``F``, projected to the L∞ ball of radius
   ``eps`` around ``x`` and to [0, 1]. No labels: the perturbation is task-agnostic.
2. **Purifier step**: ``P`` minimises ``feature_weight · ||F(P(x')) - F(x)||² +
   pixel_weight · ||P(x') - x||²`` (means over elements).

Naseer et al. also add a relativistic GAN loss on ``P(x')`` and use VGG-16 features (conv3.3);
this objective keeps the two losses the issue names (pixel and feature) and takes the
extractor's layer by name (:class:`LayerFeatures`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.checks import check_batch_size, check_float, check_int, check_positive
from irad.data import RandomCropFlip, dataset_record, iterate_batches, num_batches
from irad.errors import ConfigError, InputError
from irad.models.nrp import Purifier
from irad.train.config import ADAM_COSINE, TrainConfig, preset_settings


class LayerFeatures(nn.Module):
    """The output of one named sub-module of a frozen network (e.g. ``"net.layer2"`` of an irad
    ResNet classifier), as a module: ``LayerFeatures(net, layer)(x)``.

    The network runs up to its end (the hooked output is kept); it is frozen and in eval mode.

    Example:
        >>> from irad.models import build_classifier
        >>> features = LayerFeatures(build_classifier("resnet20"), "net.layer2")
        >>> features(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 32, 16, 16])
    """

    def __init__(self, network: nn.Module, layer: str) -> None:
        super().__init__()
        modules = dict(network.named_modules())
        if layer not in modules or not layer:
            names = [n for n, m in network.named_children()]
            blocks = [n for n in modules if n.count(".") == 1]
            raise ConfigError(
                f"the feature extractor has no layer {layer!r}; pick one of its sub-modules, e.g. "
                f"{', '.join(repr(n) for n in (blocks or names)[:8])}"
            )
        self.network = network.eval().requires_grad_(False)
        self.layer = layer
        self._out: Tensor | None = None
        modules[layer].register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: Any, output: Tensor) -> None:
        self._out = output

    def train(self, mode: bool = True) -> LayerFeatures:  # the extractor stays in eval mode
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        self._out = None
        self.network(x)
        out, self._out = self._out, None
        if out is None:  # pragma: no cover - a layer the forward does not call
            raise ConfigError(f"layer {self.layer!r} was not called by the network's forward")
        return out


def ssp_attack(
    features: nn.Module,
    x: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    noise_std: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Naseer et al.'s self-supervised perturbation: maximise ``||F(x') - F(x)||²`` in the L∞
    ball of radius ``eps`` around ``x`` (from ``x`` plus Gaussian noise), images in [0, 1].

    The noise is needed: at ``x' = x`` the distortion is at its minimum and its gradient is 0.

    Shape:
        ``x``: ``(B, 3, H, W)``; returns the perturbed images, detached, same shape.
    """
    with torch.no_grad():
        target = features(x)
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        adv = (x + noise_std * noise).clamp(x - eps, x + eps).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        with torch.enable_grad():
            distortion = F.mse_loss(features(adv), target, reduction="sum")
            (grad,) = torch.autograd.grad(distortion, adv)
        with torch.no_grad():
            adv = adv + step_size * grad.sign()
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


class NRPObjective:
    """NRP's purifier against SSP; an :class:`irad.train.Objective`.

    Args:
        model: the :class:`~irad.models.nrp.Purifier` to train.
        extractor: the frozen network whose features the attack distorts and the loss compares
            (an irad classifier; ``layer`` names the sub-module whose output is the feature).
        train_set: clean images in [0, 1].
        eval_set: held-out clean images for the per-epoch metrics (``None``: none).
        layer: the extractor's sub-module (default ``"net.layer2"``: the middle stage of a CIFAR
            ResNet, as VGG-16's conv3.3 is mid-level for NRP).
        batch_size: images per step (must equal ``TrainConfig.batch_size``).
        eps, ssp_steps, ssp_step_size, noise_std: the SSP attack (L∞ radius, steps, step, the
            initial Gaussian noise), images in [0, 1].
        pixel_weight, feature_weight: weights of the two losses (at least one positive). The
            default 100 : 1 puts both at the same order at the start on CIFAR-10 (pixel MSE of
            an SSP image ~0.002, feature MSE of ResNet-20's layer2 ~0.7).
        augment: random crop (4 pixels of padding) and flip of the training images.

    Shape:
        - batches: ``(x (B, 3, H, W) clean, x' (B, 3, H, W) SSP-perturbed)``.

    Example:
        >>> from irad.models import load_classifier
        >>> from irad.models.nrp import PurifierConfig
        >>> objective = NRPObjective(Purifier(PurifierConfig.from_preset("cpu")),
        ...     load_classifier("resnet20-12fca82f.th"), load_dataset("cifar10", "train"),
        ...     batch_size=32)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Purifier,
        extractor: nn.Module,
        train_set: Any,
        eval_set: Any | None = None,
        *,
        layer: str = "net.layer2",
        batch_size: int = 32,
        eps: float = 16 / 255,
        ssp_steps: int = 3,
        ssp_step_size: float = 6 / 255,
        noise_std: float = 0.05,
        pixel_weight: float = 100.0,
        feature_weight: float = 1.0,
        augment: bool = True,
    ) -> None:
        if not isinstance(model, Purifier):
            raise InputError(f"model must be an NRP Purifier, got {type(model).__name__}")
        if not isinstance(extractor, nn.Module):
            raise InputError(f"extractor must be an nn.Module, got {type(extractor).__name__}")
        self.batch_size = check_batch_size(batch_size)
        if len(train_set) < self.batch_size:
            raise InputError(
                f"the training set has {len(train_set)} images, fewer than one batch of "
                f"{self.batch_size}; lower the batch size"
            )
        self.eps = check_positive(eps, "eps (L∞ radius of the SSP attack, images in [0, 1])", 1)
        self.ssp_steps = check_int(ssp_steps, "ssp_steps", 0)
        self.ssp_step_size = check_positive(ssp_step_size, "ssp_step_size", 1)
        self.noise_std = check_float(noise_std, "noise_std", 0)
        self.pixel_weight = check_float(pixel_weight, "pixel_weight", 0)
        self.feature_weight = check_float(feature_weight, "feature_weight", 0)
        if self.ssp_steps > 0 and self.noise_std == 0:
            raise ConfigError(
                "noise_std must be > 0 when ssp_steps > 0: at x' = x the feature distortion is at "
                "its minimum and its gradient is zero, so SSP starts from noise (NRP: 0.05)"
            )
        if self.pixel_weight == 0 and self.feature_weight == 0:
            raise ConfigError("pixel_weight and feature_weight are both 0: nothing to train on")
        self.module = model
        self.features = LayerFeatures(extractor, layer)
        self.layer = layer
        self.train_set = train_set
        self.eval_set = eval_set
        self.augment = RandomCropFlip(padding=4, flip=True) if augment else None
        self.last_evaluation: dict[str, float] = {}

    @property
    def model(self) -> Purifier:
        return self.module

    def to(self, device: torch.device | str) -> NRPObjective:
        self.module.to(device)
        self.features.to(device)
        return self

    def _attack(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return ssp_attack(
            self.features, x, eps=self.eps, steps=self.ssp_steps, step_size=self.ssp_step_size,
            noise_std=self.noise_std, generator=generator,
        )  # fmt: skip

    # -- Objective -----------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return num_batches(self.train_set, self.batch_size, drop_last=True)

    def batches(
        self, epoch: int, generator: torch.Generator, start_batch: int
    ) -> Iterator[tuple[Tensor, Tensor]]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        images = iterate_batches(
            self.train_set, self.batch_size, shuffle=True, seed=seed, augment=self.augment,
            drop_last=True, start_batch=start_batch,
        )  # fmt: skip
        device = next(self.module.parameters()).device
        for index, (x, _) in enumerate(images, start=start_batch):
            # the attack's noise is a function of (epoch seed, batch index): resumable
            g = torch.Generator().manual_seed((seed + 7919 * (index + 1)) % 2**63)
            x = x.to(device)
            yield x, self._attack(x, g)

    def loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        x, adv = batch
        out = self.model(adv)
        pixel = F.mse_loss(out, x)  # unclamped: pulls stray values back into [0, 1]
        with torch.no_grad():
            target = self.features(x)
        feature = F.mse_loss(self.features(out.clamp(0, 1)), target)  # the defense clamps
        loss = self.pixel_weight * pixel + self.feature_weight * feature
        return loss, {"pixel_mse": pixel.detach(), "feature_mse": feature.detach()}

    def evaluate(self) -> dict[str, float]:
        if self.eval_set is None:
            return {}
        from irad.evaluate.quality import psnr  # lazy: training does not need evaluation

        model = self.model.eval()
        device = next(model.parameters()).device
        sums = {"eval_psnr_clean": 0.0, "eval_psnr_ssp": 0.0, "eval_feature_ssp": 0.0}
        sums["eval_feature_ssp_before"] = 0.0
        count = 0
        g = torch.Generator().manual_seed(0)
        for x, _ in iterate_batches(self.eval_set, 100):
            x = x.to(device)
            adv = self._attack(x, g)
            with torch.no_grad():
                target = self.features(x)
                clean_out = model(x).clamp(0, 1)
                adv_out = model(adv).clamp(0, 1)
                sums["eval_psnr_clean"] += float(psnr(clean_out, x).sum())
                sums["eval_psnr_ssp"] += float(psnr(adv_out, x).sum())
                for key, images in (
                    ("eval_feature_ssp", adv_out),
                    ("eval_feature_ssp_before", adv),
                ):
                    d = (self.features(images) - target).pow(2).flatten(1).mean(1)
                    sums[key] += float(d.sum())
            count += x.shape[0]
        self.last_evaluation = {k: v / max(count, 1) for k, v in sums.items()}
        return dict(self.last_evaluation)

    def model_config(self) -> dict[str, Any]:
        return self.model.checkpoint_config()

    def objective_config(self) -> dict[str, Any]:
        extractor = self.features.network
        return {
            "objective": "nrp",
            "loss": "pixel_mse+feature_mse",
            "pixel_weight": self.pixel_weight,
            "feature_weight": self.feature_weight,
            "extractor": {
                "name": getattr(extractor, "name", type(extractor).__name__),
                "config": getattr(extractor, "config", None),
                "layer": self.layer,
            },
            "ssp": {
                "eps": self.eps,
                "steps": self.ssp_steps,
                "step_size": self.ssp_step_size,
                "noise_std": self.noise_std,
            },
            "augment": self.augment is not None,
            "batch_size": self.batch_size,
            "train_set": dataset_record(self.train_set),
        }

    def save_model(self, prefix: str | Path) -> Path:
        training = {**self.objective_config(), "last_evaluation": dict(self.last_evaluation)}
        return self.model.save(prefix, metadata={"training": training})


#: Training settings of each preset (ours; Naseer et al. trained on MS-COCO / ImageNet with
#: ε = 16/255). `cpu`: 2 epochs of CIFAR-10 at batch 32 (3,124 steps; ~1 s each on one shared
#: CPU thread, SSP included: about 50 min), SSP 3 steps of 6/255; `paper`: the RRDB purifier,
#: SSP 10 steps of 2/255, 20 epochs.
NRP_TRAINING: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "ssp_steps": 1, "ssp_step_size": 8 / 255},
    "cpu": {"epochs": 2, "batch_size": 32, "lr": 1e-3, "ssp_steps": 3, "ssp_step_size": 6 / 255},
    "paper": {
        "epochs": 20,
        "batch_size": 64,
        "lr": 1e-4,
        "ssp_steps": 10,
        "ssp_step_size": 2 / 255,
    },
}


def nrp_train_config(
    preset: str,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    **train: Any,
) -> tuple[TrainConfig, dict[str, Any]]:
    """``(TrainConfig, SSP settings)`` of ``preset`` with the given overrides (``None``: keep).

    Example:
        >>> config, ssp = nrp_train_config("cpu", out_dir="runs/nrp")
        >>> config.batch_size, config.optimizer, ssp["ssp_steps"]
        (32, 'adam', 3)
    """
    s = preset_settings(NRP_TRAINING, preset, "NRP")
    defaults = {**ADAM_COSINE, **{k: s[k] for k in ("epochs", "batch_size", "lr")}}
    config = TrainConfig.from_options(
        defaults, epochs=epochs, batch_size=batch_size, lr=lr, **train
    )
    return config, {"ssp_steps": s["ssp_steps"], "ssp_step_size": s["ssp_step_size"]}
