"""What ran where: the device a run uses, and what is recorded with every result so figures
can be traced and compared."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
from typing import Any

import numpy as np
import torch

from irad.errors import SettingError


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """The one parser of device names (``--device`` and every ``device=`` argument).

    ``"auto"`` is CUDA when available, else the CPU; a bare ``"cuda"`` is this process's GPU
    (``local_rank`` under ``torchrun``). A device that does not exist here is refused with the fix.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    name = str(device).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise SettingError(
            f"device {device!r} is not a device name; use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError(f"device {device!r}: CUDA is not available here; use cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        elif dev.index >= torch.cuda.device_count():
            raise SettingError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
                f"; use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SettingError(f"device {device!r}: MPS is not available here; use cpu")
    return dev


def environment_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Versions, machine and thread settings, as a JSON-ready dict."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "irad": _version("irad"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torchattacks": _version("torchattacks"),
        "device": str(device),
    }
    if device.type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
