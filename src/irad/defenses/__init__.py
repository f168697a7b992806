"""Input-transformation defenses, each a :class:`Defense` module built by name."""

from irad.defenses.base import Defense, DefendedClassifier, Identity
from irad.registry import Registry

DEFENSES: Registry[Defense] = Registry("defense")
DEFENSES.register("none", "identity")(Identity)

__all__ = ["DEFENSES", "DefendedClassifier", "Defense", "Identity", "build_defense"]


def build_defense(name: str, **kwargs: object) -> Defense:
    """Build a registered defense by name, e.g. ``build_defense("jpeg", quality=75)``."""
    return DEFENSES.build(name, **kwargs)
