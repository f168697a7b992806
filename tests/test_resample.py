"""Properties of irad.resample (Sec. 3: Eq. 4-8) and of the naive IR defenses built on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from irad.defenses import DEFENSES, build_defense
from irad.defenses.resampling import ImageResampling
from irad.errors import InputError
from irad.resample import (
    PADDING_MODES,
    Resampler,
    SpatiallyInvariantSampler,
    SpatiallyVariantSampler,
    bilinear_reconstruct,
    from_grid_sample_xy,
    make_grid,
    nearest_reconstruct,
    normalized_to_pixel,
    pixel_to_normalized,
    reconstruct,
    resample,
    to_grid_sample_xy,
)

FAST = settings(max_examples=25, deadline=None)
sizes = st.integers(min_value=1, max_value=9)
methods = st.sampled_from(["bilinear", "nearest"])
paddings = st.sampled_from(PADDING_MODES)


def _images(b: int, h: int, w: int, seed: int, c: int = 3) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _shifts(h: int, w: int, dr: float, dc: float) -> torch.Tensor:
    return torch.tensor([dr, dc]).expand(h, w, 2)


# --- coordinates -------------------------------------------------------------------------------


@FAST
@given(h=sizes, w=sizes)
def test_grid_holds_pixel_indices(h: int, w: int) -> None:
    grid = make_grid(h, w)
    assert grid.shape == (h, w, 2)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    assert torch.equal(grid[..., 0], rows.float())
    assert torch.equal(grid[..., 1], cols.float())


@FAST
@given(h=sizes, w=sizes)
def test_grid_agrees_with_grid_sample_pixel_centres(h: int, w: int) -> None:
    # affine_grid with the identity and align_corners=False yields grid_sample's pixel centres.
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    centres = F.affine_grid(identity, [1, 1, h, w], align_corners=False)[0]
    torch.testing.assert_close(to_grid_sample_xy(make_grid(h, w), (h, w)), centres)
    torch.testing.assert_close(from_grid_sample_xy(centres, (h, w)), make_grid(h, w))


@FAST
@given(h=sizes, w=sizes)
def test_normalized_grid_is_the_liif_convention(h: int, w: int) -> None:
    # LIIF make_coord: -1 + r + 2 r i with r = 1 / n, (row, col) order.
    liif_rows = -1 + 1 / h + 2 / h * torch.arange(h).float()
    liif_cols = -1 + 1 / w + 2 / w * torch.arange(w).float()
    grid = make_grid(h, w, normalized=True)
    torch.testing.assert_close(grid[:, 0, 0], liif_rows)
    torch.testing.assert_close(grid[0, :, 1], liif_cols)
    coords = torch.rand(4, 5, 2) * 20 - 5
    torch.testing.assert_close(
        normalized_to_pixel(pixel_to_normalized(coords, (h, w)), (h, w)), coords
    )


def test_coordinate_errors_are_clear() -> None:
    with pytest.raises(InputError, match="size"):
        make_grid(0, 3)
    with pytest.raises(InputError, match="last dimension"):
        pixel_to_normalized(torch.zeros(3, 3), (4, 4))
    with pytest.raises(InputError, match="floating"):
        pixel_to_normalized(torch.zeros(3, 2, dtype=torch.long), (4, 4))


# --- reconstruction ----------------------------------------------------------------------------


@FAST
@given(b=st.integers(1, 3), h=sizes, w=sizes, method=methods, pad=paddings, seed=st.integers(0, 99))
def test_zero_shift_returns_the_input_exactly(
    b: int, h: int, w: int, method: str, pad: str, seed: int
) -> None:
    x = _images(b, h, w, seed)
    out = resample(x, torch.zeros(b, h, w, 2), method, padding_mode=pad)
    assert torch.equal(out, x)


@FAST
@given(
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    dr=st.integers(-2, 2),
    dc=st.integers(-2, 2),
    method=methods,
    seed=st.integers(0, 99),
)
def test_integer_shift_is_a_translation_away_from_the_border(
    h: int, w: int, dr: int, dc: int, method: str, seed: int
) -> None:
    x = _images(2, h, w, seed)
    out = resample(x, _shifts(h, w, float(dr), float(dc)), method)
    # out[i, j] = x[i + dr, j + dc] wherever both are inside the image.
    rows_out = slice(max(0, -dr), h - max(0, dr))
    cols_out = slice(max(0, -dc), w - max(0, dc))
    rows_in = slice(max(0, dr), h - max(0, -dr))
    cols_in = slice(max(0, dc), w - max(0, -dc))
    assert torch.equal(out[..., rows_out, cols_out], x[..., rows_in, cols_in])


def test_one_pixel_si_shift_equals_a_roll_inside_the_image() -> None:
    x = _images(2, 6, 8, 0)
    for method in ("bilinear", "nearest"):
        out = Resampler(method, SpatiallyInvariantSampler(1.0))(x)
        rolled = torch.roll(x, shifts=(-1, -1), dims=(2, 3))
        assert torch.equal(out[..., :-1, :-1], rolled[..., :-1, :-1])
        # Border rule: the last row/column replicate the border pixels.
        assert torch.equal(out[..., -1, :-1], x[..., -1, 1:])


@FAST
@given(h=st.integers(2, 9), w=st.integers(2, 9), seed=st.integers(0, 99))
def test_bilinear_at_half_pixel_is_the_mean_of_neighbours(h: int, w: int, seed: int) -> None:
    x = _images(2, h, w, seed)
    right = resample(x, _shifts(h, w, 0.0, 0.5))
    torch.testing.assert_close(right[..., :-1], (x[..., :-1] + x[..., 1:]) / 2)
    down = resample(x, _shifts(h, w, 0.5, 0.0))
    torch.testing.assert_close(down[..., :-1, :], (x[..., :-1, :] + x[..., 1:, :]) / 2)
    both = resample(x, _shifts(h, w, 0.5, 0.5))
    four = (x[..., :-1, :-1] + x[..., :-1, 1:] + x[..., 1:, :-1] + x[..., 1:, 1:]) / 4
    torch.testing.assert_close(both[..., :-1, :-1], four)


@FAST
@given(
    b=st.integers(1, 3),
    h=sizes,
    w=sizes,
    pad=paddings,
    seed=st.integers(0, 10_000),
)
def test_matches_grid_sample_on_random_coordinates(
    b: int, h: int, w: int, pad: str, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 2, h, w, generator=g)
    # Points inside and up to two pixels outside the image, on a non-square query grid.
    coords = torch.rand(b, 4, 7, 2, generator=g) * torch.tensor([h + 4.0, w + 4.0]) - 2.5
    grid = to_grid_sample_xy(coords, (h, w))
    expected = F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=False)
    torch.testing.assert_close(bilinear_reconstruct(x, coords, padding_mode=pad), expected)

    # Nearest differs from grid_sample only on exact ties (round half up vs half to even), and
    # float round-off in grid_sample's unnormalisation can move a near-tie: skip those points.
    expected = F.grid_sample(x, grid, mode="nearest", padding_mode=pad, align_corners=False)
    ours = nearest_reconstruct(x, coords, padding_mode=pad)
    # (Reflection about the edges at -0.5 and n - 0.5 maps ties to ties, so this mask suffices.)
    near_tie = ((coords - coords.floor() - 0.5).abs() < 1e-3).any(-1)
    keep = (~near_tie).unsqueeze(1).expand_as(ours)
    assert torch.equal(ours[keep], expected[keep])


def test_bilinear_gradients_match_grid_sample() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 5, 7, generator=g, requires_grad=True)
    coords = (torch.rand(2, 6, 4, 2, generator=g) * torch.tensor([6.0, 8.0]) - 0.7).requires_grad_()
    weights = torch.rand(2, 3, 6, 4, generator=g)
    (bilinear_reconstruct(x, coords) * weights).sum().backward()
    ours = (x.grad.clone(), coords.grad.clone())
    x.grad, coords.grad = None, None
    grid = to_grid_sample_xy(coords, (5, 7))
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    (ref * weights).sum().backward()
    torch.testing.assert_close(ours[0], x.grad)
    torch.testing.assert_close(ours[1], coords.grad, atol=1e-4, rtol=1e-4)


def test_bilinear_gradcheck_in_image_and_coordinates() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    # Away from integer coordinates (kinks of the bilinear weights).
    coords = torch.rand(1, 3, 3, 2, generator=g, dtype=torch.float64) * 0.8 + 0.1
    coords = (coords + torch.tensor([1.0, 2.0], dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, c: bilinear_reconstruct(a, c), (x, coords))


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_gradients_flow_to_the_input(method: str) -> None:
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    out = Resampler(method, SpatiallyVariantSampler(1.5, seed=0))(x)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # Every output pixel is a convex combination of inputs, so the gradient mass is conserved.
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(out.numel())))
    if method == "nearest":  # each input pixel receives the number of times it was selected
        assert torch.equal(x.grad, x.grad.round())


def test_nearest_ties_round_half_up_so_half_shifts_translate() -> None:
    x = torch.arange(8.0).view(1, 1, 1, 8)
    out = resample(x, _shifts(1, 8, 0.0, 1.5), "nearest")
    # A shift of 1.5 moves by 2 everywhere (grid_sample would give 2, 2, 4, 4, ... instead).
    assert out.flatten().tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.0, 7.0]
    assert nearest_reconstruct(x, torch.tensor([[[0.0, -0.5]]])).item() == 0.0


def test_zeros_and_reflection_border_rules() -> None:
    x = torch.arange(1.0, 5.0).view(1, 1, 1, 4)
    far = torch.tensor([[[0.0, -3.0], [0.0, 10.0]]])
    assert bilinear_reconstruct(x, far, padding_mode="zeros").flatten().tolist() == [0.0, 0.0]
    assert bilinear_reconstruct(x, far, padding_mode="border").flatten().tolist() == [1.0, 4.0]
    # Reflection about the edge -0.5: -1 -> 0, -2 -> 1.
    refl = nearest_reconstruct(
        x, torch.tensor([[[0.0, -1.0], [0.0, -2.0]]]), padding_mode="reflection"
    )
    assert refl.flatten().tolist() == [1.0, 2.0]


def test_non_square_images_and_a_shared_grid() -> None:
    x = _images(3, 5, 11, 2)
    out = Resampler("bilinear", SpatiallyVariantSampler(1.5, seed=0))(x)
    assert out.shape == x.shape
    # One (H', W', 2) grid is broadcast over the batch.
    coords = make_grid(4, 9) * 0.5
    assert reconstruct(x, coords, "nea").shape == (3, 3, 4, 9)


def test_reconstruction_errors_are_clear() -> None:
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(InputError, match="coords must have shape"):
        bilinear_reconstruct(x, torch.zeros(2, 4, 4))
    with pytest.raises(InputError, match="NaN"):
        bilinear_reconstruct(x, torch.full((2, 4, 4, 2), float("nan")))
    with pytest.raises(InputError, match="batch sizes differ"):
        nearest_reconstruct(x, torch.zeros(3, 4, 4, 2))
    with pytest.raises(InputError, match="unknown reconstruction"):
        reconstruct(x, torch.zeros(2, 4, 4, 2), "bicubic")
    with pytest.raises(InputError, match="padding_mode"):
        reconstruct(x, torch.zeros(2, 4, 4, 2), padding_mode="wrap")
    with pytest.raises(InputError, match="shifts must have shape"):
        resample(x, torch.zeros(2, 3, 4, 2))
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        bilinear_reconstruct(torch.rand(3, 4, 4), torch.zeros(2, 4, 4, 2))


# --- samplers ----------------------------------------------------------------------------------


def test_si_sampler_is_a_constant_deterministic_shift() -> None:
    sampler = SpatiallyInvariantSampler(1.5)
    shifts = sampler(2, 3, 5)
    assert shifts.shape == (2, 3, 5, 2) and torch.all(shifts == 1.5)
    assert not sampler.stochastic
    with pytest.raises(InputError, match="finite"):
        SpatiallyInvariantSampler(float("inf"))


def test_sv_sampler_is_reproducible_with_a_seed_and_differs_without() -> None:
    a = SpatiallyVariantSampler(1.5, seed=3)
    b = SpatiallyVariantSampler(1.5, seed=3)
    first = a(2, 4, 6)
    assert torch.equal(first, b(2, 4, 6))  # same seed, same draws
    assert not torch.equal(first, a(2, 4, 6))  # the generator advances
    assert not torch.equal(first, SpatiallyVariantSampler(1.5, seed=4)(2, 4, 6))
    assert torch.equal(a.manual_seed(3)(2, 4, 6), first)
    unseeded = SpatiallyVariantSampler(1.5)
    assert not torch.equal(unseeded(2, 4, 6), unseeded(2, 4, 6))
    # A shared generator is used as given.
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(
        SpatiallyVariantSampler(1.5, generator=g1)(1, 3, 3),
        SpatiallyVariantSampler(1.5, generator=g2)(1, 3, 3),
    )


def test_sv_sampler_draws_in_range_per_pixel_and_axis() -> None:
    shifts = SpatiallyVariantSampler(1.5, seed=0)(4, 16, 16)
    assert shifts.shape == (4, 16, 16, 2)
    assert shifts.min() >= 0 and shifts.max() < 1.5
    assert not torch.equal(shifts[..., 0], shifts[..., 1])
    assert not torch.equal(shifts[0], shifts[1])
    assert SpatiallyVariantSampler(1.5).stochastic
    assert not SpatiallyVariantSampler(0.0).stochastic
    with pytest.raises(InputError, match=r"gamma .* must be a number >= 0"):
        SpatiallyVariantSampler(-1.0)
    with pytest.raises(InputError, match="seed"):
        SpatiallyVariantSampler(1.0, seed="abc")  # type: ignore[arg-type]


def test_resampler_declares_stochastic_from_its_sampler() -> None:
    assert not Resampler("bilinear", SpatiallyInvariantSampler(1.5)).stochastic
    assert Resampler("nearest", SpatiallyVariantSampler(1.5)).stochastic
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(Resampler()(x), x)  # default: no shift
    with pytest.raises(InputError, match="Sampler"):
        Resampler("bilinear", "si")  # type: ignore[arg-type]


# --- the naive IR defenses (Table 1) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reconstruction", "sampler", "stochastic"),
    [
        ("ir-bil-si", "bilinear", "si", False),
        ("ir-bil-sv", "bilinear", "sv", True),
        ("ir-nea-si", "nearest", "si", False),
        ("ir-nea-sv", "nearest", "sv", True),
    ],
)
def test_table1_rows_are_registered(
    name: str, reconstruction: str, sampler: str, stochastic: bool
) -> None:
    defense = build_defense(name, seed=0)
    cfg = defense.config()
    assert cfg["reconstruction"] == reconstruction and cfg["sampler"] == sampler
    assert cfg["shift"] == 1.5 and defense.stochastic is stochastic and defense.differentiable
    x = torch.rand(2, 3, 8, 8)
    out = defense(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # The recorded config rebuilds the same defense.
    rebuilt = build_defense(cfg.pop("name"), **cfg)
    assert torch.equal(rebuilt(x), build_defense(name, seed=0)(x))


def test_ir_defense_parameters_and_errors() -> None:
    assert "ir" in DEFENSES
    defense = build_defense("ir", reconstruction="nea", sampler="sv", shift=0.75, seed=1)
    assert defense.config()["reconstruction"] == "nearest" and defense.config()["shift"] == 0.75
    with pytest.raises(InputError, match="sampler"):
        ImageResampling(sampler="gaussian")
    with pytest.raises(InputError, match="shift"):
        ImageResampling(sampler="sv", shift=-1)
    with pytest.raises(InputError, match="shift"):
        ImageResampling(shift="far")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="padding_mode"):
        ImageResampling(padding_mode="wrap")
    with pytest.raises(InputError, match="reconstruction"):
        ImageResampling(reconstruction="cubic")
    with pytest.raises(InputError, match="channels"):
        ImageResampling()(torch.rand(1, 1, 8, 8))
