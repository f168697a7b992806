"""A run folder is used by one process at a time: :class:`RunLock`.

Two trainings, or two evaluations, writing into one folder would both exit 0 and one would
silently win. ``with RunLock(folder):`` creates ``folder/.lock`` exclusively (``O_EXCL``) holding
the owner's pid, host and command; a second process gets a :class:`RunFolderBusy` that names the
owner and the fix. A lock left by a process that died (same host, pid gone) is stale: it is
replaced with a warning instead of blocking the folder forever.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType

from irad.errors import IradError

LOCK_NAME = ".lock"


class RunFolderBusy(IradError, RuntimeError):
    """Another live process holds the run folder's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class RunLock:
    """Exclusive use of a run folder for the life of a ``with`` block (re-entrant per process).

    Under ``torchrun`` only one rank should take the lock (rank 0); the others work inside the
    folder it holds.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with RunLock(folder):
        ...     (Path(folder) / ".lock").is_file()
        True
        >>> (Path(folder) / ".lock").exists()
        False
    """

    _held: dict[str, int] = {}  # noqa: RUF012 - lock path -> depth, in this process

    def __init__(self, folder: str | os.PathLike[str], *, purpose: str = "") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose

    def _owner(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _is_stale(self, owner: dict[str, object]) -> bool:
        pid = owner.get("pid")
        if owner.get("host") != socket.gethostname() or not isinstance(pid, int):
            # A lock from another machine (shared file system) cannot be checked: never stale,
            # unless it cannot even be read (a torn write of a lock file is a dead writer).
            return not owner
        return not _pid_alive(pid)

    def _create(self, record: dict[str, object]) -> None:
        """Create the lock file with its content in one step (FileExistsError if it exists).

        The record is written to a private file first and hard-linked into place, so no other
        process ever reads an empty lock (which would look like a dead writer's and be taken).
        """
        tmp = self.path.with_name(f"{LOCK_NAME}.{os.getpid()}.{id(self)}.tmp")
        tmp.write_text(json.dumps(record))
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: exclusive create, then write
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self) -> None:
        key = str(self.path.resolve())
        if self._held.get(key):
            self._held[key] += 1
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "purpose": self.purpose,
            "command": " ".join(sys.argv),
        }
        for _ in range(2):
            try:
                self._create(record)
            except FileExistsError:
                owner = self._owner()
                if self._is_stale(owner):
                    warnings.warn(
                        f"removing the stale lock {self.path} left by a process that is gone "
                        f"(pid {owner.get('pid')}, started {owner.get('started')})",
                        stacklevel=2,
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunFolderBusy(
                    f"run folder {self.folder} is in use by pid {owner.get('pid')} on "
                    f"{owner.get('host')} (started {owner.get('started')}: "
                    f"{owner.get('command') or owner.get('purpose') or '?'}); wait for it to "
                    f"finish, choose another folder, or delete {self.path} if that process is "
                    "gone"
                ) from None
            self._held[key] = 1
            return
        raise RunFolderBusy(f"could not take the lock {self.path}; delete it and retry")

    def release(self) -> None:
        key = str(self.path.resolve())
        depth = self._held.get(key, 0)
        if depth > 1:
            self._held[key] = depth - 1
            return
        self._held.pop(key, None)
        if self._owner().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
