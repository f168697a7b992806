"""Loading the weights of a learned baseline defense (STL, NRP), with the fix when there are none.

Such a defense takes ``checkpoint``: a model instance, an irad checkpoint folder or prefix (a
training run's ``runs/x``), or the name of weights bundled with irad (``"cifar10"``). When the
name matches nothing, the error says which command trains the weights and how to pass them.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from irad.checkpoint import resolve
from irad.errors import CheckpointError, InputError, MissingWeights


def load_trained(model_cls: Any, spec: Any, defense: str, train_command: str) -> nn.Module:
    """``spec`` as a ``model_cls`` (returned as it is when it is one already), frozen, in eval.

    Raises:
        MissingWeights: nothing found; the message names the train command.
        InputError: ``spec`` is neither a model nor a path or name.
    """
    if isinstance(spec, model_cls):
        model = spec
    elif isinstance(spec, str | os.PathLike):
        try:
            resolve(spec, model_cls.checkpoint_kind)
        except CheckpointError as err:
            raise MissingWeights(
                f"no {defense} weights at {str(spec)!r} ({err}). Train them with "
                f"`{train_command} --out runs/{defense}-cpu` (see docs/defenses.md), then pass "
                f"--defense {defense}:checkpoint=runs/{defense}-cpu (Python: "
                f"build_defense({defense!r}, checkpoint='runs/{defense}-cpu'))"
            ) from None
        model = model_cls.from_pretrained(spec)
    else:
        raise InputError(
            f"{defense} checkpoint must be a {model_cls.__name__}, a checkpoint folder or prefix, "
            f"or a bundled name such as 'cifar10'; got {type(spec).__name__}"
        )
    return model.eval().requires_grad_(False)
