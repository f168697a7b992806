"""One vocabulary of checks, one seeded RNG block, one registry with aliases, one atomic writer."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from irad import checks
from irad.checks import (
    check_batch_size,
    check_bool,
    check_choice,
    check_count,
    check_float,
    check_int,
    check_positive,
    check_positive_int,
    check_seed,
)
from irad.errors import ConfigError, InputError, SettingError
from irad.registry import Registry
from irad.utils.io import atomic_write_bytes, atomic_write_json, atomic_writer
from irad.utils.seed import seeded

# -- the setting checks ----------------------------------------------------------------------


SETTING_CHECKS = [
    (check_int, (3, "steps", 1, 10), 3),
    (check_float, (0.5, "p", 0, 1), 0.5),
    (check_positive_int, (4, "n_queries"), 4),
    (check_positive, (8, "eps", 255), 8.0),
    (check_bool, (True, "random_start"), True),
    (check_choice, ("DLR", "loss", ("ce", "dlr")), "dlr"),
    (check_seed, (7, "seed"), 7),
    (check_batch_size, (16, "batch_size"), 16),
    (check_count, (10, "--n", 100, "images"), 10),
]


@pytest.mark.parametrize(("check", "args", "expected"), SETTING_CHECKS)
def test_every_setting_check_takes_the_value_then_its_name(check, args, expected) -> None:
    assert check(*args) == expected
    with pytest.raises(SettingError) as err:
        check(object(), *args[1:])
    assert str(err.value).startswith(args[1])  # the message names the setting first


def test_a_bad_setting_is_both_an_input_and_a_config_error() -> None:
    with pytest.raises(InputError):
        check_int(0, "steps", 1)
    with pytest.raises(ConfigError):
        check_int(0, "steps", 1)


@pytest.mark.parametrize(
    ("value", "ok"),
    [(4, True), (4.0, True), (np.int64(4), True), (4.5, False), (True, False), ("4", False)],
)
def test_integers_are_checked_exactly_unless_typed_as_text(value, ok) -> None:
    if ok:
        assert check_int(value, "k") == 4
    else:
        with pytest.raises(SettingError, match="k must be an integer"):
            check_int(value, "k")
    assert check_int("4", "k", text=True) == 4


def test_ranges_name_their_open_and_closed_ends() -> None:
    with pytest.raises(SettingError, match=r"warmup must be a number in \[0, 1\), got 1"):
        check_float(1, "warmup", 0, 1, high_open=True)
    with pytest.raises(SettingError, match=r"eps must be a number in \(0, 255\], got 0"):
        check_positive(0, "eps", 255)
    with pytest.raises(SettingError, match="must be finite"):
        check_float(float("nan"), "lr")
    with pytest.raises(SettingError, match="gamma must be a number >= 0"):
        check_float("-1", "gamma", 0, text=True)


def test_seeds_and_optional_seeds() -> None:
    assert check_seed(2**63 - 1) == 2**63 - 1
    for bad in (-1, 2**63, 1.5, "x"):
        with pytest.raises(SettingError, match="seed"):
            check_seed(bad)
    assert check_seed(None, optional=True) is None
    assert check_seed("none", optional=True, text=True) is None
    assert check_seed("7", text=True) == 7


def test_a_count_above_the_data_set_size_is_refused_with_the_size() -> None:
    with pytest.raises(SettingError, match=r"--n 5000 is more than the 1000 images in cifar10"):
        check_count(5000, "--n", 1000, "images in cifar10/test")


def test_the_old_check_families_are_gone() -> None:
    import irad.attacks.base as attack_base
    import irad.resample.samplers as samplers

    assert not hasattr(checks, "check_range")
    for name in ("check_positive_int", "check_positive", "check_choice", "check_seed"):
        assert name not in vars(attack_base) or vars(attack_base)[name] is getattr(checks, name)
    assert samplers.check_seed is checks.check_seed


# -- seeded ------------------------------------------------------------------------------------


def test_seeded_repeats_draws_and_restores_the_outer_rng() -> None:
    torch.manual_seed(123)
    outer_next = torch.rand(3)
    torch.manual_seed(123)
    with seeded(5) as g:
        a, ga = torch.rand(3), torch.rand(3, generator=g)
    with seeded(5, devices=["cpu"]) as g:
        b, gb = torch.rand(3), torch.rand(3, generator=g)
    assert torch.equal(a, b) and torch.equal(ga, gb)
    assert torch.equal(torch.rand(3), outer_next)  # the caller's stream went on untouched


# -- registries with aliases -----------------------------------------------------------------


def test_aliases_live_in_the_registries() -> None:
    from irad.data.load import DATASETS
    from irad.resample import reconstruction, samplers

    assert samplers.SAMPLERS.canonical("spatially_variant") == "sv"
    assert samplers.canonical_sampler("Invariant") == "si"
    assert reconstruction.canonical_reconstruction("bil") == "bilinear"
    assert DATASETS.canonical("CIFAR_10") == "cifar10"
    for module, name in ((samplers, "_SAMPLER_ALIASES"), (reconstruction, "_ALIASES")):
        assert not hasattr(module, name)
    import irad.data.load as load

    assert not hasattr(load, "_ALIASES")


def test_unknown_names_suggest_and_list_the_primary_names_with_aliases() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("alpha", "a")(object)
    reg.register("beta")(dict)
    with pytest.raises(SettingError) as err:
        reg.get("alpah")
    assert "did you mean 'alpha'?" in str(err.value)
    assert "Known: alpha (a), beta" in str(err.value)
    assert reg.names(aliases=False) == ["alpha", "beta"] and reg.names() == ["a", "alpha", "beta"]
    with pytest.raises(InputError, match="unknown sampler"):  # still an InputError for users
        from irad.resample import build_sampler

        build_sampler("zigzag")


# -- the atomic writer -----------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask) -> None:
    from irad.data.image_io import write_png
    from irad.data.npz import write_npz

    old = os.umask(umask)
    try:
        paths = [
            atomic_write_bytes(tmp_path / "a.bin", b"x"),
            atomic_write_json(tmp_path / "b.json", {"k": 1}),
            write_npz(tmp_path / "c.npz", np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1)),
            write_png(tmp_path / "d.png", np.zeros((2, 2, 3), np.uint8)),
        ]
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~umask
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path.name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
