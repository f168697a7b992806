"""What a run records about the machine, and the warning for emulated bfloat16."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from irad.utils import env
from irad.utils.env import bfloat16_is_native, cpu_features, environment_info


def test_cpu_features_are_recorded_with_every_result():
    features = cpu_features()
    assert set(features) <= {"avx2", "avx512", "avx512_bf16", "amx"}
    assert environment_info()["cpu_features"] == features


@pytest.mark.parametrize(
    ("features", "native"), [([], False), (["avx2"], False), (["avx2", "amx"], True)]
)
def test_bfloat16_is_native_only_with_amx_or_avx512_bf16(monkeypatch, features, native):
    monkeypatch.setattr(env, "cpu_features", lambda: features)
    monkeypatch.setattr(env.platform, "machine", lambda: "x86_64")
    assert bfloat16_is_native("cpu") is native


def _keep_freed_memory_in_a_child(extra_env: dict[str, str]) -> list[str]:
    # A child process: the thresholds are per process and would stay set in pytest's.
    code = (
        "import ctypes, ctypes.util\n"
        "from irad.utils.env import keep_freed_memory\n"
        "applied = keep_freed_memory()\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')\n"
        "names = 'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost'\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in names.split()]\n"
        "info = getattr(libc, 'mallinfo2', None)\n"  # glibc >= 2.33
        "if info is None:\n"
        "    print(applied, 'unknown'); raise SystemExit\n"
        "info.restype = Info\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "before = info().hblks\n"
        "block = libc.malloc(64 * 2**20)\n"  # over the default threshold: mmapped unless raised
        "print(applied, info().hblks - before)\n"
    )
    child_env = {**os.environ, **extra_env}
    run = subprocess.run(
        [sys.executable, "-c", code], env=child_env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.split()


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_keep_freed_memory_keeps_large_blocks_in_the_heap_unless_the_user_chose(monkeypatch):
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    applied, mapped_blocks = _keep_freed_memory_in_a_child({})
    assert applied == "True"
    assert mapped_blocks in ("0", "unknown")  # the 64 MiB block came from the heap, not mmap
    applied, mapped_blocks = _keep_freed_memory_in_a_child({"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert applied == "False" and mapped_blocks in ("1", "unknown")
