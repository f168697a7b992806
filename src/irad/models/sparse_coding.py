"""Convolutional sparse coding, the model of STL (Sun et al., CVPR 2019).

An image ``x`` is split into a smooth part and a detail part by a Tikhonov filter
(``x_low = argmin_u ||u - x||² + μ ||∇u||²``, solved in the Fourier domain), and the detail is
coded over a dictionary of ``K`` small filters learned on clean images:

    z* = argmin_z  ½ ||Σ_k d_k * z_k - x_high||² + λ ||z||₁,     x̂ = x_low + Σ_k d_k * z*_k

Adversarial detail that the clean dictionary cannot represent sparsely is dropped. Like Sun et
al.'s code (SPORCO ``ConvBPDN`` with a greyscale dictionary on a colour image), each colour
channel is coded separately over the one greyscale dictionary.

The sparse code comes from FISTA (Beck & Teboulle 2009) with a fixed number of iterations from
``z = 0``: every step is a convolution, its adjoint and a soft-threshold, so the whole forward is
differentiable and an adaptive attack differentiates through it.

    >>> coder = ConvSparseCoder(SparseCodingConfig.from_preset("tiny"))
    >>> coder(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.checkpoint import Pretrained
from irad.checks import check_float, check_int, check_positive, check_positive_int
from irad.errors import ConfigError

#: Sizes of each preset. ``paper``: Sun et al.'s CIFAR-10 basis (64 filters of 8x8, λ = 0.2,
#: Tikhonov μ = 5 with 16 pixels of padding, as their ``recons_data.py 64 8 0.2 32``) and 200
#: solver iterations (their ADMM ran up to 200). ``cpu``: 32 filters, 40 FISTA iterations
#: (the objective changes by < 1 % after 20 on CIFAR-10; ~0.2 s per 32x32 image, 1 thread).
_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"atoms": 4, "kernel_size": 3, "lmbda": 0.05, "iterations": 10},
    "cpu": {"atoms": 32, "kernel_size": 8, "lmbda": 0.2, "iterations": 40},
    "paper": {"atoms": 64, "kernel_size": 8, "lmbda": 0.2, "iterations": 200},
}


@dataclass
class SparseCodingConfig:
    """What a :class:`ConvSparseCoder` is.

    Args:
        atoms: number of dictionary filters ``K``.
        kernel_size: side of each (square, greyscale) filter.
        lmbda: sparsity weight λ of the ℓ1 term (images in [0, 1]).
        iterations: FISTA iterations of the forward (fixed, so the forward is differentiable).
        tikhonov: weight μ of the Tikhonov low-pass (0: no split, the whole image is coded).
        tikhonov_pad: symmetric padding of the low-pass's FFT (pixels; capped at the image side).
        preset: the preset these sizes came from (``"custom"`` otherwise); informational.

    Example:
        >>> cfg = SparseCodingConfig.from_preset("cpu")
        >>> cfg.atoms, cfg.kernel_size, cfg.lmbda, cfg.iterations
        (32, 8, 0.2, 40)
        >>> SparseCodingConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    atoms: int = 32
    kernel_size: int = 8
    lmbda: float = 0.2
    iterations: int = 40
    tikhonov: float = 5.0
    tikhonov_pad: int = 16
    preset: str = "custom"

    PRESETS: ClassVar[tuple[str, ...]] = tuple(_PRESETS)

    def __post_init__(self) -> None:
        self.atoms = check_positive_int(self.atoms, "atoms (dictionary filters)")
        self.kernel_size = check_int(self.kernel_size, "kernel_size (filter side)", 1, 32)
        self.lmbda = check_positive(self.lmbda, "lmbda (sparsity weight λ)")
        self.iterations = check_positive_int(self.iterations, "iterations (FISTA steps)")
        self.tikhonov = check_float(self.tikhonov, "tikhonov (low-pass weight μ)", 0)
        self.tikhonov_pad = check_int(self.tikhonov_pad, "tikhonov_pad (pixels)", 0)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> SparseCodingConfig:
        """The sizes of preset ``name`` (``tiny``, ``cpu``, ``paper``), with overrides."""
        key = str(name).strip().lower()
        if key not in _PRESETS:
            raise ConfigError(
                f"unknown sparse-coding (STL) preset {name!r}; known: {', '.join(_PRESETS)}"
            )
        return cls(**{**_PRESETS[key], "preset": key, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SparseCodingConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown SparseCodingConfig fields: {', '.join(unknown)}")
        return cls(**d)


# -- the maths, as functions on tensors -------------------------------------------------------


def _symmetric_pad(x: Tensor, pad: int) -> Tensor:
    """Mirror-pad the last two dims by ``pad``, repeating the edge pixel (NumPy's ``symmetric``,
    what SPORCO's Tikhonov filter uses); ``pad`` at most the side."""
    if pad == 0:
        return x
    x = torch.cat([x[..., :pad].flip(-1), x, x[..., -pad:].flip(-1)], dim=-1)
    return torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], dim=-2)


