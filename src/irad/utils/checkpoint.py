"""Checkpoints are a safetensors file plus a small JSON config beside it; nothing is unpickled.

``save_state("runs/x/model", tensors, config)`` writes ``runs/x/model.safetensors`` and
``runs/x/model.json``. ``load_state`` reads both back and names what is wrong when it cannot.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from irad.errors import CheckpointError
from irad.utils.io import atomic_write_bytes, atomic_write_json


def bundled_weights_dir() -> Path:
    """Folder of the weights shipped inside the package (``irad/weights``, see its README)."""
    return Path(str(resources.files("irad") / "weights"))


def bundled_checkpoint(kind: str, name: str) -> Path | None:
    """Prefix of the bundled checkpoint ``<kind>-<name>`` (e.g. ``irad-cifar10``), or None."""
    if not name or "/" in name or os.sep in name:
        return None
    prefix = bundled_weights_dir() / f"{kind}-{name}"
    return prefix if checkpoint_paths(prefix)[0].is_file() else None


def checkpoint_paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, config)`` paths for a prefix; accepts the prefix or either file's path."""
    p = Path(prefix)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_state(
    prefix: str | os.PathLike[str], tensors: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Atomically write ``tensors`` (safetensors) and ``config`` (JSON); return the weights path."""
    weights, cfg = checkpoint_paths(prefix)
    # safetensors refuses shared or non-contiguous storage; copy to be safe.
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    atomic_write_bytes(weights, save(flat))
    atomic_write_json(cfg, config)
    return weights


def load_state(prefix: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_state`."""
    weights, cfg = checkpoint_paths(prefix)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights not found: {weights}")
    if not cfg.is_file():
        raise CheckpointError(
            f"checkpoint config not found: {cfg} (every irad checkpoint is a .safetensors file "
            "with a .json config of the same name beside it)"
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {err}") from err
    try:
        config = json.loads(cfg.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{cfg} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg} must hold a JSON object, got {type(config).__name__}")
    return tensors, config


def state_dict_mismatch(
    module: torch.nn.Module, tensors: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """What keeps ``tensors`` from loading into ``module`` strictly: ``(missing keys,
    unexpected keys, [(key, checkpoint shape, model shape)])``, all empty when they fit."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [
        (k, tuple(tensors[k].shape), tuple(own[k].shape))
        for k in own
        if k in tensors and tensors[k].shape != own[k].shape
    ]
    return missing, unexpected, shapes


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing and unexpected keys."""
    missing, unexpected, shapes = state_dict_mismatch(module, tensors)
    if missing or unexpected or shapes:

        def head(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {head(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {head(unexpected)}")
        if shapes:
            parts.append(
                "shape mismatches: "
                + head([f"{k}: checkpoint {c} vs model {m}" for k, c, m in shapes])
            )
        raise CheckpointError(
            f"checkpoint {source} does not fit {type(module).__name__}: "
            + "; ".join(parts)
            + " (was it saved for another architecture or preset?)"
        )
    module.load_state_dict(tensors, strict=True)
