"""Shared test settings: find the local CIFAR-10 copy the way CI lays it out.

CI clones the project with ``shared/`` beside it; when ``IRAD_DATA`` is unset and
``../shared/data/cifar10`` exists, the data-marked tests use it. Elsewhere they skip.
"""

import os
from pathlib import Path

_SHARED_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"

if "IRAD_DATA" not in os.environ and (_SHARED_CIFAR10 / "test.npz").is_file():
    os.environ["IRAD_DATA"] = str(_SHARED_CIFAR10)