def tikhonov_split(x: Tensor, mu: float, pad: int = 16) -> tuple[Tensor, Tensor]:
    """``(low, high)`` with ``low = argmin_u ||u - x||² + μ (||∂_h u||² + ||∂_v u||²)`` and
    ``high = x - low`` (differentiable; solved by FFT on a mirror-padded copy).

    Shape:
        ``x``: ``(..., H, W)``; both outputs have its shape.

    Example:
        >>> x = torch.rand(1, 3, 8, 8)
        >>> low, high = tikhonov_split(x, 5.0)
        >>> torch.allclose(low + high, x), bool(high.abs().mean() < x.abs().mean())
        (True, True)
    """
    if mu == 0:
        return x, torch.zeros_like(x)
    h, w = x.shape[-2:]
    p = min(pad, h, w)
    padded = _symmetric_pad(x, p)
    ph, pw = padded.shape[-2:]
    # |FFT of the forward differences [1, -1]|² along each axis
    fy = torch.fft.fftfreq(ph, device=x.device, dtype=x.dtype)
    fx = torch.fft.rfftfreq(pw, device=x.device, dtype=x.dtype)
    gy = 2 - 2 * torch.cos(2 * torch.pi * fy)
    gx = 2 - 2 * torch.cos(2 * torch.pi * fx)
    denom = 1 + mu * (gy[:, None] + gx[None, :])
    low = torch.fft.irfft2(torch.fft.rfft2(padded) / denom, s=(ph, pw))
    low = low[..., p : p + h, p : p + w]
    return low, x - low


def synthesize(z: Tensor, dictionary: Tensor) -> Tensor:
    """``Σ_k d_k * z_k``: codes ``(N, K, H+k-1, W+k-1)`` to images ``(N, 1, H, W)``
    (``dictionary`` ``(K, k, k)``; a 'valid' convolution, so border pixels are fully coded)."""
    return F.conv2d(z, dictionary.unsqueeze(0))


def analyze(r: Tensor, dictionary: Tensor) -> Tensor:
    """The adjoint of :func:`synthesize`: images ``(N, 1, H, W)`` to codes
    ``(N, K, H+k-1, W+k-1)``."""
    # a full correlation with the flipped filters: 2-3x faster on CPUs than conv_transpose2d
    p = dictionary.shape[-1] - 1
    return F.conv2d(F.pad(r, (p, p, p, p)), dictionary.flip(-1, -2).unsqueeze(1))


def lipschitz_bound(dictionary: Tensor, grid: int = 64) -> Tensor:
    """An upper estimate of ``||synthesize||²`` (the Lipschitz constant of the data term's
    gradient): the largest ``Σ_k |d̂_k(ω)|²`` over a ``grid × grid`` frequency grid, times 1.05
    for the frequencies between grid points. FISTA's step is its inverse."""
    k = dictionary.shape[-1]
    size = max(grid, 4 * k)
    spectrum = torch.fft.rfft2(dictionary.detach(), s=(size, size))
    return 1.05 * spectrum.abs().pow(2).sum(0).max()


def soft_threshold(z: Tensor, threshold: float | Tensor) -> Tensor:
    """``sign(z) max(|z| - t, 0)``, the proximal map of ``t ||·||₁``."""
    return torch.sign(z) * F.relu(z.abs() - threshold)


