"""Input-transformation defenses, each a :class:`Defense` module built by name.

    >>> from irad.defenses import build_defense
    >>> jpeg = build_defense("jpeg", quality=75)
    >>> sorted(DEFENSES.names())[:3]
    ['bit-depth', 'bit-depth-reduction', 'bit-reduction']

Every defense maps images in [0, 1] (B, 3, H, W) to images in [0, 1] of the same shape, and
declares whether it is random (``stochastic``) and differentiable (``differentiable``).
"""

from irad.defenses.base import DefendedClassifier, Defense, Identity
from irad.defenses.bit_depth import BitDepthReduction
from irad.defenses.chain import DefenseChain
from irad.defenses.irad import IRAD, build_irad
from irad.defenses.jpeg import JPEG, DifferentiableJPEG
from irad.defenses.median import MedianFilter
from irad.defenses.nrp import NRP
from irad.defenses.randomization import Randomization
from irad.defenses.reconstruction import ImplicitReconstruction, build_recons
from irad.defenses.resampling import ImageResampling, ir_bil_si, ir_bil_sv, ir_nea_si, ir_nea_sv
from irad.defenses.stl import STL
from irad.errors import ConfigError
from irad.registry import Registry, parse_spec

DEFENSES: Registry[Defense] = Registry("defense")
DEFENSES.register("none", "identity")(Identity)
# Image resampling (Sec. 3, Table 1).
DEFENSES.register("ir", "image-resampling")(ImageResampling)
DEFENSES.register("ir-bil-si")(ir_bil_si)
DEFENSES.register("ir-bil-sv")(ir_bil_sv)
DEFENSES.register("ir-nea-si")(ir_nea_si)
DEFENSES.register("ir-nea-sv")(ir_nea_sv)
# Classic input transformations (Table 2).
DEFENSES.register("bit-depth", "bit-reduction", "bit-depth-reduction")(BitDepthReduction)
DEFENSES.register("jpeg", "jpeg-compression")(JPEG)
DEFENSES.register("jpeg-diff", "jpeg-differentiable")(DifferentiableJPEG)
DEFENSES.register("randomization", "random-resize-pad")(Randomization)
DEFENSES.register("median", "median-filter")(MedianFilter)
# Learned purifiers of Table 2: trained weights (irad train-stl / train-nrp), bundled when present.
DEFENSES.register("stl", "sparse-coding")(STL)
DEFENSES.register("nrp", "neural-representation-purifier")(NRP)
# Implicit representation (Sec. 4): DISCO-style reconstruction and the full IRAD.
DEFENSES.register("recons", "disco", "implicit-reconstruction")(build_recons)
DEFENSES.register("irad")(build_irad)


# Diffusion purification (Sec. 5): imported on use, so that `diffusers` stays an optional extra.
@DEFENSES.register("diffpure", "diffusion-purification")
def _diffpure(model: object = "cifar10", t: int = 100, **kwargs: object) -> Defense:
    from irad.defenses.diffpure import DiffPure

    return DiffPure(model, t, **kwargs)


@DEFENSES.register("irad+diffpure", "irad-diffpure")
def _irad_diffpure(t: int = 20, **kwargs: object) -> Defense:
    from irad.defenses.chain import build_irad_diffpure

    return build_irad_diffpure(t, **kwargs)


def build_defense(name: str, **kwargs: object) -> Defense:
    """Build a registered defense by name, e.g. ``build_defense("jpeg", quality=75)``."""
    return DEFENSES.build(name, **kwargs)


def build_defense_spec(spec: str | Defense) -> Defense:
    """A defense from a spec string: ``"jpeg:quality=75"``, or a chain of specs joined by ``>``
    and applied left to right (``"diffpure:t=20>irad"`` is IRAD+DiffPure). A :class:`Defense`
    is returned as it is.

    Example:
        >>> chain = build_defense_spec("bit-depth:bits=5>median")
        >>> [type(p).__name__ for p in chain.parts]
        ['BitDepthReduction', 'MedianFilter']
    """
    if isinstance(spec, Defense):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"a defense spec is a non-empty string such as 'jpeg:quality=75', got {spec!r}"
        )
    parts = spec.split(">")
    if any(not part.strip() for part in parts):
        raise ConfigError(
            f"defense chain {spec!r} has an empty part: join specs with '>', e.g. "
            "'diffpure:t=20>irad'"
        )
    built = [DEFENSES.build(name, **params) for name, params in map(parse_spec, parts)]
    return built[0] if len(built) == 1 else DefenseChain(*built)


__all__ = [
    "DEFENSES",
    "IRAD",
    "JPEG",
    "NRP",
    "STL",
    "BitDepthReduction",
    "DefendedClassifier",
    "Defense",
    "DefenseChain",
    "DifferentiableJPEG",
    "Identity",
    "ImageResampling",
    "ImplicitReconstruction",
    "MedianFilter",
    "Randomization",
    "build_defense",
    "build_defense_spec",
]
