"""The ``.npz`` image layout (``x`` uint8 ``[N, H, W, 3]``, ``y`` int ``[N]``).

Reads check every key, dtype and shape; writes are atomic.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from irad.errors import DataError
from irad.utils.io import atomic_writer

LAYOUT = "x uint8 [N, H, W, 3] (RGB) and y int64 [N]"


def read_npz(
    path: str | os.PathLike[str], *, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Read and validate an image ``.npz``; return ``(x uint8, y int64, classes or None)``.

    Every problem (missing file, corrupt zip, missing key, wrong dtype or shape, count mismatch,
    label out of range) raises :class:`~irad.errors.DataError` naming the file and the problem.
    Pickled objects are refused (``allow_pickle=False``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected an .npz with {LAYOUT})")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: holds a single array, not an .npz archive with {LAYOUT}")
        with data:
            keys = list(data.keys())
            for key in ("x", "y"):
                if key not in keys:
                    raise DataError(
                        f"{path}: missing key {key!r} (found {keys}; expected {LAYOUT})"
                    )
            x, y = data["x"], data["y"]
            classes = [str(c) for c in data["classes"].tolist()] if "classes" in keys else None
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as err:
        raise DataError(
            f"{path}: not a readable .npz file ({type(err).__name__}: {err}); the file is corrupt "
            "or truncated: delete it and copy or download it again"
        ) from err

    if x.dtype != np.uint8:
        hint = " (float images: store round(x * 255).astype(uint8))" if x.dtype.kind == "f" else ""
        raise DataError(f"{path}: x must be uint8, got dtype {x.dtype}{hint}")
    if x.ndim != 4 or x.shape[-1] != 3:
        hint = ""
        if x.ndim == 4 and x.shape[1] == 3:
            hint = " (it looks like NCHW: store x.transpose(0, 2, 3, 1))"
        raise DataError(f"{path}: x must have shape [N, H, W, 3], got {x.shape}{hint}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: y must hold integer labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise DataError(f"{path}: y must have shape [N], got {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: x has {len(x)} images but y has {len(y)} labels")
    y = y.astype(np.int64, copy=False)
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: labels must be non-negative, found {int(y.min())}")
    limit = len(classes) if classes is not None else num_classes
    if limit is not None and len(y) and y.max() >= limit:
        raise DataError(
            f"{path}: label {int(y.max())} is out of range for {limit} classes; "
            "is this file from another data set?"
        )
    return x, y, classes


def write_npz(
    path: str | os.PathLike[str],
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write an uncompressed image ``.npz`` atomically (:func:`irad.utils.io.atomic_writer`).

    Uncompressed on purpose: CIFAR-like pixels compress by only ~8 % and loading stays fast.
    """
    path = Path(path)
    arrays = {"x": np.ascontiguousarray(x, dtype=np.uint8), "y": np.asarray(y, dtype=np.int64)}
    if classes is not None:
        arrays["classes"] = np.asarray([str(c) for c in classes], dtype=np.str_)
    with atomic_writer(path) as f:
        np.savez(f, **arrays)
    return path
