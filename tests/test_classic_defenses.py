"""The classic input-transformation defenses of Table 2: bit depth, JPEG, randomization, median."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irad.defenses import (
    DEFENSES,
    JPEG,
    BitDepthReduction,
    DifferentiableJPEG,
    MedianFilter,
    Randomization,
    build_defense,
)
from irad.defenses.median import median_filter
from irad.defenses.randomization import padded_size, random_resize_pad
from irad.errors import InputError


def _images(b: int = 4, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _smooth_images(b: int = 2, h: int = 32, w: int = 32) -> torch.Tensor:
    """Low-frequency colour gradients: what JPEG preserves best."""
    rows = torch.linspace(0, 1, h).view(1, 1, h, 1)
    cols = torch.linspace(0, 1, w).view(1, 1, 1, w)
    phase = torch.arange(b * 3, dtype=torch.float32).view(b, 3, 1, 1)
    return 0.5 + 0.4 * torch.sin(2.0 * rows + 1.5 * cols + phase)


@pytest.mark.parametrize(
    "name", ["bit-depth", "jpeg", "jpeg-diff", "randomization", "median", "ir-bil-si"]
)
def test_shape_range_and_dtype(name: str) -> None:
    x = _images(3, 32, 24)  # non-square on purpose
    defense = build_defense(name)
    out = defense(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert name in DEFENSES and defense.config()["name"] in DEFENSES


@pytest.mark.parametrize("name", ["bit-depth", "jpeg", "randomization", "median"])
def test_recorded_config_rebuilds_the_defense(name: str) -> None:
    defense = build_defense(name)
    cfg = defense.config()
    rebuilt = build_defense(cfg.pop("name"), **cfg)
    assert rebuilt.config() == defense.config()


# --- bit depth ---------------------------------------------------------------------------------


def test_bit_depth_known_values() -> None:
    x = torch.tensor([0.0, 0.2, 0.5, 0.51, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = BitDepthReduction(bits=4)(x)[0, 0, 0]
    # 15 levels: 0.2*15 = 3 -> 3/15; 0.5*15 = 7.5 -> 8 (half to even); 0.51*15 = 7.65 -> 8.
    expected = torch.tensor([0, 3, 8, 8, 15]) / 15
    torch.testing.assert_close(out, expected)
    one_bit = BitDepthReduction(bits=1)(x)[0, 0, 0]
    assert one_bit.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_bit_depth_output_lies_on_the_grid(bits: int) -> None:
    out = BitDepthReduction(bits)(_images())
    levels = out * (2**bits - 1)
    torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)
    assert levels.round().unique().numel() <= 2**bits


def test_bit_depth_8_bits_keeps_uint8_images() -> None:
    x = torch.randint(0, 256, (2, 3, 8, 8)).float() / 255
    torch.testing.assert_close(BitDepthReduction(8)(x), x)


def test_bit_depth_gradient_is_zero_and_the_surrogate_is_straight_through() -> None:
    defense = BitDepthReduction(4)
    assert not defense.differentiable
    x = _images(2, 8, 8).requires_grad_()
    defense(x).sum().backward()
    assert torch.count_nonzero(x.grad) == 0

    surrogate = defense.differentiable_surrogate()
    assert surrogate.differentiable and surrogate.config()["straight_through"]
    x.grad = None
    out = surrogate(x)
    torch.testing.assert_close(out, defense(x))  # forward: the same quantisation
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))  # backward: identity


@pytest.mark.parametrize("bits", [0, 9, -1, 4.5, "four"])
def test_bit_depth_rejects_bad_bits(bits: object) -> None:
    with pytest.raises(InputError, match="bits"):
        BitDepthReduction(bits)  # type: ignore[arg-type]


# --- JPEG --------------------------------------------------------------------------------------


def test_jpeg_output_is_8_bit() -> None:
    out = JPEG(75)(_images(2, 16, 16))
    torch.testing.assert_close(out * 255, (out * 255).round(), atol=1e-4, rtol=0)


def test_jpeg_quality_100_is_close_to_identity_and_lower_quality_is_further() -> None:
    x = _smooth_images()
    err = {q: (JPEG(q)(x) - x).abs().mean().item() for q in (100, 50, 10)}
    assert err[100] < 2 / 255
    assert err[100] < err[50] < err[10]


def test_jpeg_constant_image_survives() -> None:
    x = torch.full((1, 3, 16, 16), 0.0)
    x[:, 0], x[:, 1], x[:, 2] = 0.8, 0.4, 0.2
    torch.testing.assert_close(JPEG(75)(x), x, atol=2 / 255, rtol=0)


def test_jpeg_is_not_differentiable_and_its_surrogate_is_kornia() -> None:
    defense = JPEG(60)
    assert not defense.differentiable
    x = _smooth_images().requires_grad_()
    defense(x).sum().backward()  # connected, with the true (zero) gradient
    assert torch.count_nonzero(x.grad) == 0

    surrogate = defense.differentiable_surrogate()
    assert isinstance(surrogate, DifferentiableJPEG) and surrogate.quality == 60
    x.grad = None
    surrogate(x).sum().backward()
    assert torch.count_nonzero(x.grad) > 0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("size", [(32, 32), (17, 23)])
def test_kornia_surrogate_approximates_pil(size: tuple[int, int]) -> None:
    # Same codec up to smooth rounding and chroma filters: close on average, not equal.
    x = _smooth_images(2, *size)
    pil, kornia = JPEG(75)(x), DifferentiableJPEG(75)(x)
    assert pil.shape == kornia.shape == x.shape
    gap = (pil - kornia).abs().mean().item()
    assert gap < 3 / 255
    assert gap < (pil - x).abs().mean().item() + 3 / 255


@pytest.mark.parametrize("quality", [0, 101, -5, 75.5, "high"])
def test_jpeg_rejects_bad_quality(quality: object) -> None:
    with pytest.raises(InputError, match="quality"):
        JPEG(quality)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="quality"):
        DifferentiableJPEG(quality)  # type: ignore[arg-type]


def test_jpeg_accepts_cli_strings() -> None:
    assert JPEG("90").quality == 90  # type: ignore[arg-type]


# --- randomization -----------------------------------------------------------------------------


def test_randomization_with_p_zero_is_the_identity() -> None:
    x = _images()
    defense = Randomization(p=0.0, seed=0)
    assert torch.equal(defense(x), x) and not defense.stochastic


def test_randomization_is_reproducible_with_a_seed() -> None:
    x = _images(8)
    first = Randomization(seed=5)(x)
    assert torch.equal(first, Randomization(seed=5)(x))
    assert not torch.equal(first, Randomization(seed=6)(x))
    defense = Randomization()
    assert defense.stochastic
    assert not torch.equal(defense(x), defense(x))


def test_randomization_with_p_one_changes_every_image() -> None:
    x = _images(16)
    out = Randomization(p=1.0, seed=0)(x)
    assert ((out - x).abs().flatten(1).amax(1) > 0).all()


def test_randomization_probability_is_per_image() -> None:
    x = _images(64, 8, 8)
    out = Randomization(p=0.5, seed=0)(x)
    unchanged = (out == x).flatten(1).all(1).float().mean().item()
    assert 0.2 < unchanged < 0.8


def test_randomization_known_values_on_constant_images() -> None:
    # A constant image padded with its own value stays constant; padded with 0 it keeps its
    # value in the middle and gets darker at the sides where the padding was blended in.
    x = torch.full((4, 3, 32, 32), 0.6)
    same = Randomization(p=1.0, pad_value=0.6, seed=0)(x)
    torch.testing.assert_close(same, x)
    dark = Randomization(p=1.0, pad_value=0.0, seed=0)(x)
    torch.testing.assert_close(dark[..., 12:20, 12:20], x[..., 12:20, 12:20])
    assert (dark.flatten(1).amin(1) < 0.6 - 1e-3).all()


def test_randomization_sizes_follow_xie_et_al() -> None:
    assert padded_size(299, 331 / 299) == 331
    assert padded_size(32, 331 / 299) == 35  # CIFAR: resize to 32..34, pad to 35, back to 32
    x = _images(2, 9, 9)
    assert torch.equal(random_resize_pad(x, ratio=1.0, p=1.0), x)  # no room: identity


def test_randomization_passes_gradients() -> None:
    x = _images(2, 16, 16).requires_grad_()
    Randomization(p=1.0, seed=0)(x).sum().backward()
    assert torch.count_nonzero(x.grad) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 1.5}, "p "),
        ({"p": -0.1}, "p "),
        ({"ratio": 0.5}, "ratio"),
        ({"mode": "cubic"}, "mode"),
        ({"pad_value": 2.0}, "pad_value"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_randomization_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Randomization(**kwargs)


# --- median filter -----------------------------------------------------------------------------


def _median_reference(x: np.ndarray, k: int) -> np.ndarray:
    """Plain numpy loop with numpy's 'reflect' padding (= torch's)."""
    r = k // 2
    padded = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    out = np.empty_like(x)
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            out[:, :, i, j] = np.median(padded[:, :, i : i + k, j : j + k], axis=(2, 3))
    return out


def test_median_of_a_known_patch() -> None:
    patch = torch.tensor([[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]) / 10
    x = patch.expand(1, 3, 3, 3).clone()
    assert MedianFilter(3)(x)[0, 0, 1, 1].item() == pytest.approx(0.5)


@pytest.mark.parametrize("k", [3, 5])
def test_median_matches_a_reference_loop(k: int) -> None:
    x = _images(2, 7, 9)
    expected = torch.from_numpy(_median_reference(x.numpy(), k))
    torch.testing.assert_close(MedianFilter(k)(x), expected)


def test_median_removes_an_outlier_and_keeps_constants() -> None:
    x = torch.full((1, 3, 8, 8), 0.3)
    assert torch.equal(MedianFilter(3)(x), x)
    x[..., 4, 4] = 1.0
    assert torch.equal(MedianFilter(3)(x), torch.full_like(x, 0.3))
    assert torch.equal(MedianFilter(1)(x), x)


def test_median_gradient_goes_to_one_pixel_per_output() -> None:
    x = _images(1, 6, 6).requires_grad_()
    out = MedianFilter(3)(x)
    out.sum().backward()
    assert MedianFilter(3).differentiable
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(out.numel())))


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_median_other_paddings(padding: str) -> None:
    x = torch.full((1, 3, 5, 5), 0.8)
    out = median_filter(x, 3, padding)
    if padding == "replicate":
        assert torch.equal(out, x)
    else:  # a corner sees 5 zeros out of 9
        assert out[0, 0, 0, 0].item() == 0.0 and out[0, 0, 2, 2].item() == pytest.approx(0.8)


@pytest.mark.parametrize("k", [2, 4, 0, -3, 2.5])
def test_median_rejects_even_or_invalid_kernels(k: object) -> None:
    with pytest.raises(InputError, match="kernel_size"):
        MedianFilter(k)  # type: ignore[arg-type]


def test_median_rejects_images_too_small_for_reflect() -> None:
    with pytest.raises(InputError, match="larger than"):
        MedianFilter(5)(torch.rand(1, 3, 2, 2))
    with pytest.raises(InputError, match="padding"):
        MedianFilter(3, padding="wrap")


def test_defenses_reject_bad_images() -> None:
    with pytest.raises(InputError, match="0, 1"):
        MedianFilter()(torch.full((1, 3, 4, 4), 255.0))
    with pytest.raises(InputError, match="channels"):
        JPEG()(torch.rand(1, 4, 8, 8))
