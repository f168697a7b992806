"""On-disk state of an evaluation: cached adversarial images and per-batch partial results.

* :class:`AdversarialCache` keeps the exact float32 adversarial images of one (attack surface,
  attack, ε, seed, data subset, batch size, code versions) combination, one safetensors file per
  batch. Under the oblivious threat every defense is then judged on the same inputs, a crash
  loses at most one batch, and a second run costs no attack at all.
* :class:`PartialStore` keeps, per (defense, attack, batch), which images were classified
  correctly, written atomically, so a resumed run recomputes nothing that finished.

Both are keyed by a sha256 over every input that changes the content; changing any of them gives
a new key and hence a fresh computation, never a stale result.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from irad.errors import CheckpointError
from irad.evaluate.specs import canonical_json, digest
from irad.utils.io import atomic_write_bytes, atomic_write_json

#: Slack on the ε-ball and [0, 1] checks of cached images (float32 round-off of x + δ).
BALL_TOLERANCE = 1e-5


def default_cache_dir() -> Path:
    """``$IRAD_CACHE/adversarial`` if set, else ``~/.cache/irad/adversarial``."""
    base = os.environ.get("IRAD_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "irad"
    return root / "adversarial"


def module_fingerprint(module: nn.Module) -> str:
    """sha256 of a module's weights and its class (see :func:`irad.models.model_fingerprint`).

    The class name and, where the module has one, its ``config()`` / ``config`` are included, so
    two parameter-free defenses with different settings (JPEG quality 75 vs 90) differ.
    """
    from irad.models import model_fingerprint

    config = getattr(module, "config", None)
    if callable(config):
        config = config()
    return digest(
        {
            "class": f"{type(module).__module__}.{type(module).__qualname__}",
            "config": config if isinstance(config, dict) else None,
            "weights": model_fingerprint(module),
        }
    )


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe short form of a label (the hash beside it keeps names unique)."""
    return (re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "x")[:limit]


def _batch_name(index: int, suffix: str) -> str:
    return f"batch_{index:05d}{suffix}"


class AdversarialCache:
    """Adversarial images of one key, stored per batch as float32 safetensors.

    Args:
        root: cache folder shared by runs (``default_cache_dir()`` when None).
        components: everything the images depend on (JSON-ready); its digest is the key.

    Example:
        >>> import tempfile
        >>> cache = AdversarialCache(tempfile.mkdtemp(), {"attack": "pgd", "seed": 0})
        >>> x = torch.rand(2, 3, 4, 4); y = torch.tensor([0, 1])
        >>> cache.save(0, x, y)
        >>> torch.equal(cache.load(0, x, y, eps=0.0), x)
        True
    """

    def __init__(self, root: str | Path | None, components: dict[str, Any]) -> None:
        self.components = components
        self.key = digest(components)
        #: Written into ``meta.json`` with the first batch (e.g. the attack's full config).
        self.extra_meta: dict[str, Any] = {}
        base = Path(root) if root is not None else default_cache_dir()
        self.dir = base / self.key[:2] / self.key

    def path(self, index: int) -> Path:
        return self.dir / _batch_name(index, ".safetensors")

    def has(self, index: int) -> bool:
        return self.path(index).is_file()

    def load(self, index: int, x: Tensor, y: Tensor, eps: float) -> Tensor | None:
        """The cached batch ``index`` for clean images ``x`` / labels ``y``, or None if absent.

        The images are checked before use: same shape and labels as the batch asked for, finite,
        in [0, 1] and within ``eps`` (in [0, 1] units) of ``x``.

        Raises:
            CheckpointError: the file exists but does not belong to this batch.
        """
        path = self.path(index)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError):
            # A file we cannot read is as good as absent: recompute and overwrite it.
            return None
        x_adv, labels = tensors.get("x_adv"), tensors.get("y")
        problem = None
        if x_adv is None or labels is None:
            problem = "it lacks the 'x_adv' or 'y' tensor"
        elif x_adv.shape != x.shape or x_adv.dtype != torch.float32:
            problem = (
                f"it holds {x_adv.dtype} {tuple(x_adv.shape)}, expected float32 {tuple(x.shape)}"
            )
        elif not torch.equal(labels.to(y.device), y):
            problem = "its labels differ from the data set's"
        else:
            x_adv = x_adv.to(x.device)
            problem = check_adversarial(x_adv, x, eps)
        if problem:
            raise CheckpointError(
                f"cached adversarial batch {path} does not fit this evaluation: {problem}. "
                f"Delete {self.dir} to recompute it."
            )
        return x_adv

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` of this key ({} when nothing was cached yet)."""
        try:
            data = json.loads((self.dir / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, index: int, x_adv: Tensor, y: Tensor) -> None:
        """Atomically write batch ``index`` (and, once, ``meta.json`` with the key's inputs)."""
        meta = self.dir / "meta.json"
        if not meta.is_file():
            atomic_write_json(
                meta, {"key": self.key, "components": self.components, **self.extra_meta}
            )
        data = save(
            {
                "x_adv": x_adv.detach().to("cpu", torch.float32).contiguous(),
                "y": y.detach().to("cpu", torch.int64).contiguous(),
            },
            metadata={"key": self.key, "batch": str(index)},
        )
        atomic_write_bytes(self.path(index), data)


def check_adversarial(x_adv: Tensor, x: Tensor, eps: float) -> str | None:
    """Why ``x_adv`` is not a valid L∞ adversarial batch for ``x`` at ``eps`` ([0,1] units)."""
    if x_adv.shape != x.shape:
        return f"shape {tuple(x_adv.shape)} differs from the clean batch's {tuple(x.shape)}"
    if not torch.isfinite(x_adv).all():
        return "it contains NaN or inf"
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < -BALL_TOLERANCE or hi > 1 + BALL_TOLERANCE:
        return f"values leave [0, 1] (range [{lo:.4g}, {hi:.4g}])"
    dist = float((x_adv - x).abs().max())
    if dist > eps + BALL_TOLERANCE:
        return f"L∞ distance {dist * 255:.3f}/255 exceeds eps={eps * 255:.3f}/255"
    return None


class PartialStore:
    """Per-batch partial results of one run folder, one small JSON file each, written atomically.

    A task (one defense on clean images, or one defense under one attack) has a readable label
    and a key (digest of everything its result depends on); its files live in
    ``root/<label>-<key[:12]>/batch_00000.json``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def task_dir(self, label: str, key: str) -> Path:
        return self.root / f"{slug(label)}-{key[:12]}"

    def load(self, label: str, key: str, index: int) -> dict[str, Any] | None:
        path = self.task_dir(label, key) / _batch_name(index, ".json")
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        return data

    def save(self, label: str, key: str, index: int, data: dict[str, Any]) -> None:
        task = self.task_dir(label, key)
        atomic_write_json(task / _batch_name(index, ".json"), {"key": key, **data})


__all__ = [
    "AdversarialCache",
    "PartialStore",
    "canonical_json",
    "check_adversarial",
    "default_cache_dir",
    "module_fingerprint",
]
