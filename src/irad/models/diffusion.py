"""The score model of diffusion purification: a ``diffusers`` UNet with DiffPure's noise schedule.

DiffPure (Nie et al. 2022) discretises the VP-SDE into 1,000 steps with a linear β from 1e-4 to
0.02: ``x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε`` with ``ᾱ_t = prod_{s=1..t} (1 - β_s)``. Here ``t``
counts steps (``t = 100`` is DiffPure's ``t* = 0.1``) and ``ᾱ_0 = 1``. The UNet takes diffusers'
timestep index ``t - 1`` (diffusers' ``alphas_cumprod[t - 1]`` is our ``ᾱ_t``), so a DDPM UNet
in diffusers format (``google/ddpm-cifar10-32``, downloaded by the user) works unchanged.

A :class:`DiffusionModel` may be a low-noise specialist: ``config.t_max`` records the largest
``t`` it was trained on (purification never diffuses further than ``t*``), and
:class:`irad.defenses.DiffPure` warns when asked for more.

    >>> model = DiffusionModel(DiffusionConfig.from_preset("tiny"))
    >>> x0 = torch.rand(2, 3, 16, 16) * 2 - 1
    >>> xt = model.diffuse(x0, 10, torch.randn_like(x0))
    >>> model.eps(xt, 10).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from irad.checkpoint import Pretrained, resolve
from irad.errors import CheckpointError, ConfigError, InputError

try:  # diffusers is the `diffusion` extra: `pip install irad[diffusion]`
    from diffusers import UNet2DModel
except ImportError as _err:  # pragma: no cover - exercised only without the extra
    UNet2DModel = None
    _IMPORT_ERROR: ImportError | None = _err
else:
    _IMPORT_ERROR = None

#: UNet2DModel settings of each preset (every other UNet2DModel argument keeps its default).
_UNET_PRESETS: dict[str, dict[str, Any]] = {
    # Tests: a few thousand parameters.
    "tiny": {
        "block_out_channels": [8, 16],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"],
        "norm_num_groups": 4,
    },
    # The CPU protocol: 2.5 M parameters, no attention; ~4 ms per 32x32 image forward and
    # ~13 ms per image training step (batch 32, 2 threads, AVX2).
    "cpu": {
        "block_out_channels": [32, 64, 128],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
        "norm_num_groups": 16,
    },
    # Ho et al.'s DDPM CIFAR-10 UNet (35.7 M parameters; diffusers' google/ddpm-cifar10-32).
    "paper": {
        "block_out_channels": [128, 256, 256, 256],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "norm_num_groups": 32,
        "norm_eps": 1e-6,
        "downsample_padding": 0,
        "flip_sin_to_cos": False,
        "freq_shift": 1,
        "dropout": 0.1,
    },
}
#: Largest t each preset is trained on: purification at t* = 100 (DiffPure) needs a margin only.
_PRESET_T_MAX = {"tiny": 1000, "cpu": 120, "paper": 1000}


def _require_diffusers() -> None:
    if UNet2DModel is None:
        raise ConfigError(
            "diffusion purification needs the `diffusers` package: pip install 'irad[diffusion]' "
            f"(import failed: {_IMPORT_ERROR})"
        )


@dataclass
class DiffusionConfig:
    """What a :class:`DiffusionModel` is: the UNet's sizes and the noise schedule.

    Args:
        unet: ``diffusers.UNet2DModel`` keyword arguments (``sample_size``, ``in_channels`` and
            ``out_channels`` default to 32, 3, 3).
        num_train_timesteps: steps of the discretised SDE (DiffPure: 1,000).
        beta_start, beta_end: the linear β schedule (DiffPure: 1e-4, 0.02).
        t_max: the largest ``t`` the model was trained on (a low-noise specialist has
            ``t_max < num_train_timesteps``).
        preset: the preset these sizes came from (``"custom"`` otherwise); informational.

    Example:
        >>> cfg = DiffusionConfig.from_preset("cpu")
        >>> cfg.t_max, cfg.unet["block_out_channels"]
        (120, [32, 64, 128])
        >>> DiffusionConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    unet: dict[str, Any] = field(default_factory=dict)
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    t_max: int = 1000
    preset: str = "custom"

    PRESETS: ClassVar[tuple[str, ...]] = tuple(_UNET_PRESETS)

    def __post_init__(self) -> None:
        if not isinstance(self.unet, dict):
            raise ConfigError(f"unet must be a dict of UNet2DModel arguments, got {self.unet!r}")
        self.unet = {"sample_size": 32, "in_channels": 3, "out_channels": 3, **self.unet}
        if self.unet["in_channels"] != 3 or self.unet["out_channels"] != 3:
            raise ConfigError("a purification UNet maps RGB images to RGB noise: 3 in, 3 out")
        for name in ("num_train_timesteps", "t_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.t_max > self.num_train_timesteps:
            raise ConfigError(
                f"t_max ({self.t_max}) cannot exceed num_train_timesteps "
                f"({self.num_train_timesteps})"
            )
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(
                f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> DiffusionConfig:
        """The sizes of preset ``name`` (``tiny``, ``cpu``, ``paper``), with overrides."""
        key = name.strip().lower()
        if key not in _UNET_PRESETS:
            raise ConfigError(
                f"unknown diffusion preset {name!r}; known: {', '.join(_UNET_PRESETS)}"
            )
        kwargs: dict[str, Any] = {
            "unet": json.loads(json.dumps(_UNET_PRESETS[key])),
            "t_max": _PRESET_T_MAX[key],
            "preset": key,
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown DiffusionConfig fields: {', '.join(unknown)}")
        return cls(**d)


def linear_alpha_bar(num_train_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """``ᾱ_t`` for ``t = 0..T`` (``ᾱ_0 = 1``) of the linear β schedule, float64.

    Example:
        >>> ab = linear_alpha_bar(1000, 1e-4, 0.02)
        >>> ab.shape, float(ab[0])
        (torch.Size([1001]), 1.0)
        >>> round(float(ab[100]), 4)  # DiffPure's t* = 0.1
        0.897
    """
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


class DiffusionModel(nn.Module, Pretrained):
    """An ε-prediction UNet with DiffPure's discretised VP-SDE; images in [-1, 1].

    Args:
        config: sizes and schedule (:meth:`DiffusionConfig.preset` for the presets).

    Shape:
        - ``eps(x_t, t)``: ``x_t`` ``(B, 3, H, W)`` in about [-1, 1] (H and W multiples of
          ``2 ** (levels - 1)``), ``t`` an int or ``(B,)`` ints in [1, T]; output ``(B, 3, H, W)``.
    """

    checkpoint_kind = "diffusion"

    def __init__(self, config: DiffusionConfig | None = None) -> None:
        super().__init__()
        _require_diffusers()
        self.config = config if config is not None else DiffusionConfig.from_preset("cpu")
        self.unet = UNet2DModel(**self.config.unet)
        ab = linear_alpha_bar(
            self.config.num_train_timesteps, self.config.beta_start, self.config.beta_end
        )
        # float64 schedule kept as a non-persistent buffer: it follows .to(device) but is rebuilt
        # from the config, never stored in a checkpoint.
        self.register_buffer("alpha_bar", ab, persistent=False)

    # -- the schedule ------------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    @property
    def downsample_factor(self) -> int:
        """Image sides must be multiples of this (the UNet halves them once per level but one)."""
        return 2 ** (len(self.config.unet["block_out_channels"]) - 1)

    def check_timestep(self, t: int, name: str = "t") -> int:
        if isinstance(t, bool) or not isinstance(t, int):
            raise InputError(f"{name} must be an integer number of diffusion steps, got {t!r}")
        if not 0 <= t <= self.num_train_timesteps:
            raise InputError(
                f"{name} must be in [0, {self.num_train_timesteps}] (steps of the discretised "
                f"SDE; DiffPure's t* = 0.1 is t = 100), got {t}"
            )
        return t

    def check_image_size(self, x: Tensor) -> None:
        f = self.downsample_factor
        h, w = x.shape[-2:]
        if h % f or w % f:
            raise InputError(
                f"this diffusion UNet takes images whose height and width are multiples of {f} "
                f"(it downsamples {len(self.config.unet['block_out_channels']) - 1} times), got "
                f"{h}x{w}; pad or resize the images (e.g. to "
                f"{-(-h // f) * f}x{-(-w // f) * f})"
            )

    def _ab(self, t: int | Tensor, like: Tensor) -> Tensor:
        ab = self.alpha_bar[t] if isinstance(t, int) else self.alpha_bar[t.long()]
        return ab.to(like.dtype).reshape(-1, 1, 1, 1) if ab.ndim else ab.to(like.dtype)

    def diffuse(self, x0: Tensor, t: int | Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) noise`` (``t`` an int or ``(B,)``)."""
        ab = self._ab(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps(self, x_t: Tensor, t: int | Tensor) -> Tensor:
        """The predicted noise ε(x_t, t); ``t`` counts steps from 1 (diffusers' index + 1)."""
        steps = torch.as_tensor(t, device=x_t.device).long().reshape(-1)
        if steps.numel() == 1:
            steps = steps.expand(x_t.shape[0])
        return self.unet(x_t, steps - 1).sample

    def predict_x0(self, x_t: Tensor, t: int | Tensor) -> Tensor:
        """One-shot estimate of ``x_0`` from ``x_t`` (Tweedie), unclipped."""
        ab = self._ab(t, x_t)
        return (x_t - (1 - ab).sqrt() * self.eps(x_t, t)) / ab.sqrt()

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> DiffusionModel:
        return cls(DiffusionConfig.from_dict(config))

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, spec: str | os.PathLike[str] = "cifar10", *, map_location: str | torch.device = "cpu"
    ) -> DiffusionModel:
        """Load an irad checkpoint (folder, prefix or bundled name such as ``"cifar10"``) or a
        local diffusers folder (a ``UNet2DModel`` folder, or a DDPM pipeline folder with
        ``unet/`` and ``scheduler/``)."""
        path = Path(spec).expanduser()
        if path.is_dir() and (
            (path / "config.json").is_file() or (path / "model_index.json").is_file()
        ):
            return cls.from_diffusers(path).to(map_location)
        resolve(spec, cls.checkpoint_kind)  # a clear error before anything is built
        return super().from_pretrained(spec, map_location=map_location)

    @classmethod
    def from_diffusers(cls, folder: str | os.PathLike[str]) -> DiffusionModel:
        """Wrap a local diffusers ``UNet2DModel`` (safetensors weights only; nothing unpickled).

        The schedule is read from ``scheduler/scheduler_config.json`` of a pipeline folder when
        present (it must be linear), else DiffPure's.
        """
        _require_diffusers()
        folder = Path(folder)
        unet_dir = folder / "unet" if (folder / "model_index.json").is_file() else folder
        config_file = unet_dir / "config.json"
        try:
            unet_config = json.loads(config_file.read_text())
        except (OSError, ValueError) as err:
            raise CheckpointError(
                f"{config_file} is not a readable diffusers config: {err}"
            ) from err
        if unet_config.get("_class_name") != "UNet2DModel":
            raise CheckpointError(
                f"{folder} is a diffusers folder of a {unet_config.get('_class_name')!r}, not a "
                "UNet2DModel; DiffPure needs an unconditional image UNet (e.g. a DDPM CIFAR-10 "
                "pipeline's unet/ folder)"
            )
        weights = unet_dir / "diffusion_pytorch_model.safetensors"
        if not weights.is_file():
            raise CheckpointError(
                f"{unet_dir} has no diffusion_pytorch_model.safetensors; irad reads only "
                "safetensors weights (convert a .bin with diffusers' save_pretrained("
                "safe_serialization=True) where you trust the file)"
            )
        schedule: dict[str, Any] = {}
        sched_file = folder / "scheduler" / "scheduler_config.json"
        if sched_file.is_file():
            sched = json.loads(sched_file.read_text())
            if sched.get("beta_schedule", "linear") != "linear":
                raise CheckpointError(
                    f"{sched_file}: beta_schedule {sched.get('beta_schedule')!r}; DiffPure "
                    "purification here supports the linear schedule only"
                )
            schedule = {
                k: sched[k] for k in ("num_train_timesteps", "beta_start", "beta_end") if k in sched
            }
        unet = UNet2DModel.from_pretrained(str(unet_dir), use_safetensors=True)
        kwargs = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
        model = cls(DiffusionConfig(unet=kwargs, **schedule))
        model.unet = unet
        model.checkpoint_metadata = {"source": str(folder)}
        return model
