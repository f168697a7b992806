"""irad: image-resampling defenses against adversarial examples (Cao et al., ICLR 2024).

The public API is a set of ``nn.Module`` s: classifiers (:mod:`irad.models`), defenses
(:mod:`irad.defenses`), and attacks and threat models (:mod:`irad.attacks`), with evaluation in
:mod:`irad.evaluate` and training in :mod:`irad.train`.
"""

from irad.defenses import DefendedClassifier, Defense, Identity
from irad.errors import CheckpointError, ConfigError, DataError, InputError, IradError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DefendedClassifier",
    "Defense",
    "Identity",
    "InputError",
    "IradError",
    "__version__",
]
