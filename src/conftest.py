"""Settings for the docstring examples of ``src/irad``, which the default test run collects.

``pyproject.toml`` adds ``src/irad`` to the test paths and passes ``--doctest-modules``, so
``python -m pytest`` runs every ``>>>`` example; ``pytest src/irad/defenses/jpeg.py`` runs one
module's. This file lives beside the package, not in it, so it is not installed with irad.

- Every example sees ``torch`` (as if ``import torch`` came first) and starts from torch's
  random seed 0, so that its output does not depend on the examples run before it.
- The examples of a module that needs an optional extra skip, with the reason, when the
  extra is not installed (``OPTIONAL``); a module that cannot even be imported without it is
  left out of the collection.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from _pytest.doctest import DoctestItem

_PACKAGE = Path(__file__).resolve().parent / "irad"

#: module (relative to src/irad) -> (the package its examples need, how to install it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "models/diffusion.py": ("diffusers", "pip install 'irad[diffusion]'"),
    "defenses/diffpure.py": ("diffusers", "pip install 'irad[diffusion]'"),
    "train/diffusion.py": ("diffusers", "pip install 'irad[diffusion]'"),
}

_stale = [name for name in OPTIONAL if not (_PACKAGE / name).is_file()]
if _stale:  # a module was renamed or removed: keep the list true rather than silently unused
    raise pytest.UsageError(f"src/conftest.py OPTIONAL names missing modules: {_stale}")


def _missing(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is None
    except (ImportError, ValueError):
        return True


def _optional_missing(path: Path) -> tuple[str, str] | None:
    """``(package, install)`` when ``path`` is in ``OPTIONAL`` and its package is missing."""
    try:
        name = path.resolve().relative_to(_PACKAGE).as_posix()
    except ValueError:
        return None
    need = OPTIONAL.get(name)
    return need if need is not None and _missing(need[0]) else None


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if _optional_missing(collection_path) is None:
        return None
    module = ".".join(collection_path.resolve().relative_to(_PACKAGE.parent).with_suffix("").parts)
    try:
        importlib.import_module(module)
    except ImportError:
        return True
    return None  # it imports: its examples are collected, then skipped below


@pytest.fixture(autouse=True)
def _doctest_setup(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        need = _optional_missing(item.path) if isinstance(item, DoctestItem) else None
        if need is not None:
            package, install = need
            reason = f"example needs {package}, not installed ({install})"
            item.add_marker(pytest.mark.skip(reason=reason))
