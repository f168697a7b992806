"""Where irad looks for data: an explicit folder, else ``$IRAD_DATA``, else a per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "IRAD_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/irad/data")


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """Return ``(folder, how it was chosen)`` for the data root.

    Order: the ``data_dir`` argument (the CLI's ``--data-dir``), else the environment variable
    ``IRAD_DATA``, else ``~/.cache/irad/data``. The folder need not exist yet.

    Example:
        >>> resolve_data_dir("/data")
        (PosixPath('/data'), 'from --data-dir')
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "from --data-dir"
    env = os.environ.get(DATA_ENV, "")
    if env:
        return Path(env).expanduser(), f"from ${DATA_ENV}"
    return DEFAULT_DATA_DIR.expanduser(), f"the default; set ${DATA_ENV} or --data-dir to change it"
