"""What ran where: recorded with every result so figures can be traced and compared."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
from typing import Any

import numpy as np
import torch


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


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
