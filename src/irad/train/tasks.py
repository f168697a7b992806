"""The five stage-1 training tasks of Sec. 4.2 as data transforms (Table 7's rows).

Each task turns a clean batch (and, for PGD denoising, its adversarial twin) into a
:class:`TaskBatch`: the image the representation encodes, the query coordinates and cells (in the
*input's* pixel units, :mod:`irad.resample`'s convention: centre of pixel ``[i, j]`` at
``(i, j)``) and the target colours there. The loss is L1 between the representation's colours at
the queries and the targets (:mod:`irad.train.inr`).

=====================  ===============================  ==========================================
task (registry name)   input                            queries / target
=====================  ===============================  ==========================================
``clean2clean``        clean image                      every pixel centre / clean colours
``super-resolution``   clean, ×``scale`` smaller        full-resolution centres, cell 1/scale /
                       (bicubic with antialias, or      clean colours
                       area)
``inpainting``         clean with 1..``max_holes``      every pixel centre / clean colours
                       random boxes set to ``fill``
``gaussian-denoising`` clean + N(0, σ²), clipped        every pixel centre / clean colours
``pgd-denoising``      adversarial image (PGD pairs)    every pixel centre / clean colours
=====================  ===============================  ==========================================

``sample_q`` keeps a random subset of query pixels per image (LIIF's ``sample_q``; different
pixels for each image), which saves most of the decoder's cost in training.

Example:
    >>> task = build_task("super-resolution", sample_q=16)
    >>> batch = task(torch.rand(2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    >>> batch.inputs.shape, batch.coords.shape, batch.targets.shape
    (torch.Size([2, 3, 4, 4]), torch.Size([2, 16, 2]), torch.Size([2, 16, 3]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from irad.checks import check_images
from irad.errors import ConfigError, InputError
from irad.registry import Registry
from irad.resample.coordinates import resize_grid


@dataclass
class TaskBatch:
    """One training batch of a reconstruction task.

    Shape:
        - inputs: ``(B, 3, h, w)`` in [0, 1] (what the representation encodes).
        - coords: ``(B, Q, 2)`` query (row, col) in the input's pixel units.
        - cells: ``(B, Q, 2)`` output-pixel size in the input's pixel units.
        - targets: ``(B, Q, 3)`` colours in [0, 1].
    """

    inputs: Tensor
    coords: Tensor
    cells: Tensor
    targets: Tensor

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(
            *(t.to(device) for t in (self.inputs, self.coords, self.cells, self.targets))
        )


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    # Draw on the generator's device (CPU) so results do not depend on the training device.
    return torch.rand(shape, generator=generator).to(like.device, like.dtype)


def _randn(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    return torch.randn(shape, generator=generator).to(like.device, like.dtype)


class ReconstructionTask:
    """Base class: subclasses implement :meth:`corrupt` (clean -> input image).

    Args:
        sample_q: random query pixels per image (``None``: every pixel of the target).
    """

    name: ClassVar[str] = "task"
    needs_pairs: ClassVar[bool] = False

    def __init__(self, sample_q: int | None = None) -> None:
        if sample_q is not None and (not isinstance(sample_q, int) or sample_q < 1):
            raise ConfigError(f"sample_q must be a positive integer or None, got {sample_q!r}")
        self.sample_q = sample_q

    def corrupt(
        self, clean: Tensor, adv: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "sample_q": self.sample_q}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    def __call__(
        self,
        clean: Tensor,
        adv: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> TaskBatch:
        """Build the task's batch from clean images (and adversarial ones for PGD denoising).

        Shape:
            - clean, adv: ``(B, 3, H, W)`` in [0, 1].
        """
        check_images(clean, "clean images")
        if adv is not None:
            check_images(adv, "adversarial images")
            if adv.shape != clean.shape:
                raise InputError(
                    f"adversarial images {tuple(adv.shape)} and clean images "
                    f"{tuple(clean.shape)} must have the same shape"
                )
        inputs = self.corrupt(clean, adv, generator)
        b, _, hh, ww = clean.shape
        coords, cell = resize_grid(
            (hh, ww), inputs.shape[-2:], device=clean.device, dtype=clean.dtype
        )
        coords = coords.view(1, -1, 2).expand(b, -1, -1)
        targets = clean.flatten(2).transpose(1, 2)  # (B, H*W, 3)
        if self.sample_q is not None and self.sample_q < hh * ww:
            # A different random subset of pixels for each image.
            idx = _rand((b, hh * ww), generator, clean).argsort(dim=1)[:, : self.sample_q]
            coords = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
            targets = torch.gather(targets, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        cells = cell.expand(b, coords.shape[1], 2)
        return TaskBatch(inputs, coords.contiguous(), cells.contiguous(), targets.contiguous())


TASKS: Registry[ReconstructionTask] = Registry("training task")


@TASKS.register("clean2clean", "clean")
class Clean2Clean(ReconstructionTask):
    """Reconstruct the clean image from itself."""

    name = "clean2clean"

    def corrupt(
        self, clean: Tensor, adv: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        return clean


@TASKS.register("super-resolution", "sr", "superresolution")
class SuperResolution(ReconstructionTask):
    """Encode a ×``scale`` downsampled image, query the full-resolution grid (cell 1/scale).

    Args:
        scale: downsampling factor (2 in the paper); the small image is ``H // scale``.
        method: ``"bicubic"`` (with antialiasing, like PIL's resize that LIIF uses) or ``"area"``.
    """

    name = "super-resolution"

    def __init__(self, scale: int = 2, method: str = "bicubic", sample_q: int | None = None):
        super().__init__(sample_q)
        if not isinstance(scale, int) or scale < 2:
            raise ConfigError(f"scale must be an integer >= 2, got {scale!r}")
        if method not in ("bicubic", "area"):
            raise ConfigError(f"method must be 'bicubic' or 'area', got {method!r}")
        self.scale, self.method = scale, method

    def config(self) -> dict[str, Any]:
        return {**super().config(), "scale": self.scale, "method": self.method}

    def corrupt(
        self, clean: Tensor, adv: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        h, w = clean.shape[-2] // self.scale, clean.shape[-1] // self.scale
        if h < 1 or w < 1:
            raise InputError(
                f"images of size {tuple(clean.shape[-2:])} are too small for ×{self.scale}"
            )
        if self.method == "area":
            small = F.interpolate(clean, size=(h, w), mode="area")
        else:
            small = F.interpolate(
                clean, size=(h, w), mode="bicubic", antialias=True, align_corners=False
            )
        return small.clamp(0.0, 1.0)


@TASKS.register("inpainting", "restoration")
class Inpainting(ReconstructionTask):
    """Mask 1..``max_holes`` random boxes per image (set to ``fill``) and restore them.

    Args:
        max_holes: most boxes per image (the count is uniform in 1..max_holes).
        min_size, max_size: box side as a fraction of the image side, uniform in the range.
        fill: value written into the boxes (0: black).
    """

    name = "inpainting"

    def __init__(
        self,
        max_holes: int = 3,
        min_size: float = 0.125,
        max_size: float = 0.5,
        fill: float = 0.0,
        sample_q: int | None = None,
    ) -> None:
        super().__init__(sample_q)
        if not isinstance(max_holes, int) or max_holes < 1:
            raise ConfigError(f"max_holes must be a positive integer, got {max_holes!r}")
        if not 0 < min_size <= max_size <= 1:
            raise ConfigError(f"need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}")
        if not 0 <= fill <= 1:
            raise ConfigError(f"fill must be in [0, 1], got {fill}")
        self.max_holes, self.min_size, self.max_size, self.fill = (
            max_holes,
            min_size,
            max_size,
            fill,
        )

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "max_holes": self.max_holes,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "fill": self.fill,
        }

    def masks(self, clean: Tensor, generator: torch.Generator | None) -> Tensor:
        """Boolean masks ``(B, 1, H, W)``, True where the image is hidden."""
        b, _, h, w = clean.shape
        n = self.max_holes
        u = _rand((b, n, 5), generator, clean)
        span = self.max_size - self.min_size
        bh = ((self.min_size + span * u[..., 0]) * h).ceil()
        bw = ((self.min_size + span * u[..., 1]) * w).ceil()
        top = (u[..., 2] * (h - bh + 1)).floor()
        left = (u[..., 3] * (w - bw + 1)).floor()
        count = (u[:, :1, 4] * n).floor() + 1  # holes used per image, 1..n
        used = torch.arange(n, device=clean.device, dtype=clean.dtype).view(1, n) < count
        rows = torch.arange(h, device=clean.device, dtype=clean.dtype).view(1, 1, h, 1)
        cols = torch.arange(w, device=clean.device, dtype=clean.dtype).view(1, 1, 1, w)
        inside = (
            (rows >= top[..., None, None])
            & (rows < (top + bh)[..., None, None])
            & (cols >= left[..., None, None])
            & (cols < (left + bw)[..., None, None])
            & used[..., None, None]
        )
        return inside.any(dim=1, keepdim=True)

    def corrupt(
        self, clean: Tensor, adv: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        mask = self.masks(clean, generator)
        return torch.where(mask, torch.full_like(clean, self.fill), clean)


@TASKS.register("gaussian-denoising", "gaussian", "gaussian-denoise")
class GaussianDenoising(ReconstructionTask):
    """Add Gaussian noise N(0, σ²) (σ in /255 units), clip to [0, 1], and remove it.

    Args:
        sigma: noise standard deviation in /255 units (default 8, the size of the PGD budget).
        random_sigma: draw σ per image uniformly from [0, sigma] instead.
    """

    name = "gaussian-denoising"

    def __init__(self, sigma: float = 8.0, random_sigma: bool = False, sample_q: int | None = None):
        super().__init__(sample_q)
        if not 0 <= sigma <= 255:
            raise ConfigError(f"sigma is in /255 units and must be in [0, 255], got {sigma}")
        self.sigma, self.random_sigma = float(sigma), bool(random_sigma)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "sigma": self.sigma, "random_sigma": self.random_sigma}

    def corrupt(
        self, clean: Tensor, adv: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        b = clean.shape[0]
        sigma = torch.full((b, 1, 1, 1), self.sigma / 255, device=clean.device, dtype=clean.dtype)
        if self.random_sigma:
            sigma = sigma * _rand((b, 1, 1, 1), generator, clean)
        noise = _randn(tuple(clean.shape), generator, clean)
        return (clean + sigma * noise).clamp(0.0, 1.0)


@TASKS.register("pgd-denoising", "pgd", "adversarial-denoising")
class PGDDenoising(ReconstructionTask):
    """Remove adversarial perturbations: encode the PGD image, target the clean one (Table 7)."""

    name = "pgd-denoising"
    needs_pairs = True

    def corrupt(
        self, clean: Tensor, adv: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        if adv is None:
            raise InputError(
                "pgd-denoising needs adversarial images: pass adv=..., or train on a PairDataset "
                "made by `irad prepare-pairs`"
            )
        return adv


def build_task(name: str, **kwargs: Any) -> ReconstructionTask:
    """A task by name, e.g. ``build_task("gaussian", sigma=8)``; see :data:`TASKS`."""
    return TASKS.build(name, **kwargs)


def task_names() -> list[str]:
    """The canonical names of the five tasks, in Table 7's order."""
    return ["clean2clean", "super-resolution", "inpainting", "gaussian-denoising", "pgd-denoising"]


__all__ = [
    "TASKS",
    "Clean2Clean",
    "GaussianDenoising",
    "Inpainting",
    "PGDDenoising",
    "ReconstructionTask",
    "SuperResolution",
    "TaskBatch",
    "build_task",
    "task_names",
]
