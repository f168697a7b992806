"""On-disk state of an evaluation: cached adversarial images and per-batch partial results.

* :class:`AdversarialCache` keeps the exact float32 adversarial images of one (attack surface,
  attack, ε, seed, data subset, batch size, attack code) combination, one safetensors file per
  batch. Under the oblivious threat every defense is then judged on the same inputs, a crash
  loses at most one batch, and a second run costs no attack at all.
* :class:`PartialStore` keeps, per (defense, attack, batch), which images were classified
  correctly, written atomically, so a resumed run recomputes nothing that finished.

Both are keyed by a sha256 over every input that changes the content; changing any of them gives
a new key and hence a fresh computation. The attack code is part of the key
(:func:`attack_code_fingerprint`: the source of ``irad/attacks/*.py`` and the torchattacks
version), and a cached batch is not trusted blindly: beside each file its sha256 and which
images fooled the attack surface when it was crafted are recorded; a file that changed, or
images that no longer fool the surface as they did, are recomputed with a
:class:`StaleCacheWarning`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor, nn

from irad.evaluate.metrics import decode_bits, encode_bits
from irad.evaluate.specs import canonical_json, digest
from irad.utils.io import atomic_write_bytes, atomic_write_json

#: Slack on the ε-ball and [0, 1] checks of cached images (float32 round-off of x + δ).
BALL_TOLERANCE = 1e-5
#: Share of a batch whose "fools the surface" verdict may change between crafting and reading
#: without the batch being recomputed (numerical noise across devices; 0 for small batches).
FOOLED_TOLERANCE = 0.02


class StaleCacheWarning(RuntimeWarning):
    """A cached adversarial batch failed verification and was recomputed."""


@functools.cache
def attack_code_fingerprint() -> dict[str, str | None]:
    """What the attack code is: sha256 of the source of ``irad/attacks/*.py``, and the
    torchattacks and torch versions. Part of every adversarial-cache key, so a change to an
    attack's code never reuses images the old code made."""
    import torch

    import irad.attacks

    h = hashlib.sha256()
    for path in sorted(Path(irad.attacks.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    try:
        from importlib.metadata import version

        torchattacks = version("torchattacks")
    except Exception:  # pragma: no cover - not installed as a distribution
        torchattacks = None
    return {
        "attacks_source": h.hexdigest(),
        "torchattacks": torchattacks,
        "torch": torch.__version__,
    }


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

    Beside each ``batch_NNNNN.safetensors`` a ``batch_NNNNN.json`` record (written last, so a
    batch exists only once both do) holds the file's sha256 and, when given, which images fooled
    the attack surface at crafting time. :meth:`load` verifies both.

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
        #: One line per batch that failed verification and was recomputed (for the report).
        self.problems: list[str] = []
        base = Path(root) if root is not None else default_cache_dir()
        self.dir = base / self.key[:2] / self.key

    def path(self, index: int) -> Path:
        return self.dir / _batch_name(index, ".safetensors")

    def record_path(self, index: int) -> Path:
        return self.dir / _batch_name(index, ".json")

    def has(self, index: int) -> bool:
        return self.path(index).is_file() and self.record_path(index).is_file()

    def load(
        self,
        index: int,
        x: Tensor,
        y: Tensor,
        eps: float,
        *,
        fooled: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor | None:
        """The cached batch ``index`` for clean images ``x`` / labels ``y``, or None.

        None means "attack this batch": nothing is cached, or the cached batch failed
        verification (then with a :class:`StaleCacheWarning`, and the reason in
        :attr:`problems`). Verified: the file's sha256 against its record; its shape, labels,
        finiteness, [0, 1] range and distance ``eps`` (in [0, 1] units) from ``x``; and, given
        ``fooled`` (images -> boolean ``(B,)``: which fool the attack surface, one forward
        pass), that the same images fool the surface as when the batch was crafted.
        """
        path = self.path(index)
        if not path.is_file():
            return None
        problem, x_adv = self._verify(index, x, y, eps, fooled)
        if problem is None:
            return x_adv
        line = (
            f"cached adversarial batch {index} ({path}) failed verification: {problem}; "
            "recomputed it"
        )
        self.problems.append(line)
        warnings.warn(line, StaleCacheWarning, stacklevel=2)
        return None

    def _verify(
        self,
        index: int,
        x: Tensor,
        y: Tensor,
        eps: float,
        fooled: Callable[[Tensor], Tensor] | None,
    ) -> tuple[str | None, Tensor | None]:
        path = self.path(index)
        record = _read_json(self.record_path(index))
        if not record or not isinstance(record.get("sha256"), str):
            return "it has no record of its hash (an interrupted write, or an older irad)", None
        try:
            data = path.read_bytes()
        except OSError as err:
            return f"it cannot be read ({err})", None
        digest_now = hashlib.sha256(data).hexdigest()
        if digest_now != record["sha256"]:
            return (
                f"its sha256 {digest_now[:12]} differs from the {record['sha256'][:12]} written "
                "with it (the file was changed or damaged)",
                None,
            )
        try:
            tensors = load(data)
        except (SafetensorError, ValueError) as err:
            return f"it is not a readable safetensors file ({err})", None
        x_adv, labels = tensors.get("x_adv"), tensors.get("y")
        if x_adv is None or labels is None:
            return "it lacks the 'x_adv' or 'y' tensor", None
        if x_adv.shape != x.shape or x_adv.dtype != torch.float32:
            return (
                f"it holds {x_adv.dtype} {tuple(x_adv.shape)}, expected float32 {tuple(x.shape)}",
                None,
            )
        if not torch.equal(labels.to(y.device), y):
            return "its labels differ from the data set's", None
        x_adv = x_adv.to(x.device)
        problem = check_adversarial(x_adv, x, eps)
        if problem:
            return problem, None
        if fooled is not None and record.get("fooled") is not None:
            then = decode_bits(record["fooled"]).reshape(-1)
            now = fooled(x_adv).detach().to("cpu", torch.bool).reshape(-1)
            if then.shape != now.shape:
                return "its record of fooled images does not match the batch", None
            changed = int((then != now).sum())
            if changed > int(FOOLED_TOLERANCE * now.numel()):
                return (
                    f"{int(now.sum())} of its {now.numel()} images fool the attack surface now, "
                    f"{int(then.sum())} did when they were crafted ({changed} differ): the images, "
                    "the surface or the code changed",
                    None,
                )
        return None, x_adv

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` of this key ({} when nothing was cached yet)."""
        return _read_json(self.dir / "meta.json")

    def save(self, index: int, x_adv: Tensor, y: Tensor, fooled: Tensor | None = None) -> None:
        """Atomically write batch ``index`` and then its record (sha256 and, given ``fooled``
        (boolean ``(B,)``), which images fooled the attack surface); once, ``meta.json``."""
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
        self.record_path(index).unlink(missing_ok=True)  # no record: the batch is not there
        atomic_write_bytes(self.path(index), data)
        record: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest()}
        if fooled is not None:
            record["fooled"] = encode_bits(fooled.detach().to("cpu", torch.bool).reshape(1, -1))
        atomic_write_json(self.record_path(index), record)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


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
    "StaleCacheWarning",
    "attack_code_fingerprint",
    "canonical_json",
    "check_adversarial",
    "default_cache_dir",
    "module_fingerprint",
]
