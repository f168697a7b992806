"""Moved to :mod:`irad.checkpoint`; this alias is removed once every caller imports from there."""

from irad.checkpoint import *  # noqa: F403
from irad.checkpoint import (  # noqa: F401
    bundled_checkpoint,
    bundled_weights_dir,
    checkpoint_paths,
    load_into,
    load_state,
    save_state,
    state_dict_mismatch,
)
