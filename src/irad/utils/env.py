"""What ran where: the device a run uses, what the CPU can do (and so what pays on it), the
process settings the command line makes, and what is recorded with every result so figures can
be traced and compared."""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as _dt
import os
import platform
import socket
import warnings
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


def cpu_features() -> list[str]:
    """The vector and matrix extensions of this CPU that torch uses (``avx2``, ``avx512``,
    ``avx512_bf16``, ``amx``): speed figures depend on them, so every result records them."""
    probes = {
        "avx2": "_is_avx2_supported",
        "avx512": "_is_avx512_supported",
        "avx512_bf16": "_is_avx512_bf16_supported",
        "amx": "_is_amx_tile_supported",
    }
    found = []
    for name, probe in probes.items():
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            found.append(name)
    return found


def bfloat16_is_native(device: str | torch.device = "cpu") -> bool:
    """Whether bfloat16 matrix products run in hardware on ``device``: on an x86 CPU, AMX or
    AVX512-BF16 (without them torch emulates bfloat16, slower than float32); other CPUs and
    devices are taken at their word."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64", "i686"):
        return True
    return bool({"amx", "avx512_bf16"} & set(cpu_features()))


def warn_if_bfloat16_emulated(device: str | torch.device, what: str) -> None:
    """A warning when ``what`` asks for bfloat16 on a device that only emulates it."""
    if not bfloat16_is_native(device):
        warnings.warn(
            f"{what}: bfloat16 is emulated on this device (an x86 CPU without AMX or "
            "AVX512-BF16, or a GPU without bfloat16), so it is slower than float32, not faster "
            "(IRAD's forward: 9x slower than float32 on an AVX2 EPYC); use float32",
            stacklevel=2,
        )


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Largest mmap threshold every 64-bit glibc accepts (HEAP_MAX_SIZE / 2); newer ones take more.
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed large blocks for reuse (mmap and trim thresholds of
    1 GiB; an older glibc that refuses a 1 GiB mmap threshold gets its maximum, 32 MiB) instead
    of handing them back to the system at once.

    An attack or a training step allocates and frees the same large activations every step; by
    default glibc maps blocks over its (adaptive, at most 32 MiB) threshold afresh and unmaps
    them when freed, so each step faults in and zeroes new pages: `irad demo` took 210-229 s
    without and 184-202 s with this on a 2-core AVX2 EPYC; attack steps 12 % less
    (docs/results.md, ``benchmarks/attack_allocator.py``). The process keeps its peak memory
    until it exits, so this is called by the command line, not on import. Linux with glibc
    only; thresholds set through ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` /
    ``GLIBC_TUNABLES`` are left alone. Returns whether the mmap threshold was raised.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    user = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
    if any(name in os.environ for name in user):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    raised = bool(mallopt(_M_MMAP_THRESHOLD, 2**30)) or bool(
        mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)
    )
    mallopt(_M_TRIM_THRESHOLD, 2**30)
    return raised


def environment_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Versions, machine and thread settings, as a JSON-ready dict."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_features(),
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
