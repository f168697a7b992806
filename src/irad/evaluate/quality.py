"""Image-quality metrics of a reconstruction (Appendix A.7, Table 17).

Per image, between a reference (the clean image) and another image (the adversarial image, or
its reconstruction ``RECONS(adv)``):

* **PSNR** (dB) on [0, 1] images: ``10 log10(1 / MSE)``; identical images give ``inf``, capped at
  ``max_db`` (100 dB) so that means stay finite.
* **SSIM**: torchmetrics' ``structural_similarity_index_measure`` (Gaussian window 11, σ 1.5,
  the usual constants), when torchmetrics (the ``metrics`` extra) is installed; skipped with a
  message otherwise.
* **FFT loss, low / high frequency**: the mean absolute difference of the centred 2-D FFT
  *magnitudes* (``torch.fft.fft2`` with ``norm="ortho"``, per channel), averaged over the
  low-frequency disc ``|f| <= r`` and over the rest, with ``r = min(H, W) / 8`` frequency bins
  (4 bins on 32×32 CIFAR images; the DC term is in the low band). The paper does not define its
  split, so these values are comparable between rows of our table, not with the paper's.
* **LPIPS** (AlexNet), only when the ``lpips`` package and its weights are available; skipped with
  a message otherwise (it also needs torchvision, which irad does not use).

:func:`quality_table` gives Table 17's two columns, (clean, adv) and (clean, RECONS(adv)).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from irad.checks import check_images
from irad.errors import InputError

#: PSNR of identical images (infinite) is reported as this many dB.
PSNR_CAP_DB = 100.0


def _pair(x: Tensor, y: Tensor) -> None:
    check_images(x, "reference images")
    check_images(y, "compared images")
    if x.shape != y.shape:
        raise InputError(f"images to compare differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")


def psnr(x: Tensor, y: Tensor, *, max_db: float = PSNR_CAP_DB) -> Tensor:
    """Per-image PSNR in dB between images in [0, 1], capped at ``max_db``.

    Shape:
        - x, y: ``(B, 3, H, W)``; output ``(B,)``.

    Example:
        >>> x = torch.full((1, 3, 4, 4), 0.5)
        >>> psnr(x, x).item(), round(psnr(x, x + 0.1).item(), 2)
        (100.0, 20.0)
    """
    _pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)
    db = 10 * torch.log10(1.0 / mse)
    return db.clamp(max=max_db).float()


def ssim_available() -> bool:
    """Whether SSIM can be computed (torchmetrics importable)."""
    return importlib.util.find_spec("torchmetrics") is not None


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM (torchmetrics, data range 1).

    Shape:
        - x, y: ``(B, 3, H, W)``; output ``(B,)``.
    """
    _pair(x, y)
    if not ssim_available():
        raise InputError("SSIM needs torchmetrics: pip install 'irad[metrics]'")
    from torchmetrics.functional.image import structural_similarity_index_measure

    out = structural_similarity_index_measure(
        y.float(), x.float(), data_range=1.0, reduction="none"
    )
    return out.reshape(-1)


def low_frequency_mask(height: int, width: int, radius: float | None = None) -> Tensor:
    """Boolean ``(H, W)`` mask of the centred low-frequency disc (``fftshift`` layout).

    ``radius`` in frequency bins; default ``min(H, W) / 8``.
    """
    r = min(height, width) / 8 if radius is None else radius
    fy = torch.arange(height, dtype=torch.float64) - height // 2
    fx = torch.arange(width, dtype=torch.float64) - width // 2
    d = torch.sqrt(fy.view(-1, 1) ** 2 + fx.view(1, -1) ** 2)
    return d <= r


def fft_losses(x: Tensor, y: Tensor, *, radius: float | None = None) -> tuple[Tensor, Tensor]:
    """Per-image low- and high-frequency FFT-magnitude losses (see the module docstring).

    Shape:
        - x, y: ``(B, 3, H, W)``; outputs ``(B,)``, ``(B,)``.
    """
    _pair(x, y)
    h, w = x.shape[-2:]

    def mag(z: Tensor) -> Tensor:
        f = torch.fft.fft2(z.double(), norm="ortho")
        return torch.fft.fftshift(f, dim=(-2, -1)).abs()

    diff = (mag(x) - mag(y)).abs()  # (B, 3, H, W)
    low = low_frequency_mask(h, w, radius).to(diff.device)
    lo = diff[..., low].mean(dim=(-1, -2)) if low.any() else diff.new_zeros(diff.shape[0])
    hi = diff[..., ~low].mean(dim=(-1, -2)) if (~low).any() else diff.new_zeros(diff.shape[0])
    return lo.float(), hi.float()


