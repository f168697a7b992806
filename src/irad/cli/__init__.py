"""``irad`` command line: thin commands over the Python API, one module per command group."""

from __future__ import annotations

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
    classify,
    convert,
    demo,
    evaluate,
    pairs,
    purify,
    quality,
    reproduce,
    train,
)

for _module in (demo, classify, train, pairs, evaluate, reproduce, quality, purify, convert):
    _module.register(app)


def main() -> None:
    """Entry point: run the app and turn irad's own errors into one clear line, exit code 2."""
    try:
        app()
    except IradError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
