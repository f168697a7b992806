"""Gradient diagnostics: flag surfaces whose gradients cannot guide an attack.

Zero gradients (a quantising or non-differentiable defense run with real gradients) or NaN
gradients make white-box attacks fail silently and robustness look high; Carlini et al. (2019)
list them among the first things to check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from irad.attacks.base import attack_mode
from irad.checks import check_images, check_labels, check_logits

__all__ = ["gradient_stats"]


def gradient_stats(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """Statistics of the input gradient of the cross-entropy loss of ``model`` at ``(x, y)``.

    The loss is summed over the batch, so per-image gradients do not depend on the batch size.
    The model is in eval mode with frozen parameters during the call (restored afterwards).
    A model whose output does not depend on ``x`` through autograd counts as all-zero.

    Returns:
        ``zero_fraction``: share of gradient entries exactly 0;
        ``zero_image_fraction``: share of images whose whole gradient is 0;
        ``nan_count``: number of non-finite entries (NaN or inf);
        ``mean_abs``: mean absolute value of the finite entries (0 if none).

    Shape:
        - x: ``(B, C, H, W)`` in [0, 1]; y: ``(B,)``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))
        >>> stats = gradient_stats(net, torch.rand(2, 3, 4, 4), torch.tensor([0, 1]))
        >>> stats["zero_fraction"] < 1.0
        True
    """
    check_images(x, "images", channels=None)
    check_labels(y, x.shape[0])
    x_in = x.detach().clone().requires_grad_(True)
    with attack_mode(model), torch.enable_grad():
        logits = check_logits(model(x_in), x.shape[0])
        loss = F.cross_entropy(logits, y.to(logits.device), reduction="sum")
        # No graph back to the input (e.g. a defense run under no_grad) means no gradient.
        grad = None
        if loss.requires_grad:
            grad = torch.autograd.grad(loss, x_in, allow_unused=True)[0]
    if grad is None:
        grad = torch.zeros_like(x_in)
    finite = torch.isfinite(grad)
    zero = grad == 0
    return {
        "zero_fraction": float(zero.float().mean()),
        "zero_image_fraction": float(zero.flatten(1).all(1).float().mean()),
        "nan_count": int((~finite).sum()),
        "mean_abs": float(grad[finite].abs().mean()) if bool(finite.any()) else 0.0,
    }
