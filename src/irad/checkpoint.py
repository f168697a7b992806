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


# --------------------------------------------------------------------------------------------
# resolving a spec, and the save/load base every model shares
# --------------------------------------------------------------------------------------------

CHECKPOINT_STEM = "model"


def format_name(kind: str) -> str:
    """The ``format`` field of a checkpoint of ``kind``: ``"irad.<kind>"``."""
    return f"irad.{kind}"


def resolve(spec: str | os.PathLike[str], kind: str) -> Path:
    """The checkpoint prefix that ``spec`` names, for a model of ``kind``.

    ``spec`` is, in this order: a folder holding ``model.safetensors``; a prefix or either file of
    a checkpoint pair; the name of a checkpoint bundled with irad (``<kind>-<name>``).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if checkpoint_paths(path / CHECKPOINT_STEM)[0].is_file():
            return path / CHECKPOINT_STEM
        raise CheckpointError(
            f"{path} is a folder without {CHECKPOINT_STEM}.safetensors; pass a checkpoint "
            "folder written by save_pretrained, or the checkpoint's file prefix"
        )
    weights, _ = checkpoint_paths(path)
    if weights.is_file():
        return weights.with_suffix("")
    bundled = bundled_checkpoint(kind, str(spec))
    if bundled is not None:
        return bundled
    known = sorted(
        p.name[len(kind) + 1 : -len(".safetensors")]
        for p in bundled_weights_dir().glob(f"{kind}-*.safetensors")
    )
    hint = f"; bundled {kind} checkpoints: {', '.join(known)}" if known else ""
    raise CheckpointError(
        f"{kind} checkpoint not found: {spec} (looked for the folder {path}/, the file {weights} "
        f"and a bundled checkpoint of that name{hint})"
    )


def check_format(config: dict[str, Any], kind: str, source: str, version: int = 1) -> None:
    """Refuse a checkpoint whose JSON does not say it holds a ``kind`` model of ``version``."""
    expected = format_name(kind)
    fmt = config.get("format")
    if fmt != expected:
        raise CheckpointError(
            f"checkpoint {source} has format {fmt!r}, expected {expected!r} (it holds another "
            "kind of model: load it with the class that saved it)"
        )
    if config.get("format_version", version) != version:
        raise CheckpointError(
            f"checkpoint {source} has format version {config.get('format_version')!r}; this "
            f"irad reads version {version} (upgrade irad, or re-save the model)"
        )


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` built from a config.

    A subclass sets ``checkpoint_kind`` and implements ``checkpoint_config()`` (JSON-ready sizes
    that rebuild it) and ``from_checkpoint_config(config)`` (an untrained module of those sizes).
    The checkpoint is ``model.safetensors`` (the ``state_dict``) plus ``model.json``
    (``{"format": "irad.<kind>", "format_version", "config", "metadata"}``).
    """

    checkpoint_kind: str = ""
    checkpoint_version: int = 1

    def checkpoint_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> Any:
        raise NotImplementedError

    def save_pretrained(
        self, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
    ) -> Path:
        """Write a folder (``path/model.*``), or the prefix ``path`` when it ends in a file name
        with no folder of that name; returns the weights path."""
        p = Path(path)
        prefix = p if p.suffix in (".safetensors", ".json") else p / CHECKPOINT_STEM
        config = {
            "format": format_name(self.checkpoint_kind),
            "format_version": self.checkpoint_version,
            "config": self.checkpoint_config(),
            "metadata": metadata or {},
        }
        return save_state(prefix, self.state_dict(), config)  # type: ignore[attr-defined]

    @classmethod
    def from_pretrained(
        cls, spec: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
    ) -> Any:
        """Load from a folder, a prefix, or a bundled name, with the sizes it was saved with."""
        prefix = resolve(spec, cls.checkpoint_kind)
        tensors, config = load_state(prefix)
        check_format(config, cls.checkpoint_kind, str(prefix), cls.checkpoint_version)
        if not isinstance(config.get("config"), dict):
            raise CheckpointError(f"checkpoint {prefix} has no 'config' object in its JSON")
        module = cls.from_checkpoint_config(config["config"])
        load_into(module, tensors, str(prefix))
        module.checkpoint_metadata = config.get("metadata", {})
        return module.to(map_location)
