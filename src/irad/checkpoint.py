"""Checkpoints: saving, finding, reading and loading every irad model, in one module.

A checkpoint is a pair of files with one prefix: ``<prefix>.safetensors`` (tensors; nothing is
pickled) and ``<prefix>.json``. A model saved with :meth:`Pretrained.save_pretrained` writes the
JSON as ::

    {"format": "irad.<kind>", "format_version": 1, "config": {...}, "metadata": {...}}

where ``config`` rebuilds the untrained module (sizes, preset) and ``metadata`` says where it
came from (training settings, provenance). Checkpoints written before this layout (a flat JSON,
format names such as ``irad-classifier``) still load.

**Commit order.** :func:`save_state` writes the weights first and the JSON last; the JSON names
its weights file with its size and sha256 (``"weights": {"file", "bytes", "sha256"}``), so the
JSON is the commit record. A pair torn by a kill between the two writes (new weights, old JSON)
no longer matches and :func:`load_state` refuses it (:class:`TornCheckpoint`). Editing other
fields of the JSON by hand is fine. ``save_state(..., keep=other_prefix)`` first keeps the
current complete pair under ``other_prefix``, so a kill at any moment leaves one complete pair,
and :func:`load_newest` falls back to it.

**Finding.** :func:`resolve` turns a folder, a file prefix, either file of a pair, or the name of
a checkpoint bundled with irad into a prefix (and, where asked, passes third-party PyTorch files
through).

**Other people's files.** :func:`read_torch_file` is the one place irad calls ``torch.load``:
``weights_only=True``, and only on torch >= 2.6 (before 2.6 that promise can be bypassed,
CVE-2025-32434).

Example:
    >>> import tempfile
    >>> from torch import nn
    >>> folder = tempfile.mkdtemp()
    >>> path = save_state(f"{folder}/m", nn.Linear(2, 1).state_dict(), {"note": "demo"})
    >>> tensors, config = load_state(f"{folder}/m")
    >>> sorted(tensors), config
    (['bias', 'weight'], {'note': 'demo'})
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from irad.errors import CheckpointError, ConfigError, InputError
from irad.utils.io import atomic_write_bytes, sha256_file

#: File stem that ``save_pretrained(folder)`` writes inside ``folder``.
CHECKPOINT_STEM = "model"
#: Suffixes that mark a path as a PyTorch (pickle) file, read only by :func:`read_torch_file`.
TORCH_SUFFIXES = (".th", ".pt", ".pth", ".tar", ".bin", ".ckpt")
#: The oldest torch whose ``torch.load(weights_only=True)`` keeps its promise (CVE-2025-32434).
MIN_TORCH = (2, 6)
#: Format names written by earlier irad versions, and what they are called now.
FORMAT_ALIASES = {
    "irad-classifier": "irad.classifier",
    "irad.train.checkpoint": "irad.training-state",
}
# The JSON entry that names the weights file of the pair (written last: the commit record).
_RECORD_KEY = "weights"
_FORMAT_KEYS = ("format", "format_version", "version")
# How to load each kind, for the message when a checkpoint of another kind is passed; models
# that subclass Pretrained add themselves.
_LOADERS: dict[str, str] = {
    "training-state": "Trainer.fit(resume=True) (irad.train), which resumes the run",
    "adversarial-pairs": "irad.train.PairDataset",
}


class TornCheckpoint(CheckpointError):
    """The two files of a checkpoint come from different saves (a kill between the writes, or
    a file replaced afterwards)."""


# --------------------------------------------------------------------------------------------
# paths: a pair, the bundled weights, and what a spec names
# --------------------------------------------------------------------------------------------


def checkpoint_paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, config)`` paths for a prefix; accepts the prefix or either file's path.

    Example:
        >>> [p.name for p in checkpoint_paths("runs/x/model.json")]
        ['model.safetensors', 'model.json']
    """
    p = Path(prefix)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def bundled_weights_dir() -> Path:
    """Folder of the weights shipped inside the package (``irad/weights``, see its README)."""
    return Path(str(resources.files("irad") / "weights"))


