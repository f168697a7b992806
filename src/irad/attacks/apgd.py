"""APGD whose iterations leave out the images already misclassified (an active set).

torchattacks' APGD (Croce & Hein 2020) runs every step on the whole batch, also for images it
has already fooled. Against a deterministic model whose output for one image does not depend
on the other images of the batch, that work is wasted: every quantity APGD keeps is per image
(iterate, momentum, step size, best loss, the oscillation checks on the image's own loss
history) and the checkpoint schedule it shares is fixed in advance, so an image's trajectory
depends on that image alone, and an image misclassified once is a success whatever comes after.
:class:`ActiveSetAPGD` therefore drops each image from the forward and backward passes once it
is misclassified. The images fooled, and each never-fooled image's whole run, are those of
torchattacks' APGD (tested bit for bit on a model that treats images one by one; on real
networks up to the rounding differences kernels may have between batch sizes); what differs is
which fooling iterate is kept for a fooled image (the first, where torchattacks keeps the
last). Against a strong defense most images fall within the first steps, so a 20-step adaptive
APGD costs a fraction of its passes.

It is a setting (``apgd:active_set=true``; off by default), because it is right only where the
model attacked is the model that judges the result: the white-box threat models turn it on for
deterministic defenses (``ThreatModel.adapt``). Under the oblivious threat the defense judges
images the attack never saw through it, and there which fooling iterate is kept matters (the
first transfers differently from the last); against a random model "misclassified once" is not
a success. There, and with ``eot_iter > 1``, the algorithm is torchattacks' step for step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torchattacks
from torch import Tensor, nn

from irad.attacks.base import AttackContext, is_deterministic

__all__ = ["ActiveSetAPGD", "active_set_allowed", "warn_active_set_off"]


def warn_active_set_off(reason: str, stacklevel: int) -> None:
    """Say that an active set that was asked for is not used on this call (the record still
    shows ``active_set=True``: what was asked for)."""
    warnings.warn(
        f"active_set=True is switched off on this call: {reason}",
        RuntimeWarning,
        stacklevel=stacklevel + 1,
    )


def active_set_allowed(ctx: AttackContext, x: Tensor, eot_iter: int = 1) -> bool:
    """Whether an attack asked for the active set may use it on this call: the model must be
    deterministic (checked on ``x``) and the gradient not an EOT average; else it warns and
    runs without."""
    if eot_iter == 1 and is_deterministic(ctx.model, x):
        return True
    # stacklevel: Attack.__call__'s caller (perturb, __call__, here)
    warn_active_set_off(
        "it needs a deterministic model and eot_iter=1 (against a random model "
        "'misclassified once' is not a success)",
        stacklevel=4,
    )
    return False


class ActiveSetAPGD(torchattacks.APGD):
    """torchattacks' L∞ APGD with fooled images leaving the batch (see the module docstring).

    Args:
        model, norm, eps, steps, n_restarts, seed, loss, eot_iter, rho, verbose: as
            ``torchattacks.APGD``.
        prune: drop an image from later passes once it is misclassified. Only for models that
            are deterministic and treat each image of a batch on its own; ``False`` runs
            torchattacks' algorithm unchanged (the same per-image arithmetic, all images every
            step).

    The L2 norm is left to torchattacks' own implementation.
    """

    def __init__(self, model: nn.Module, *args: object, prune: bool = True, **kwargs: object):
        super().__init__(model, *args, **kwargs)
        self.prune = bool(prune)
        #: forward-backward passes per image spent by the last call (for benchmarks and tests)
        self.image_passes = 0

    def _gradient(
        self, x_adv: Tensor, y: Tensor, criterion: Callable[[Tensor, Tensor], Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Logits, per-image loss and the loss gradient at ``x_adv`` (EOT-averaged)."""
        x_adv = x_adv.detach().requires_grad_()
        grad = torch.zeros_like(x_adv)
        for _ in range(self.eot_iter):
            with torch.enable_grad():
                logits = self.get_logits(x_adv)
                loss_indiv = criterion(logits, y)
                loss = loss_indiv.sum()
            grad += torch.autograd.grad(loss, [x_adv])[0].detach()
        grad /= float(self.eot_iter)
        self.image_passes += x_adv.shape[0] * self.eot_iter
        return logits.detach(), loss_indiv.detach(), grad

    def attack_single_run(self, x_in: Tensor, y_in: Tensor):
        if self.norm != "Linf":
            return super().attack_single_run(x_in, y_in)
        x = x_in.clone() if x_in.dim() == 4 else x_in.clone().unsqueeze(0)
        y = y_in.clone() if y_in.dim() == 1 else y_in.clone().unsqueeze(0)
        n, steps, eps, device = x.shape[0], self.steps, self.eps, x.device
        # Checkpoint schedule of APGD (shared by all images, fixed in advance).
        steps_2 = max(int(0.22 * steps), 1)
        steps_min = max(int(0.06 * steps), 1)
        size_decr = max(int(0.03 * steps), 1)

        # Random start in the ε-ball, drawn as torchattacks draws it (global CPU generator,
        # seeded by perturb), so that both give the same start.
        t = 2 * torch.rand(x.shape).to(device).detach() - 1
        scale = t.reshape([n, -1]).abs().max(dim=1, keepdim=True)[0].reshape([-1, 1, 1, 1])
        x_adv = (x.detach() + eps * torch.ones([n, 1, 1, 1], device=device) * t / scale).clamp(
            0.0, 1.0
        )
        x_best = x_adv.clone()
        x_best_adv = x_adv.clone()
        loss_steps = torch.zeros([steps, n])

        if self.loss == "ce":
            criterion = nn.CrossEntropyLoss(reduction="none")
        elif self.loss == "dlr":
            criterion = self.dlr_loss
        else:
            raise ValueError(f"unknown loss {self.loss!r}")

        logits, loss_best, grad = self._gradient(x_adv, y, criterion)
        grad_best = grad.clone()
        acc = logits.max(1)[1] == y
        step_size = 2.0 * eps * torch.ones([n, 1, 1, 1], device=device)
        x_adv_old = x_adv.clone()
        k = steps_2
        counter3 = 0
        loss_best_last_check = loss_best.clone()
        reduced_last_check = np.ones(n, dtype=bool)
        everyone = torch.arange(n, device=device)
        active = everyone[acc] if self.prune else everyone

        for i in range(steps):
            if active.numel() == 0:
                break  # every image is fooled: nothing later can change the result
            with torch.no_grad():
                # The step for every image (cheap); only the active ones are evaluated below.
                grad2 = x_adv - x_adv_old
                x_adv_old = x_adv.clone()
                a = 0.75 if i > 0 else 1.0
                x_adv_1 = x_adv + step_size * torch.sign(grad)
                x_adv_1 = torch.clamp(torch.min(torch.max(x_adv_1, x - eps), x + eps), 0.0, 1.0)
                x_adv_1 = torch.clamp(
                    torch.min(
                        torch.max(x_adv + (x_adv_1 - x_adv) * a + grad2 * (1 - a), x - eps),
                        x + eps,
                    ),
                    0.0,
                    1.0,
                )
                x_adv = x_adv_1 + 0.0

            logits, loss_now, grad_now = self._gradient(x_adv[active], y[active], criterion)
            with torch.no_grad():
                grad[active] = grad_now
                pred = logits.max(1)[1] == y[active]
                acc[active] = torch.min(acc[active], pred)
                fooled = active[~pred]
                x_best_adv[fooled] = x_adv[fooled]

                loss_steps[i, active.cpu()] = loss_now.cpu()
                better = loss_now > loss_best[active]
                improved = active[better]
                x_best[improved] = x_adv[improved]
                grad_best[improved] = grad[improved]
                loss_best[improved] = loss_now[better]

                counter3 += 1
                if counter3 == k:
                    oscillating = self.check_oscillation(
                        loss_steps.numpy(), i, k, None, k3=self.thr_decr
                    )
                    no_improvement = ~reduced_last_check & (
                        loss_best_last_check.cpu().numpy() >= loss_best.cpu().numpy()
                    )
                    reduce = oscillating | no_improvement
                    reduced_last_check = reduce.copy()
                    loss_best_last_check = loss_best.clone()
                    if reduce.any():
                        where = torch.from_numpy(np.flatnonzero(reduce)).to(device)
                        step_size[where] /= 2.0
                        x_adv[where] = x_best[where]
                        grad[where] = grad_best[where]
                    counter3 = 0
                    k = max(k - size_decr, steps_min)
            if self.prune:
                active = active[pred]

        return x_best, acc, loss_best, x_best_adv

    def perturb(self, x_in: Tensor, y_in: Tensor, best_loss: bool = False, cheap: bool = True):
        self.image_passes = 0
        return super().perturb(x_in, y_in, best_loss=best_loss, cheap=cheap)
