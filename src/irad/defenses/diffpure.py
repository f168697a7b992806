"""DiffPure (Nie et al. 2022): diffuse the input to step ``t``, then run the reverse process.

``x_t = sqrt(ᾱ_t) x + sqrt(1 - ᾱ_t) ε`` drowns a small adversarial perturbation in Gaussian
noise; the reverse process, guided by a score model trained on clean images, brings the image
back to the data manifold. The reverse chain is DDPM's ancestral sampling (random, the default,
DiffPure's discretised reverse SDE) or DDIM (deterministic given ``x_t``), in ``reverse_steps``
steps from ``t`` to 0 (fewer than ``t`` skips steps, as respaced DDPM does).

Everything is differentiable, so the adaptive threat differentiates through the whole chain.
Gradient checkpointing keeps one reverse step's activations at a time: the memory of an attack
step no longer grows with ``t``, at the cost of one more forward pass per step.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from irad.checks import check_choice, check_seed
from irad.defenses.base import Defense
from irad.errors import InputError


def reverse_timesteps(t: int, reverse_steps: int) -> list[int]:
    """The ``reverse_steps + 1`` steps ``t = τ_K > ... > τ_0 = 0`` the reverse chain visits.

    Example:
        >>> reverse_timesteps(10, 10)
        [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
        >>> reverse_timesteps(100, 4)
        [100, 75, 50, 25, 0]
    """
    if not 1 <= reverse_steps <= t:
        raise InputError(f"reverse_steps must be in [1, t={t}], got {reverse_steps}")
    return [round(t * (reverse_steps - i) / reverse_steps) for i in range(reverse_steps + 1)]


def reverse_step(
    model: Any,
    x: Tensor,
    t: int,
    t_prev: int,
    noise: Tensor | None,
    *,
    sampler: str = "ddpm",
    variance: str = "small",
) -> Tensor:
    """One step of the reverse chain from ``x_t`` to ``x_{t_prev}`` (images in [-1, 1]).

    DDPM: the posterior mean given the clipped ``x_0`` estimate, plus ``σ noise`` with the
    posterior variance (``"small"``, diffusers' ``fixed_small``) or ``β`` (``"large"``); no noise
    on the last step. DDIM (η = 0): ``sqrt(ᾱ_prev) x_0 + sqrt(1 - ᾱ_prev) ε``.
    """
    ab_t = model.alpha_bar[t].to(x.dtype)
    ab_p = model.alpha_bar[t_prev].to(x.dtype)
    eps = model.eps(x, t)
    x0 = ((x - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()).clamp(-1.0, 1.0)
    if sampler == "ddim":
        eps = (x - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()  # consistent with the clipped x0
        return ab_p.sqrt() * x0 + (1 - ab_p).sqrt() * eps
    beta = 1 - ab_t / ab_p
    mean = (ab_p.sqrt() * beta / (1 - ab_t)) * x0 + (
        (1 - beta).sqrt() * (1 - ab_p) / (1 - ab_t)
    ) * x
    if t_prev == 0 or noise is None:
        return mean
    var = beta * (1 - ab_p) / (1 - ab_t) if variance == "small" else beta
    return mean + var.clamp_min(1e-20).sqrt() * noise


class DiffPure(Defense):
    """Diffusion purification (DiffPure): forward diffusion to ``t``, then the reverse chain.

    Args:
        model: a :class:`irad.models.diffusion.DiffusionModel`, or what
            ``DiffusionModel.from_pretrained`` takes (a bundled name such as ``"cifar10"``, an irad
            checkpoint folder, a local diffusers UNet folder).
        t: diffusion steps, in [0, T] (DiffPure on CIFAR-10: t* = 0.1, ``t = 100``); 0 returns
            the input.
        reverse_steps: steps of the reverse chain (default ``t``; fewer skip steps evenly).
        sampler: ``"ddpm"`` (ancestral, random: DiffPure's reverse SDE) or ``"ddim"``
            (deterministic given ``x_t``; the forward diffusion stays random).
        variance: DDPM noise, ``"small"`` (posterior variance) or ``"large"`` (β).
        seed: seed of the defense's own generator, drawn from by every call (so repeated calls
            differ, and the sequence is reproducible); ``None``: torch's global RNG.
        checkpointing: recompute each reverse step in backward instead of storing it (bounded
            memory for adaptive attacks; gradients are unchanged).

    The defense is ``stochastic`` (random noise enters at step ``t``) and differentiable.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1], H and W multiples of the UNet's downsampling.
        - Output: ``(B, 3, H, W)`` in [0, 1].

    Example:
        >>> from irad.models.diffusion import DiffusionConfig, DiffusionModel
        >>> purifier = DiffPure(DiffusionModel(DiffusionConfig.from_preset("tiny")), t=4, seed=0)
        >>> purifier(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    stochastic = True
    differentiable = True

    def __init__(
        self,
        model: Any = "cifar10",
        t: int = 100,
        *,
        reverse_steps: int | None = None,
        sampler: str = "ddpm",
        variance: str = "small",
        seed: int | None = None,
        checkpointing: bool = True,
    ) -> None:
        super().__init__()
        from irad.models.diffusion import DiffusionModel

        if isinstance(model, str | os.PathLike):
            model = DiffusionModel.from_pretrained(model)
        if not isinstance(model, DiffusionModel):
            raise InputError(
                f"model must be a DiffusionModel or a checkpoint name/path, got "
                f"{type(model).__name__}"
            )
        self.model = model.eval().requires_grad_(False)
        self.t = model.check_timestep(int(t) if isinstance(t, float) and t.is_integer() else t)
        if self.t > model.config.t_max:
            warnings.warn(
                f"DiffPure at t={self.t}, but this diffusion model was trained on t <= "
                f"{model.config.t_max} only; expect poor purification",
                stacklevel=2,
            )
        steps = self.t if reverse_steps is None else reverse_steps
        if self.t > 0:
            reverse_timesteps(self.t, steps)  # validates
        self.reverse_steps = steps
        self.sampler = check_choice(sampler, "sampler", ("ddpm", "ddim"))
        self.variance = check_choice(variance, "variance", ("small", "large"))
        self.seed = check_seed(seed, optional=True)
        self.generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        self.checkpointing = bool(checkpointing)
        self.stochastic = self.t > 0

    def reseed(self, seed: int) -> None:
        """Restart the defense's random stream at ``seed`` (scoring over several draws)."""
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def _randn(self, like: Tensor) -> Tensor:
        if self.generator is None:
            return torch.randn(like.shape, device=like.device, dtype=like.dtype)
        # Drawn on the CPU generator and moved: the same images on any device.
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)

    def purify(self, x: Tensor) -> Tensor:
        if self.t == 0:
            return x
        self.model.check_image_size(x)
        model = self.model
        z = x * 2 - 1
        x_t = model.diffuse(z, self.t, self._randn(z))
        steps = reverse_timesteps(self.t, self.reverse_steps)
        # Every noise draw happens before the chain runs, so that a checkpointed step recomputes
        # exactly what it computed the first time.
        noises = [
            self._randn(z) if self.sampler == "ddpm" and prev > 0 else None for prev in steps[1:]
        ]
        remember = self.checkpointing and torch.is_grad_enabled()
        for cur, prev, noise in zip(steps[:-1], steps[1:], noises, strict=True):
            if remember:
                x_t = checkpoint(
                    reverse_step,
                    model,
                    x_t,
                    cur,
                    prev,
                    noise,
                    sampler=self.sampler,
                    variance=self.variance,
                    use_reentrant=False,
                )
            else:
                x_t = reverse_step(
                    model, x_t, cur, prev, noise, sampler=self.sampler, variance=self.variance
                )
        return (x_t + 1) / 2

    def config(self) -> dict[str, Any]:
        return {
            "name": "diffpure",
            "t": self.t,
            "reverse_steps": self.reverse_steps,
            "sampler": self.sampler,
            "variance": self.variance,
            "seed": self.seed,
            "model": {
                "preset": self.model.config.preset,
                "t_max": self.model.config.t_max,
                "source": getattr(self.model, "checkpoint_metadata", {}).get("source"),
            },
        }
