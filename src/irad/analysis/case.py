"""One image through a defense, panel by panel (Appendix A.9, Figs. 6-8), plus what only irad
can show: SampleNet's shift field and where the defense changed pixels.

:func:`case_study` computes; :func:`irad.analysis.figures.plot_case` draws. The adversarial
image comes from :func:`make_adversarial` (an attack spec run on the classifier alone, the
oblivious threat, unless the caller passes another model to attack).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from irad.checks import check_images, check_labels
from irad.defenses import IRAD, Defense, DefenseChain, build_defense_spec
from irad.errors import InputError
from irad.models.classifier import Classifier

#: The randomly resampled panels of Figs. 6-8: bilinear, per-pixel shifts U(0, 1.5) (Table 1).
DEFAULT_RESAMPLE = "ir-bil-sv:shift=1.5,seed=0"


def make_adversarial(
    model: nn.Module, x: Tensor, y: Tensor, attack: str = "pgd:steps=10", *, seed: int = 0
) -> Tensor:
    """Adversarial images from an attack spec (``name:k=v,...``, ε in /255 via ``eps=``).

    ``model`` is what the attack differentiates through: the classifier alone for the oblivious
    threat (as in the paper's figures).

    Shape:
        - x: ``(B, 3, H, W)`` in [0, 1]; y: ``(B,)``; output like ``x``.
    """
    from irad.attacks import build_attack
    from irad.evaluate.specs import AttackSpec

    check_images(x, "images to attack")
    check_labels(y, x.shape[0])
    spec = AttackSpec.parse(attack)
    params = {"seed": seed, **spec.params}
    model.eval()
    return build_attack(spec.name, model, eps=spec.eps, **params)(x, y).detach()


def find_irad(defense: Defense) -> tuple[Defense | None, IRAD | None]:
    """The IRAD inside ``defense`` (itself, or a part of a chain) and what runs before it.

    Returns ``(before, irad)``: ``before`` is ``None`` when IRAD is first (or absent); ``irad``
    is ``None`` when the defense holds no IRAD.
    """
    if isinstance(defense, IRAD):
        return None, defense
    if isinstance(defense, DefenseChain):
        for k, part in enumerate(defense.parts):
            if isinstance(part, IRAD):
                before = list(defense.parts[:k])
                if not before:
                    return None, part
                return (before[0] if len(before) == 1 else DefenseChain(*before)), part
    return None, None


@dataclass
class Panel:
    """One image of a case figure and the classifier's logits on it."""

    title: str
    image: Tensor
    logits: Tensor

    @property
    def prediction(self) -> int:
        return int(self.logits.argmax())


@dataclass
class CaseStudy:
    """Clean / adversarial, randomly resampled, and defended versions of one image.

    ``panels``: clean, adversarial, resampled clean, resampled adversarial, defended clean,
    defended adversarial. ``shifts``: SampleNet's shift ``(H, W, 2)`` in pixels (row, col) on
    the adversarial image, when the defense holds an IRAD. ``diff_adv`` = |adv - clean|,
    ``diff_defended`` = |defense(adv) - clean|, both ``(H, W)``, the max over channels.
    """

    index: int
    label: int
    classes: list[str]
    panels: list[Panel]
    shifts: Tensor | None
    diff_adv: Tensor
    diff_defended: Tensor
    settings: dict[str, Any] = field(default_factory=dict)

    def class_name(self, k: int) -> str:
        return self.classes[k] if 0 <= k < len(self.classes) else str(k)

    def summary(self) -> list[str]:
        """One line per panel: its title, prediction and softmax probability of the true class."""
        out = []
        for p in self.panels:
            prob = torch.softmax(p.logits.double(), 0)
            out.append(
                f"{p.title}: predicted {self.class_name(p.prediction)} "
                f"(p = {float(prob[p.prediction]):.3f}), true class "
                f"{self.class_name(self.label)} p = {float(prob[self.label]):.3f}"
            )
        if self.shifts is not None:
            mag = self.shifts.norm(dim=-1)
            out.append(
                f"SampleNet shift on the adversarial image: mean {float(mag.mean()):.3f} px, "
                f"max {float(mag.max()):.3f} px"
            )
        out.append(
            f"max |adv - clean| = {float(self.diff_adv.max()) * 255:.1f}/255, mean |defended(adv) "
            f"- clean| = {float(self.diff_defended.mean()) * 255:.2f}/255 (|adv - clean|: "
            f"{float(self.diff_adv.mean()) * 255:.2f}/255)"
        )
        return out


def case_study(
    classifier: Classifier,
    clean: Tensor,
    label: int,
    adversarial: Tensor,
    defense: str | Defense = "irad",
    *,
    resample: str | Defense = DEFAULT_RESAMPLE,
    classes: Sequence[str] | None = None,
    index: int = 0,
    settings: dict[str, Any] | None = None,
) -> CaseStudy:
    """Run one image (and its adversarial twin) through a random resampling and a defense.

    Args:
        classifier: the victim.
        clean, adversarial: ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1].
        label: the true class.
        defense: a defense or a spec (``"irad"``, ``"recons"``, chains with ``>``).
        resample: the "randomly resampled" panels' defense (default :data:`DEFAULT_RESAMPLE`).
        classes: class names for the labels (default: the classifier's, else numbers).
    """
    x = clean.unsqueeze(0) if clean.ndim == 3 else clean
    xa = adversarial.unsqueeze(0) if adversarial.ndim == 3 else adversarial
    check_images(x, "clean image")
    check_images(xa, "adversarial image")
    if x.shape[0] != 1 or x.shape != xa.shape:
        raise InputError(
            f"case_study takes one image and its adversarial twin, got {tuple(x.shape)} and "
            f"{tuple(xa.shape)}"
        )
    defense = build_defense_spec(defense).eval()
    resampler = build_defense_spec(resample).eval()
    classifier.eval()
    names = list(classes or classifier.classes or range(classifier.num_classes or 0))
    names = [str(c) for c in names]
    with torch.no_grad():
        images = [
            ("clean", x),
            ("adversarial", xa),
            ("resampled clean", resampler(x)),
            ("resampled adversarial", resampler(xa)),
            ("defended clean", defense(x)),
            ("defended adversarial", defense(xa)),
        ]
        panels = [Panel(t, im[0].cpu(), classifier(im)[0].cpu()) for t, im in images]
        before, irad = find_irad(defense)
        shifts = None
        if irad is not None:
            shifts = irad.shifts(before(xa) if before is not None else xa)[0].cpu()
    diff_adv = (xa - x).abs().amax(dim=1)[0].cpu()
    diff_defended = (panels[5].image - x[0].cpu()).abs().amax(dim=0)
    return CaseStudy(
        index, int(label), names, panels, shifts, diff_adv, diff_defended, dict(settings or {})
    )
