"""``irad`` command line: thin commands over the Python API, one module per command group."""

from __future__ import annotations

import errno
import sys

import typer

from irad.errors import IradError

app = typer.Typer(
    name="irad",
    help="Image-resampling defenses against adversarial examples, and honest evaluation of them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Image-resampling defenses against adversarial examples, and honest evaluation of them."""


# Each module adds its commands to `app`; importing them here keeps the command list in one place.
from irad.cli import (  # noqa: E402
    baselines,
    classify,
    convergence,
    convert,
    data,
    demo,
    diffusion,
    evaluate,
    pairs,
    purify,
    quality,
    reproduce,
    train,
    visualize,
)

for _module in (
    demo,
    data,
    classify,
    train,
    diffusion,
    baselines,
    pairs,
    evaluate,
    convergence,
    reproduce,
    quality,
    purify,
    convert,
    visualize,
):
    _module.register(app)


def main() -> None:
    """Entry point: run the app; irad's own errors and failed file operations become one line.

    An :class:`~irad.errors.IradError` (bad input) exits with code 2, an ``OSError`` (a disk
    full, a path that cannot be written, ...) with code 1, each with what failed and the fix.
    """
    from irad.utils.env import keep_freed_memory

    keep_freed_memory()
    try:
        app()
    except IradError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except OSError as err:
        typer.secho(f"error: {describe_os_error(err)}", fg=typer.colors.RED, err=True)
        sys.exit(1)


# The usual fix for each kind of failed file operation.
_OS_FIXES = {
    errno.EACCES: "you may not write or read there: choose another path or fix its permissions",
    errno.EPERM: "the operation is not permitted there: choose another path",
    errno.ENOSPC: "the disk is full: free some space or choose a path on another disk",
    errno.EDQUOT: "your disk quota is used up: free some space or choose another disk",
    errno.EROFS: "that file system is read-only: choose a writable path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder: give a file name",
    errno.ENOENT: "it does not exist: check the path",
}


def describe_os_error(err: OSError) -> str:
    """One line for a failed file operation: the path, what went wrong, and the usual fix."""
    where = " -> ".join(str(p) for p in (err.filename, err.filename2) if p is not None)
    what = err.strerror or type(err).__name__
    fix = _OS_FIXES.get(err.errno or -1, "check the path, its permissions and the free space")
    return f"{where + ': ' if where else ''}{what}; {fix}"