def fista(
    s: Tensor,
    dictionary: Tensor,
    lmbda: float,
    iterations: int,
    *,
    step: Tensor | None = None,
) -> Tensor:
    """Sparse code of ``s`` over ``dictionary``: ``iterations`` FISTA steps on
    ``½ ||synthesize(z) - s||² + λ ||z||₁`` from ``z = 0`` (differentiable in ``s``).

    Shape:
        ``s``: ``(N, 1, H, W)``; ``dictionary``: ``(K, k, k)``; returns ``(N, K, H+k-1, W+k-1)``.

    Example:
        >>> d = torch.nn.functional.normalize(torch.randn(4, 3, 3).flatten(1), dim=1).view(4, 3, 3)
        >>> z = fista(torch.rand(2, 1, 8, 8), d, 0.05, 20)
        >>> z.shape
        torch.Size([2, 4, 10, 10])
    """
    if step is None:
        step = 1.0 / lipschitz_bound(dictionary)
    k = dictionary.shape[-1]
    n, _, h, w = s.shape
    z = s.new_zeros(n, dictionary.shape[0], h + k - 1, w + k - 1)
    y, t = z, 1.0
    for _ in range(iterations):
        grad = analyze(synthesize(y, dictionary) - s, dictionary)
        z_next = soft_threshold(y - step * grad, step * lmbda)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = z_next + ((t - 1) / t_next) * (z_next - z)
        z, t = z_next, t_next
    return z


def sparse_coding_objective(s: Tensor, z: Tensor, dictionary: Tensor, lmbda: float) -> Tensor:
    """``½ ||synthesize(z) - s||² + λ ||z||₁``, per image and pixel (``(N,)``)."""
    pixels = s[0].numel()
    data = 0.5 * (synthesize(z, dictionary) - s).pow(2).flatten(1).sum(1)
    return (data + lmbda * z.abs().flatten(1).sum(1)) / pixels


# -- the module --------------------------------------------------------------------------------


class ConvSparseCoder(nn.Module, Pretrained):
    """Project images onto a convolutional sparse code and reconstruct them (STL's transform).

    Args:
        config: sizes (:meth:`SparseCodingConfig.from_preset`; default the ``cpu`` preset).

    The dictionary (``K`` greyscale ``k × k`` filters, each of unit ℓ2 norm) is a parameter;
    :meth:`normalize_` puts the filters back on the unit sphere (after each training step).

    Shape:
        - Input: ``(B, C, H, W)`` in [0, 1] (each channel coded separately).
        - Output: ``(B, C, H, W)``, the reconstruction ``x_low + D z*`` (not clamped).
    """

    checkpoint_kind = "sparse-coding"
    checkpoint_hint = "ConvSparseCoder.from_pretrained, or build_defense('stl', checkpoint=...)"

    def __init__(self, config: SparseCodingConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else SparseCodingConfig.from_preset("cpu")
        c = self.config
        self.dictionary = nn.Parameter(torch.randn(c.atoms, c.kernel_size, c.kernel_size))
        self.normalize_()

    @torch.no_grad()
    def normalize_(self) -> None:
        """Scale every filter to unit ℓ2 norm (the dictionary-learning constraint)."""
        d = self.dictionary
        d.div_(d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1))

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(low, high)``: the Tikhonov low-pass and the detail that is coded."""
        return tikhonov_split(x, self.config.tikhonov, self.config.tikhonov_pad)

    def encode(
        self, high: Tensor, iterations: int | None = None, lmbda: float | None = None
    ) -> Tensor:
        """Sparse codes ``(B*C, K, H+k-1, W+k-1)`` of the detail ``(B, C, H, W)`` (``iterations``
        and ``lmbda`` default to the config's)."""
        b, c, h, w = high.shape
        steps = self.config.iterations if iterations is None else iterations
        weight = self.config.lmbda if lmbda is None else lmbda
        return fista(high.reshape(b * c, 1, h, w), self.dictionary, weight, steps)

    def decode(self, z: Tensor, channels: int = 3) -> Tensor:
        """Images ``(B, C, H, W)`` from the codes of :meth:`encode`."""
        out = synthesize(z, self.dictionary)
        return out.reshape(-1, channels, *out.shape[-2:])

    def forward(
        self, x: Tensor, iterations: int | None = None, lmbda: float | None = None
    ) -> Tensor:
        low, high = self.split(x)
        return low + self.decode(self.encode(high, iterations, lmbda), x.shape[1])

    def objective(self, high: Tensor, z: Tensor) -> Tensor:
        """The sparse-coding objective of codes ``z`` for the detail ``high``, per image."""
        b, c, h, w = high.shape
        per_channel = sparse_coding_objective(
            high.reshape(b * c, 1, h, w), z, self.dictionary, self.config.lmbda
        )
        return per_channel.view(b, c).mean(1)

    # -- checkpoints ---------------------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> ConvSparseCoder:
        return cls(SparseCodingConfig.from_dict(config))