def lpips_metric(device: str | torch.device = "cpu") -> tuple[Callable[..., Tensor] | None, str]:
    """An LPIPS (AlexNet) function and a status line; ``(None, why)`` when unavailable."""
    if importlib.util.find_spec("lpips") is None:
        return None, "LPIPS skipped: the `lpips` package is not installed (pip install lpips)"
    try:
        import lpips

        net = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except Exception as err:  # weights missing (no network), torchvision missing, ...
        return None, f"LPIPS skipped: could not load its AlexNet weights ({err})"

    @torch.no_grad()
    def f(x: Tensor, y: Tensor) -> Tensor:
        return net(x * 2 - 1, y * 2 - 1).reshape(-1)

    return f, "LPIPS: AlexNet (lpips package)"


def image_quality(
    reference: Tensor,
    other: Tensor,
    *,
    lpips_fn: Callable[..., Tensor] | None = None,
    radius: float | None = None,
) -> dict[str, Tensor]:
    """Per-image metrics of ``other`` against ``reference``: psnr, ssim, fft_low, fft_high, lpips.

    Metrics that cannot be computed (SSIM without torchmetrics, LPIPS without ``lpips_fn``) are
    left out.

    Shape:
        - reference, other: ``(B, 3, H, W)`` in [0, 1]; each value ``(B,)``.
    """
    out = {"psnr": psnr(reference, other)}
    if ssim_available():
        out["ssim"] = ssim(reference, other)
    lo, hi = fft_losses(reference, other, radius=radius)
    out["fft_low"], out["fft_high"] = lo, hi
    if lpips_fn is not None:
        out["lpips"] = lpips_fn(reference, other)
    return out


class QualityAccumulator:
    """Running means of per-image metrics over batches."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, metrics: dict[str, Tensor]) -> None:
        sizes = {int(v.numel()) for v in metrics.values()}
        if len(sizes) != 1:
            raise InputError(f"metrics of one batch must have one size, got {sizes}")
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.double().sum())
        self.n += sizes.pop()

    def means(self) -> dict[str, float]:
        return {k: v / self.n for k, v in self.sums.items()} if self.n else {}


def quality_table(
    batches: Iterable[tuple[Tensor, Tensor]],
    reconstruct: Callable[[Tensor], Tensor],
    *,
    lpips_fn: Callable[..., Tensor] | None = None,
    radius: float | None = None,
) -> dict[str, Any]:
    """Table 17: mean metrics of (clean vs adv) and (clean vs RECONS(adv)).

    Args:
        batches: ``(clean, adv)`` float batches in [0, 1].
        reconstruct: the reconstruction, e.g. an
            :class:`~irad.defenses.reconstruction.ImplicitReconstruction`.
        lpips_fn: from :func:`lpips_metric` (``None``: no LPIPS).

    Returns:
        ``{"clean_vs_adv": {...}, "clean_vs_recons_adv": {...}, "n": N}``.
    """
    a, b = QualityAccumulator(), QualityAccumulator()
    with torch.no_grad():
        for clean, adv in batches:
            a.add(image_quality(clean, adv, lpips_fn=lpips_fn, radius=radius))
            rec = reconstruct(adv).clamp(0.0, 1.0)
            b.add(image_quality(clean, rec, lpips_fn=lpips_fn, radius=radius))
    return {"clean_vs_adv": a.means(), "clean_vs_recons_adv": b.means(), "n": a.n}


_LABELS = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "fft_low": "Low frequency FFT loss",
    "fft_high": "High frequency FFT loss",
    "lpips": "LPIPS",
}


def format_quality_table(result: dict[str, Any]) -> str:
    """Markdown table in Table 17's layout."""
    lines = [
        "| metric | clean vs adv | clean vs RECONS(adv) |",
        "|---|---:|---:|",
    ]
    left, right = result["clean_vs_adv"], result["clean_vs_recons_adv"]
    for key, label in _LABELS.items():
        if key in left:
            digits = 2 if key == "psnr" else 4
            lv, rv = left[key], right.get(key, math.nan)
            lines.append(f"| {label} | {lv:.{digits}f} | {rv:.{digits}f} |")
    return "\n".join(lines)


__all__ = [
    "PSNR_CAP_DB",
    "QualityAccumulator",
    "fft_losses",
    "format_quality_table",
    "image_quality",
    "low_frequency_mask",
    "lpips_metric",
    "psnr",
    "quality_table",
    "ssim",
    "ssim_available",
]
