"""Collects and sets up the docstring examples of ``src/irad``: they are tests.

``pyproject.toml`` puts ``src/irad`` in the test paths, so ``python -m pytest`` runs every
``>>>`` example of every module beside ``tests/``; ``pytest src/irad/defenses/jpeg.py`` runs one
module's, ``pytest tests/test_x.py`` none. The examples are collected here rather than with
``--doctest-modules``, which would also import ``tests/conftest.py`` as a module named
``conftest``, clashing with this file. This file lives beside the package, not in it, so it is
not installed with irad.

- Every example sees ``torch`` (as if ``import torch`` came first), starts from torch's random
  seed 0, so that its output does not depend on the examples run before it, and runs in a fresh
  temporary folder, so that it may write files (``out_dir="runs/r20"``, the adversarial-image
  cache) without leaving any.
- The examples of a module that needs an optional extra skip, with the reason, when the
  extra is not installed (``OPTIONAL``); a module that cannot even be imported without it is
  left out, and the run's summary says so.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest
import torch
from _pytest.doctest import DoctestItem, DoctestModule

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

_LEFT_OUT: list[str] = []


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


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DoctestModule | None:
    if file_path.suffix != ".py" or file_path.name in ("conftest.py", "__main__.py"):
        return None
    if parent.config.option.doctestmodules:
        return None  # --doctest-modules given: pytest collects the module itself
    if _optional_missing(file_path) is not None:
        module = ".".join(file_path.resolve().relative_to(_PACKAGE.parent).with_suffix("").parts)
        try:
            importlib.import_module(module.removesuffix(".__init__"))
        except ImportError as err:
            _LEFT_OUT.append(f"{module} ({err})")
            return None
    return DoctestModule.from_parent(parent, path=file_path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        need = _optional_missing(item.path) if isinstance(item, DoctestItem) else None
        if need is not None:
            package, install = need
            reason = f"example needs {package}, not installed ({install})"
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _LEFT_OUT:
        terminalreporter.write_line(f"examples not collected (optional package missing): {line}")


@pytest.fixture(autouse=True)
def _doctest_setup(
    doctest_namespace: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IRAD_CACHE", str(tmp_path / "cache"))  # not the user's ~/.cache/irad