def bundled_checkpoint(kind: str, name: str) -> Path | None:
    """Prefix of the bundled checkpoint ``<kind>-<name>`` (e.g. ``irad-cifar10``), or None."""
    if not name or "/" in name or os.sep in name:
        return None
    prefix = bundled_weights_dir() / f"{kind}-{name}"
    return prefix if checkpoint_paths(prefix)[0].is_file() else None


def bundled_names(kind: str) -> list[str]:
    """Names of the bundled checkpoints of ``kind`` (``["cifar10"]`` for ``"irad"``)."""
    return sorted(
        p.name[len(kind) + 1 : -len(".safetensors")]
        for p in bundled_weights_dir().glob(f"{kind}-*.safetensors")
    )


def pretrained_prefix(path: str | os.PathLike[str]) -> Path:
    """Where ``save_pretrained(path)`` writes: ``path/model`` for a folder, or the prefix of a
    ``.safetensors`` / ``.json`` path."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p / CHECKPOINT_STEM


def resolve(
    spec: str | os.PathLike[str],
    kind: str,
    *,
    bundled: Sequence[str] | None = None,
    torch_files: bool = False,
) -> Path:
    """The checkpoint that ``spec`` names, for a model of ``kind``.

    ``spec`` is, in this order: a folder holding ``model.safetensors`` (what ``save_pretrained``
    writes); a prefix or either file of a pair (``runs/x/model``, ``runs/x/model.json``); the
    name of a checkpoint bundled with irad (``<b>-<spec>`` for ``b`` in ``bundled``, default
    ``kind``).

    Args:
        spec: see above.
        kind: the kind of model, for the bundled names and the messages.
        bundled: prefixes of the bundled names to try (default ``(kind,)``).
        torch_files: return an existing file that is not half of an irad pair (a third-party
            ``.th`` / ``.pt`` file) as it is, for :func:`read_torch_file`.

    Returns:
        The prefix of the pair (or, with ``torch_files``, the PyTorch file's path).

    Raises:
        CheckpointError: nothing matches; the message says every place that was tried.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise CheckpointError(
            f"a {kind} checkpoint is named by a folder, a file prefix or a bundled name, got "
            f"{spec!r}"
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        weights, config = checkpoint_paths(path / CHECKPOINT_STEM)
        if weights.is_file() or config.is_file():  # load_state names a missing half
            return path / CHECKPOINT_STEM
        raise CheckpointError(
            f"{path} is a folder without {CHECKPOINT_STEM}.safetensors; pass a checkpoint folder "
            "written by save_pretrained, or the checkpoint's file prefix (e.g. runs/x/model)"
        )
    if path.is_file() and path.suffix not in (".safetensors", ".json"):
        if torch_files:
            return path
        raise CheckpointError(
            f"{path} is not an irad checkpoint (a .safetensors file with a .json config beside "
            f"it), so it cannot hold a {kind} model"
        )
    weights, config = checkpoint_paths(path)
    is_torch_name = torch_files and path.suffix in TORCH_SUFFIXES
    if not is_torch_name and (weights.is_file() or config.is_file()):
        return weights.with_suffix("")
    tried = f"the file {path}" if path.suffix in TORCH_SUFFIXES else f"{weights} and {config}"
    name = str(spec)
    if "/" not in name and os.sep not in name:
        for b in bundled or (kind,):
            found = bundled_checkpoint(b, name)
            if found is not None:
                return found
        known = sorted({n for b in bundled or (kind,) for n in bundled_names(b)})
        tried += ", and a bundled checkpoint of that name" + (
            f" (bundled: {', '.join(known)})" if known else ""
        )
    raise CheckpointError(f"{kind} checkpoint not found: {name} (looked for {tried})")


# --------------------------------------------------------------------------------------------
# writing and reading a pair
# --------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_pair(weights: Path, config: Path, record: Any) -> None:
    """Refuse weights that are not the ones the JSON's ``weights`` record names."""
    if not isinstance(record, dict):
        raise CheckpointError(
            f"{config}: field 'weights' must be an object naming the weights file; restore it, "
            "or delete the field to load the pair unchecked"
        )
    size, digest = record.get("bytes"), record.get("sha256")
    actual = weights.stat().st_size
    if size != actual or digest != sha256_file(weights):
        raise TornCheckpoint(
            f"{weights} is not the weights file that {config} was saved with ("
            + (f"{actual} bytes instead of {size}" if size != actual else "another sha256")
            + "): the process was probably killed between writing the two files, or one of "
            "them was replaced. Use the previous checkpoint or re-save the model; a training "
            "run resumes from its previous checkpoint by itself"
        )


def _read_config(cfg: Path) -> dict[str, Any]:
    try:
        config = json.loads(cfg.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{cfg} is not valid JSON: {err}") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg} must hold a JSON object, got {type(config).__name__}")
    return config


def pair_is_complete(prefix: str | os.PathLike[str]) -> bool:
    """Whether both files exist and belong together (the JSON's record matches the weights)."""
    weights, config = checkpoint_paths(prefix)
    if not (weights.is_file() and config.is_file()):
        return False
    try:
        record = _read_config(config).get(_RECORD_KEY)
        if record is not None:
            _check_pair(weights, config, record)
    except (CheckpointError, OSError):
        return False
    return True


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)  # no copy: the writer replaces files, it never writes into them
    except OSError:  # a file system without hard links
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_state(
    prefix: str | os.PathLike[str],
    tensors: Mapping[str, Tensor],
    config: Mapping[str, Any],
    *,
    keep: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``tensors`` (safetensors) and ``config`` (JSON) as a pair; returns the weights path.

    Each file is written atomically: the weights first, then the JSON with the record
    ``"weights": {"file", "bytes", "sha256"}`` (the commit: see the module docstring).

    Args:
        prefix: the pair's prefix (``runs/x/model`` writes ``model.safetensors`` and
            ``model.json``).
        tensors: name -> tensor (copied to the CPU, contiguous).
        config: a JSON-ready object without a ``"weights"`` entry (irad writes that one).
        keep: a second prefix (e.g. ``runs/x/previous``): the pair now at ``prefix``, if it is
            complete, moves there first, so that a kill during this save leaves one complete
            pair for :func:`load_newest`.
    """
    if _RECORD_KEY in config:
        raise ValueError(f"a checkpoint config may not hold {_RECORD_KEY!r}: irad writes it")
    weights, cfg = checkpoint_paths(prefix)
    # safetensors refuses shared or non-contiguous storage; copy to be safe.
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    data = save(flat)
    record = {"file": weights.name, "bytes": len(data), "sha256": _sha256(data)}
    text = json.dumps({**config, _RECORD_KEY: record}, indent=2, default=str) + "\n"
    if keep is not None and pair_is_complete(prefix):
        kept_w, kept_c = checkpoint_paths(keep)
        kept_c.unlink(missing_ok=True)  # the kept pair is incomplete from here ...
        _link_or_copy(weights, kept_w)
        _link_or_copy(cfg, kept_c)  # ... to here
    atomic_write_bytes(weights, data)
    atomic_write_bytes(cfg, text.encode("utf-8"))
    return weights


def load_state(prefix: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a pair written by :func:`save_state` (or by an earlier irad) and check it is whole.

    Returns:
        ``(tensors, config)``, the config without the ``weights`` record.

    Raises:
        CheckpointError: a file is missing or unreadable, or the JSON is not an object.
        TornCheckpoint: the weights are not the ones the JSON was saved with.
    """
    weights, cfg = checkpoint_paths(prefix)
    if not weights.is_file() and not cfg.is_file():
        raise CheckpointError(f"checkpoint not found: neither {weights} nor {cfg} exists")
    if not weights.is_file():
        raise CheckpointError(
            f"checkpoint weights not found: {weights} (every irad checkpoint is a .safetensors "
            f"file with a .json config of the same name beside it; {cfg.name} is there)"
        )
    if not cfg.is_file():
        raise CheckpointError(
            f"checkpoint config not found: {cfg} (every irad checkpoint is a .safetensors file "
            "with a .json config of the same name beside it; if the save was interrupted, use "
            "the previous checkpoint or save again)"
        )
    config = _read_config(cfg)
    record = config.pop(_RECORD_KEY, None)
    if record is not None:  # pairs written before irad.checkpoint have none
        _check_pair(weights, cfg, record)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {err}") from err
    return tensors, config


def load_newest(
    prefixes: Sequence[str | os.PathLike[str]],
) -> tuple[Path, dict[str, Tensor], dict[str, Any], list[str]]:
    """The first of ``prefixes`` that holds a complete, readable pair.

    Returns:
        ``(prefix, tensors, config, skipped)``: ``skipped`` says why each newer pair was passed
        over (torn, half missing, unreadable).

    Raises:
        CheckpointError: none of them holds one; the message gives each reason.
    """
    skipped: list[str] = []
    for prefix in prefixes:
        weights, cfg = checkpoint_paths(prefix)
        if not (weights.exists() or cfg.exists()):
            continue
        try:
            tensors, config = load_state(prefix)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        return Path(prefix), tensors, config, skipped
    names = ", ".join(str(checkpoint_paths(p)[1].with_suffix(".*")) for p in prefixes)
    raise CheckpointError(
        f"no complete checkpoint among {names}: " + ("; ".join(skipped) or "none exists")
    )


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """Hex sha256 over tensors (names, dtypes, shapes and values), whatever file holds them.

    Example:
        >>> t = {"w": torch.zeros(2)}
        >>> tensors_sha256(t) == tensors_sha256({"w": torch.zeros(2)}), len(tensors_sha256(t))
        (True, 64)
    """
    h = hashlib.sha256()
    for name, tensor in sorted(tensors.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# third-party PyTorch files
# --------------------------------------------------------------------------------------------


def _torch_version(version: str) -> tuple[int, int]:
    found = re.match(r"(\d+)\.(\d+)", version)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def read_torch_file(
    path: str | os.PathLike[str], what: str = "checkpoint", *, resave: str | None = None
) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one clear refusal.

    Args:
        path: a file written by ``torch.save``.
        what: what the file is, for the messages (``"SampleNet.pt"``, ``"classifier weights"``).
        resave: how someone who trusts the file re-saves it as tensors (code), for the message
            when it holds more than tensors.

    Raises:
        CheckpointError: the file is missing or unreadable, holds pickled objects other than
            tensors and plain containers (never unpickled), or torch is older than 2.6.
    """
    p = Path(path).expanduser()
    if _torch_version(torch.__version__) < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise CheckpointError(
            f"reading {what} {p} needs torch >= {need}, but this is torch {torch.__version__}: "
            f"before {need}, the safe loader (weights_only=True) can be made to run code from "
            f"the file (CVE-2025-32434). Upgrade torch (pip install --upgrade 'torch>={need}'), "
            "or load the file on a machine that has it and save its tensors with "
            "safetensors.torch.save_file"
        )
    if not p.is_file():
        raise CheckpointError(f"{what} not found: {p}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # Never pass torch's own text on: it suggests loading with weights_only=False.
        text = str(err)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        example = resave or "torch.save(model.state_dict(), 'weights.pt')"
        if found:
            raise CheckpointError(
                f"{what} {p} holds Python objects other than tensors and plain containers "
                f"(found {found.group(1)}); irad never unpickles objects, because unpickling runs "
                "code chosen by whoever made the file. To use it, someone who trusts the file "
                "loads it with the code that wrote it and saves only its tensors, e.g. "
                f"{example}"
            ) from None
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        detail = reason.group(1).strip() if reason else type(err).__name__
        raise CheckpointError(
            f"{what} {p} is not a readable PyTorch checkpoint (truncated or corrupt, another "
            f"kind of file, or a pickle of objects rather than tensors; the safe loader stopped "
            f"at: {detail}); irad never unpickles objects. If it is a checkpoint you trust, "
            f"re-save its tensors with the code that wrote it, e.g. {example}"
        ) from None
    except Exception as err:
        # Bytes that are not a checkpoint make the weights-only unpickler fail in any way
        # (IndexError, TypeError, struct.error, MemoryError, ...); each means "unreadable".
        lines = [ln for ln in str(err).strip().splitlines() if "weights_only" not in ln]
        detail = lines[0][:300] if lines else type(err).__name__
        raise CheckpointError(
            f"{what} {p} is not a readable PyTorch checkpoint (truncated or corrupt?): {detail}"
        ) from None


# --------------------------------------------------------------------------------------------
# loading tensors into a module
# --------------------------------------------------------------------------------------------


def state_dict_mismatch(
    module: nn.Module, tensors: Mapping[str, Tensor]
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


def load_into(
    module: nn.Module,
    tensors: Mapping[str, Tensor],
    source: str,
    *,
    hint: str = "was it saved for another architecture or preset?",
) -> None:
    """``load_state_dict(strict=True)`` with an error that lists missing, unexpected and
    mis-shaped keys, then ``hint`` (what probably happened and what to do)."""
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
            + f" ({hint})"
        )
    module.load_state_dict(dict(tensors), strict=True)


# --------------------------------------------------------------------------------------------
# the format field and the config's fields
# --------------------------------------------------------------------------------------------


def format_name(kind: str) -> str:
    """The ``format`` field of a checkpoint of ``kind``: ``"irad.<kind>"``."""
    return f"irad.{kind}"


def check_format(
    config: Mapping[str, Any], kind: str | Sequence[str], source: str, version: int = 1
) -> str:
    """Refuse a checkpoint whose JSON does not hold a model of ``kind`` (one of them) and
    ``version``; returns the kind found. Old format names (:data:`FORMAT_ALIASES`) are
    accepted."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    raw = config.get("format")
    fmt = FORMAT_ALIASES.get(raw, raw) if isinstance(raw, str) else raw
    found = next((k for k in kinds if fmt == format_name(k)), None)
    if found is None:
        expected = " or ".join(repr(format_name(k)) for k in kinds)
        other = fmt[len("irad.") :] if isinstance(fmt, str) and fmt.startswith("irad.") else None
        hint = (
            f" (it holds a model of kind {other!r}: load it with {_LOADERS[other]})"
            if other in _LOADERS
            else " (is it an irad checkpoint of another kind of model?)"
        )
        raise CheckpointError(f"checkpoint {source} has format {raw!r}, expected {expected}{hint}")
    got = config.get("format_version", config.get("version", version))
    if got != version:
        raise CheckpointError(
            f"checkpoint {source} has format version {got!r}; this irad reads version "
            f"{version} (use the irad that wrote it, or re-save the model)"
        )
    return found


class ConfigFieldError(CheckpointError):
    """A field of a checkpoint's config is missing or has the wrong type.

    Raised with the field's name inside the config; :meth:`Checkpoint.build` adds the file and
    the fix.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field, self.problem = field, problem


_JSON_TYPES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}
_MISSING: Any = object()


def _json_type(value: Any) -> str:
    for t, name in reversed(list(_JSON_TYPES.items())):  # bool before int
        if isinstance(value, t):
            return name
    return type(value).__name__


def config_field(
    config: Any,
    name: str,
    types: type | tuple[type, ...],
    *,
    default: Any = _MISSING,
    where: str = "",
    items: type | None = None,
) -> Any:
    """``config[name]``, checked to be one of ``types`` (JSON types: dict, list, str, int,
    float, bool, NoneType); ``default`` when absent.

    Args:
        items: for a list, the type every element must have.

    Raises:
        ConfigFieldError: absent without a default, or of another type (``where`` prefixes the
            name for nested fields, e.g. ``"representation"``).

    Example:
        >>> config_field({"n": 3}, "n", int)
        3
        >>> config_field({}, "preset", str)
        Traceback (most recent call last):
        ...
        irad.checkpoint.ConfigFieldError: field 'preset' is missing
    """
    path = f"{where}.{name}" if where else name
    if not isinstance(config, Mapping):
        raise ConfigFieldError(where or "config", f"must be an object, got {_json_type(config)}")
    if name not in config:
        if default is _MISSING:
            raise ConfigFieldError(path, "is missing")
        return default
    value = config[name]
    allowed = types if isinstance(types, tuple) else (types,)
    if not _is_json_type(value, allowed):
        raise ConfigFieldError(path, f"must be {_describe(allowed)}, got {_shown(value)}")
    if items is not None and isinstance(value, list):
        bad = [v for v in value if not _is_json_type(v, (items,))]
        if bad:
            raise ConfigFieldError(
                path, f"must be a list of {_describe((items,), plural=True)}, got {_shown(value)}"
            )
    return value


def _is_json_type(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True  # JSON does not tell 1 from 1.0
    return isinstance(value, allowed)


def _describe(types: tuple[type, ...], plural: bool = False) -> str:
    names = [_JSON_TYPES.get(t, t.__name__) for t in types]
    if plural:
        names = [n.split(" ", 1)[-1] + "s" if n.startswith("a") else n for n in names]
    return " or ".join(names)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return f"{_json_type(value)} {text if len(text) <= 60 else text[:57] + '...'}"


# --------------------------------------------------------------------------------------------
# the save/load base of every model
# --------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """A checkpoint read from disk, before a module is built from it."""

    prefix: Path
    kind: str  # the kind found (one the class reads)
    tensors: dict[str, Tensor]
    config: dict[str, Any]  # what rebuilds the module
    metadata: dict[str, Any]  # where it came from
    config_key: str = "config."  # where ``config`` sits in the JSON ("" in flat, older files)

    @property
    def weights_path(self) -> Path:
        return checkpoint_paths(self.prefix)[0]

    @property
    def json_path(self) -> Path:
        return checkpoint_paths(self.prefix)[1]

    @property
    def source(self) -> str:
        return str(self.prefix)

    def build(self, cls: type[Pretrained]) -> Any:
        """``cls.from_checkpoint_config(config)``, with errors that name the file and the fix."""
        fix = (
            "restore it from the run that saved the model (its summary.json records the model "
            "config), or re-save the model with save_pretrained()"
        )
        try:
            return cls.from_checkpoint_config(self.config)
        except ConfigFieldError as err:
            raise CheckpointError(
                f"{self.json_path}: field {self.config_key}{err.field} {err.problem}; the file "
                f"was edited or written by another program: {fix}"
            ) from None
        except (ConfigError, InputError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(
                f"{self.json_path}: its config does not build a {cls.__name__} "
                f"({type(err).__name__}: {err}); {fix}"
            ) from err

    def load_into(self, module: nn.Module, *, hint: str | None = None) -> None:
        """Load the tensors into ``module`` strictly (see :func:`load_into`)."""
        kw = {"hint": hint} if hint else {}
        load_into(module, self.tensors, str(self.weights_path), **kw)


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` built from a config.

    A subclass sets ``checkpoint_kind`` and implements ``checkpoint_config()`` (JSON-ready sizes
    that rebuild it) and ``from_checkpoint_config(config)`` (an untrained module of those sizes;
    read fields with :func:`config_field` so that a damaged file gets a clear error). The
    checkpoint is ``model.safetensors`` (the ``state_dict`` of :meth:`checkpoint_module`) plus
    ``model.json`` (``{"format": "irad.<kind>", "format_version", "config", "metadata"}``).

    Optional class attributes:
        checkpoint_version: the config's version (default 1).
        checkpoint_reads: other kinds this class also loads, mapped to the key prefix of its
            tensors in those files (the DISCO-style defense reads IRAD's ``representation.``).
        checkpoint_bundled: prefixes of the bundled names ``from_pretrained`` tries (default:
            the kind).
        checkpoint_hint: how to load this kind, for messages (default
            ``<Class>.from_pretrained``).

    After :meth:`from_pretrained`, ``module.checkpoint_metadata`` holds the file's metadata.
    """

    checkpoint_kind: ClassVar[str] = ""
    checkpoint_version: ClassVar[int] = 1
    checkpoint_reads: ClassVar[Mapping[str, str]] = {}
    checkpoint_bundled: ClassVar[tuple[str, ...]] = ()
    checkpoint_hint: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("checkpoint_kind")
        if kind:
            _LOADERS.setdefault(kind, cls.checkpoint_hint or f"{cls.__name__}.from_pretrained")

    def checkpoint_config(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> Any:
        raise NotImplementedError

    def checkpoint_module(self) -> nn.Module:
        """The module whose ``state_dict`` is the checkpoint's tensors (default: itself)."""
        assert isinstance(self, nn.Module)
        return self

    @classmethod
    def legacy_checkpoint_config(
        cls, flat: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(config, metadata)`` of a flat JSON written before the ``config``/``metadata``
        layout: every field but the format's and ``extra`` / ``provenance``, which are
        metadata."""
        config = {
            k: v
            for k, v in flat.items()
            if k not in (*_FORMAT_KEYS, "extra", "provenance", "metadata")
        }
        extra = flat.get("extra")
        metadata = dict(extra) if isinstance(extra, dict) else {}
        if "provenance" in flat:
            metadata["provenance"] = flat["provenance"]
        return config, metadata

    def save_pretrained(
        self, path: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the folder ``path`` (``path/model.*``), or the pair ``path`` when it ends in
        ``.safetensors`` / ``.json``; returns the weights path."""
        return self.save(pretrained_prefix(path), metadata=metadata)

    def save(
        self, prefix: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the pair ``prefix.safetensors`` + ``prefix.json`` (a training run's
        ``runs/x/model``); returns the weights path."""
        config = {
            "format": format_name(self.checkpoint_kind),
            "format_version": self.checkpoint_version,
            "config": self.checkpoint_config(),
            "metadata": dict(metadata or {}),
        }
        return save_state(prefix, self.checkpoint_module().state_dict(), config)

    @classmethod
    def read_checkpoint(cls, spec: str | os.PathLike[str]) -> Checkpoint:
        """Find, read and check a checkpoint this class loads, without building anything."""
        prefix = resolve(spec, cls.checkpoint_kind, bundled=cls.checkpoint_bundled or None)
        tensors, raw = load_state(prefix)
        json_path = checkpoint_paths(prefix)[1]
        kinds = (cls.checkpoint_kind, *cls.checkpoint_reads)
        kind = check_format(raw, kinds, str(json_path), cls.checkpoint_version)
        if "config" in raw:
            config = raw["config"]
            metadata = raw.get("metadata", {})
            for name, value in (("config", config), ("metadata", metadata)):
                if not isinstance(value, dict):
                    raise CheckpointError(
                        f"{json_path}: field {name} must be an object, got {_json_type(value)}; "
                        "re-save the model with save_pretrained()"
                    )
            key = "config."
        else:
            config, metadata = cls.legacy_checkpoint_config(raw)
            key = ""
        key_prefix = cls.checkpoint_reads.get(kind, "")
        if key_prefix:
            tensors = {
                k[len(key_prefix) :]: v for k, v in tensors.items() if k.startswith(key_prefix)
            }
        return Checkpoint(Path(prefix), kind, tensors, config, metadata, key)

    @classmethod
    def from_pretrained(
        cls, spec: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
    ) -> Any:
        """Load from a folder, a prefix, or a bundled name, with the sizes it was saved with;
        returns the module in eval mode on ``map_location``."""
        ckpt = cls.read_checkpoint(spec)
        module = ckpt.build(cls)
        ckpt.load_into(module.checkpoint_module())
        module.checkpoint_metadata = ckpt.metadata
        return module.to(map_location).eval()


__all__ = [
    "CHECKPOINT_STEM",
    "FORMAT_ALIASES",
    "MIN_TORCH",
    "TORCH_SUFFIXES",
    "Checkpoint",
    "ConfigFieldError",
    "Pretrained",
    "TornCheckpoint",
    "bundled_checkpoint",
    "bundled_names",
    "bundled_weights_dir",
    "check_format",
    "checkpoint_paths",
    "config_field",
    "format_name",
    "load_into",
    "load_newest",
    "load_state",
    "pair_is_complete",
    "pretrained_prefix",
    "read_torch_file",
    "resolve",
    "save_state",
    "state_dict_mismatch",
    "tensors_sha256",
]
