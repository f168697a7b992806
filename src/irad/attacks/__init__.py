"""L∞ attacks built by name, and the threat models that decide what they differentiate through.

``build_attack(name, model, eps=8, **params)`` returns an :class:`Attack`; ``attack(x, y)``
returns adversarial images in [0, 1] within ε of ``x`` (ε and step sizes in /255 units).
``threat_model(name)`` gives a threat model (``oblivious``, ``bpda``, ``bpda-eot``,
``adaptive``; see :mod:`irad.attacks.threat`): an object that says whether the attack sees the
defense, whether random defenses get EOT, which module the attack differentiates through
(``attack_surface(threat, defense, classifier)``) and how an attack adapts to a defense.

Attacks, their implementation and defaults (all L∞, ``eps=8``; step sizes in /255):

========== ======================= =============================================== ===========
name       implementation          defaults                                        random
========== ======================= =============================================== ===========
autoattack irad, over torchattacks version="standard", steps=100, n_queries=5000,  yes
           APGD/APGDT/FAB/Square   n_target_classes=9; "rand": APGD-CE + APGD-DLR,
                                   eot_iter=20 (reference AutoAttack settings)
fgsm       torchattacks.FGSM       (none)                                          no
bim        torchattacks.BIM        steps=10, alpha=2                               no
pgd        torchattacks.PGD        steps=20, alpha=2, random_start=True (PGD-20)   if start
rfgsm      torchattacks.RFGSM      steps=10, alpha=2                               yes
tpgd       torchattacks.TPGD       steps=10, alpha=2 (labels unused)               yes
apgd       irad ActiveSetAPGD      steps=10, loss="ce", n_restarts=1, eot_iter=1,  yes
           (torchattacks.APGD;     rho=0.75
           fooled images leave
           the batch)
apgdt      torchattacks.APGDT      steps=10, n_restarts=1, eot_iter=1, rho=0.75,   yes
                                   n_target_classes=9
eotpgd     torchattacks.EOTPGD     steps=10, alpha=2, eot_iter=2,                  if start
                                   random_start=True
ffgsm      torchattacks.FFGSM      alpha=10                                        yes
mifgsm     torchattacks.MIFGSM     steps=10, alpha=2, decay=1.0                    no
jitter     torchattacks.Jitter     steps=10, alpha=2, scale=10, std=0.1,           yes
                                   random_start=True
vmifgsm    torchattacks.VMIFGSM    steps=10, alpha=2, decay=1.0, neighbors=5,      yes
                                   beta=1.5
vnifgsm    torchattacks.VNIFGSM    as vmifgsm                                      yes
square     torchattacks.Square     n_queries=5000, n_restarts=1, p_init=0.8,       yes
                                   loss="margin"
fab        torchattacks.FAB        steps=10, n_restarts=1, multi_targeted=False,   if restarts
                                   alpha_max=0.1, eta=1.05, beta=0.9
admix      irad (Wang et al. 2021) steps=10, alpha=eps/steps, decay=1.0,           yes
                                   num_scales=5, num_mixes=3, eta=0.2
========== ======================= =============================================== ===========

Every attack also takes ``seed`` (default 0). See ``docs/attacks.md`` for the paper settings.

Example:
    >>> import torch
    >>> from irad.attacks import build_attack
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    >>> x, y = torch.rand(4, 3, 8, 8), torch.randint(0, 10, (4,))
    >>> x_adv = build_attack("pgd", net, eps=8, steps=5)(x, y)
    >>> bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
    True
"""

from irad.attacks import admix as _admix  # noqa: F401  (registers)
from irad.attacks import autoattack as _autoattack  # noqa: F401  (registers)
from irad.attacks import torchattacks_wrappers as _torchattacks_wrappers  # noqa: F401
from irad.attacks.apgd import ActiveSetAPGD
from irad.attacks.base import Attack, AttackContext, project_linf, straight_through
from irad.attacks.diagnostics import gradient_stats
from irad.attacks.registry import (
    ATTACKS,
    attack_names,
    attack_parameters,
    build_attack,
    register_attack,
)
from irad.attacks.threat import (
    BPDA,
    EOT,
    PAPER_BPDA,
    STRONG_BPDA,
    STRONG_BPDA_EOT_SAMPLES,
    THREAT_MODELS,
    THREATS,
    AttackPlan,
    ThreatModel,
    attack_surface,
    is_stochastic,
    paper_bpda_attack,
    strong_bpda_attack,
    threat_model,
)

__all__ = [
    "ATTACKS",
    "BPDA",
    "EOT",
    "PAPER_BPDA",
    "STRONG_BPDA",
    "STRONG_BPDA_EOT_SAMPLES",
    "THREATS",
    "THREAT_MODELS",
    "ActiveSetAPGD",
    "Attack",
    "AttackContext",
    "AttackPlan",
    "ThreatModel",
    "attack_names",
    "attack_parameters",
    "attack_surface",
    "build_attack",
    "gradient_stats",
    "is_stochastic",
    "paper_bpda_attack",
    "project_linf",
    "register_attack",
    "straight_through",
    "strong_bpda_attack",
    "threat_model",
]
