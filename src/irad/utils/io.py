"""Atomic file writes and checksums: a crash never leaves a half-written result behind.

Every file irad writes goes through :func:`atomic_writer`: the bytes go to a temporary file in
the target's folder, are flushed to disk, and the file is renamed over the target only when
complete. The result gets the permissions a plain ``open(path, "w")`` would give it
(``0o666`` minus the umask), not the private ``0o600`` of a temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from irad.errors import InputError


def _umask() -> int:
    """The process's umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """Open a binary file that replaces ``path`` only when the block ends without an error.

    The parent folder is created. If the block raises, the temporary file is removed and
    ``path`` is left as it was.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out.bin"
        >>> with atomic_writer(target) as f:
        ...     _ = f.write(b"done")
        >>> target.read_bytes()
        b'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _probe_folder(folder: Path, what: str, shown: Path) -> None:
    """Create ``folder`` if needed and write a scratch file there; errors name ``shown``."""
    blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise InputError(f"{what} {shown}: {blocker} is a file, not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".irad-write-check-"):
            pass
    except OSError as err:
        raise InputError(
            f"{what} {shown}: cannot write there ({err.strerror or err}); choose a path you can "
            "write to"
        ) from None


def check_writable_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Make sure files can be written into folder ``path`` (created if needed), before any work.

    ``what`` names the path in the error (e.g. ``"--out"``), so a run fails at once, not after
    its work, when its output cannot be written.

    Raises:
        InputError: naming the path, what is wrong (a file in the way, no permission, a full or
            read-only disk) and the fix.
    """
    path = Path(path).expanduser()
    _probe_folder(path, what, path)
    return path


def check_writable_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Make sure file ``path`` can be written (its folder created if needed), before any work."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    _probe_folder(path.parent, what, path)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (``algorithm``: anything :mod:`hashlib` knows)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file."""
    return file_digest(path, "sha256")
