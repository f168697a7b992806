"""What a run records about the machine, and the warning for emulated bfloat16."""

from __future__ import annotations

import pytest

from irad.utils import env
from irad.utils.env import (
    bfloat16_is_native,
    cpu_features,
    environment_info,
    keep_freed_memory,
)


def test_cpu_features_are_recorded_with_every_result():
    features = cpu_features()
    assert set(features) <= {"avx2", "avx512", "avx512_bf16", "amx"}
    assert environment_info()["cpu_features"] == features


@pytest.mark.parametrize(
    ("features", "native"), [([], False), (["avx2"], False), (["avx2", "amx"], True)]
)
def test_bfloat16_is_native_only_with_amx_or_avx512_bf16(monkeypatch, features, native):
    monkeypatch.setattr(env, "cpu_features", lambda: features)
    assert bfloat16_is_native("cpu") is native


def test_keep_freed_memory_leaves_the_users_thresholds_alone(monkeypatch):
    import platform

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is glibc
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert keep_freed_memory() is False
