"""The fast path of the implicit representation equals the per-query reference path.

The reference path (``fast=False``) is LIIF's algorithm, the one the official checkpoints are
checked against (``tests/test_official.py``); the fast path computes each MLP's first layer once
per feature pixel (a 3×3 convolution), skips ensemble terms of negligible weight where the weights
carry no gradient, and runs the encoder channels last. Here the two are compared in float32 on
random weights: outputs and gradients (with respect to the input image, SampleNet's parameters,
the representation's parameters and the sample points) to 1e-6, on odd and non-square sizes, with
queries and shifts that leave the image, across block and group boundaries.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import irad.models.liif as liif
from irad.defenses import IRAD, ImplicitReconstruction, build_defense, build_defense_spec
from irad.errors import ConfigError
from irad.models.edsr import EDSR, EDSRConfig
from irad.models.liif import (
    FeatureField,
    ImplicitConfig,
    ImplicitRepresentation,
    first_layer_projection,
    local_ensemble,
)
from irad.models.samplenet import SampleNetConfig
from irad.resample.coordinates import liif_normalize, make_coord, make_grid, normalized_cell
from irad.resample.samplers import build_sampler

TOL = {"atol": 1e-6, "rtol": 0.0}
SIZES = [(7, 5), (5, 9), (1, 6), (4, 1), (11, 11)]


def representation(seed: int = 0, skip: str = "none", n_feats: int = 5) -> ImplicitRepresentation:
    """Random weights with outputs of order 1 (the default init gives small outputs)."""
    torch.manual_seed(seed)
    cfg = ImplicitConfig(EDSRConfig(n_resblocks=2, n_feats=n_feats), (12, 10, 9), skip=skip)
    rep = ImplicitRepresentation(cfg)
    with torch.no_grad():
        rep.imnet.last.weight.mul_(4.0)
    return rep


def irad_model(seed: int = 0, layout: str = "shared", shift_px: float = 1.5) -> IRAD:
    """IRAD with a random SampleNet whose shifts reach ``shift_px`` pixels and more."""
    rep = representation(seed)
    if layout == "official":
        cfg = SampleNetConfig.official((11, 9))
    else:
        cfg = SampleNetConfig(hidden=(11, 9))
    model = IRAD(rep, preset=None, samplenet_config=cfg, chunk_size=64)
    torch.manual_seed(seed + 100)
    with torch.no_grad():
        last = model.samplenet.imnet.last
        last.weight.normal_(0, 0.3)
        last.bias.normal_(0, shift_px)
        if layout == "official":  # normalised units: a pixel is 2 / size
            last.weight.mul_(0.25)
            last.bias.mul_(0.25)
    return model


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few pairs and groups of one image: every boundary is crossed."""
    monkeypatch.setattr(liif, "FAST_BLOCK", 7)
    monkeypatch.setattr(liif, "PROJECTION_BUDGET", 1)


def both(fn):
    """``fn(fast)`` on the reference path and on the fast path."""
    return fn(False), fn(True)


# -- building blocks ----------------------------------------------------------------------------


def test_first_layer_projection_is_the_unfolded_linear_map():
    rep = representation()
    feat = torch.randn(2, 5, 6, 4)
    field_ = FeatureField(feat)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(4), indexing="ij")
    i, j = i.reshape(1, -1).expand(2, -1), j.reshape(1, -1).expand(2, -1)
    first = rep.imnet.layers[0]
    unfolded = field_.unfolded_at(i, j)  # F.unfold's channel-major order
    want = unfolded @ first.weight[:, : 9 * 5].t() + first.bias
    got = first_layer_projection(feat, first).view(2, 24, -1)
    torch.testing.assert_close(got, want, **TOL)


def test_fast_encoder_equals_the_reference_encoder_with_gradients():
    torch.manual_seed(0)
    enc = EDSR(EDSRConfig(n_resblocks=3, n_feats=6, res_scale=0.5))
    x = torch.randn(2, 3, 7, 5, requires_grad=True)
    ref = enc(x)
    fast = enc(x, fast=True)
    torch.testing.assert_close(fast, ref, **TOL)
    g_ref = torch.autograd.grad(ref.square().sum(), [x, enc.head[0].weight])
    g_fast = torch.autograd.grad(fast.square().sum(), [x, enc.head[0].weight])
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-6)


# -- inference ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("skip", ["none", "bilinear"])
def test_rendering_equals_the_reference(size, skip, small_blocks):
    rep = representation(skip=skip)
    x = torch.rand(3, 3, *size)
    with torch.no_grad():
        ref, fast = both(lambda f: rep(x, fast=f))
        assert ref.std() > 0.05  # not a saturated image: the comparison means something
        torch.testing.assert_close(fast, ref, **TOL)
        # super-resolution: off-centre queries, cell 1/2
        ref, fast = both(lambda f: rep(x, size=(2 * size[0] + 1, 2 * size[1]), fast=f))
        torch.testing.assert_close(fast, ref, **TOL)


@pytest.mark.parametrize("chunk", [None, 1, 5, 64])
def test_queries_anywhere_equal_the_reference(chunk, small_blocks):
    rep = representation(1)
    x = torch.rand(2, 3, 6, 9)
    field_ = rep.field(x)
    coord = torch.rand(2, 57, 2) * 3.0 - 1.5  # inside and well outside the image
    coord[:, :20] = make_coord((6, 9)).view(-1, 2)[:20]  # some exactly on pixel centres
    cell = torch.rand(2, 57, 2) * 0.6
    with torch.no_grad():
        ref, fast = both(
            lambda f: local_ensemble(field_, coord, cell, rep.imnet, chunk_size=chunk, fast=f)
        )
    torch.testing.assert_close(fast, ref, **TOL)


def test_sparse_pixel_queries_take_the_gather_path_and_equal_the_reference():
    # stage 1's queries: a few random pixel centres per image (fewer pairs than pixels)
    rep = representation(2)
    x = torch.rand(3, 3, 9, 7)
    g = torch.Generator().manual_seed(0)
    rows = torch.stack([torch.randperm(63, generator=g)[:8] for _ in range(3)])
    points = make_grid(9, 7).view(-1, 2)[rows]  # (3, 8, 2) pixel units
    with torch.no_grad():
        ref, fast = both(lambda f: rep.query(rep.field(x), points, fast=f, clamp=False))
    torch.testing.assert_close(fast, ref, **TOL)


@pytest.mark.parametrize("layout", ["shared", "official"])
@pytest.mark.parametrize("size", [(7, 5), (6, 10), (1, 4)])
def test_irad_equals_the_reference_with_shifts_that_leave_the_image(layout, size, small_blocks):
    model = irad_model(layout=layout).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        model.fast = False
        ref, ref_shifts = model(x), model.shifts(x)
        model.fast = True
        fast, fast_shifts = model(x), model.shifts(x)
    points = make_grid(*size) + ref_shifts
    outside = (points < -0.5) | (points > torch.tensor(size) - 0.5)
    assert outside.any() and ref_shifts.abs().mean() > 0.3
    torch.testing.assert_close(fast_shifts, ref_shifts, atol=1e-5, rtol=0)  # pixels
    torch.testing.assert_close(fast, ref, **TOL)
    assert model.reconstruction().fast  # the switch follows into the DISCO-style defense


@pytest.mark.parametrize("copy", [True, False])
def test_official_encoders_batched_into_one_call_equal_the_reference(copy, monkeypatch):
    # With several threads and SampleNet's encoder an exact copy (the release), both encoder
    # passes run as one call; a SampleNet encoder with other weights runs on its own.
    model = irad_model(9, layout="official").eval()
    if not copy:
        with torch.no_grad():
            model.samplenet.encoder.head[0].bias.add_(0.1)
    assert model._identical_encoders() is copy
    calls = []
    real = EDSR.forward

    def counting(self, x, *, fast=False):
        calls.append(x.shape[0])
        return real(self, x, fast=fast)

    monkeypatch.setattr(EDSR, "forward", counting)
    x = torch.rand(3, 3, 6, 5)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            model.fast = True
            fast = model(x)
            assert calls == ([6] if copy else [3, 3])
            model.fast = False
            ref = model(x)
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(fast, ref, **TOL)


def test_recons_with_a_naive_sampler_equals_the_reference():
    rep = representation(3)
    x = torch.rand(2, 3, 8, 5)
    out = []
    for fast in (False, True):
        d = ImplicitReconstruction(rep, preset=None, sampler=build_sampler("si", 2.5), fast=fast)
        with torch.no_grad():
            out.append(d(x))
    torch.testing.assert_close(out[1], out[0], **TOL)


def test_grid_queries_compute_about_one_term_per_query(monkeypatch):
    # Three of the four ensemble weights on the pixel-centre grid are ~2.5e-10 away from the
    # last row and column; the fast path skips them, and keeps all four on the border.
    rep = representation()
    h, w = 6, 9
    computed = []
    real = liif._block_inplace

    def counting(*args, **kwargs):
        computed.append(int(args[4].numel()))  # the block's weights
        return real(*args, **kwargs)

    monkeypatch.setattr(liif, "_block_inplace", counting)
    field_ = rep.field(torch.rand(1, 3, h, w))
    grid = make_coord((h, w)).view(1, -1, 2)
    with torch.no_grad():
        local_ensemble(field_, grid, normalized_cell((h, w)).expand_as(grid), rep.imnet)
    border = h + w - 1
    assert sum(computed) == (h * w - border) + 4 * border
    computed.clear()
    with torch.no_grad():  # off the grid nothing is negligible
        local_ensemble(field_, grid + 0.01, normalized_cell((h, w)).expand_as(grid), rep.imnet)
    assert sum(computed) == 4 * h * w


def test_skipped_terms_really_are_negligible():
    rep = representation()
    field_ = rep.field(torch.rand(2, 3, 5, 6))
    grid = make_coord((5, 6)).view(1, -1, 2).expand(2, -1, -1)
    _, _, centres, scale = liif._neighbours(field_, grid)
    weights = liif._ensemble_weights((grid.unsqueeze(0) - centres) * scale)
    small = weights[weights < liif.SKIP_WEIGHT]
    assert small.numel() == 3 * (4 * 5) * 2  # interior pixels, three terms each
    assert float(small.max()) < 3e-10


def identity_like_representation() -> ImplicitRepresentation:
    """Encoder = identity on the normalised input; MLP = the centre of the 3×3 patch."""
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(n_resblocks=0, n_feats=3), (6,)))
    with torch.no_grad():
        for p in rep.parameters():
            p.zero_()
        for c in range(3):
            rep.encoder.head[0].weight[c, c, 1, 1] = 1.0
            rep.imnet.layers[0].weight[2 * c, c * 9 + 4] = 1.0  # relu(v) - relu(-v) = v
            rep.imnet.layers[0].weight[2 * c + 1, c * 9 + 4] = -1.0
            rep.imnet.layers[2].weight[c, 2 * c] = 1.0
            rep.imnet.layers[2].weight[c, 2 * c + 1] = -1.0
    return rep


def test_the_border_rule_survives_the_fast_path():
    rep = identity_like_representation()
    x = torch.rand(2, 3, 6, 5)
    with torch.no_grad():
        out = rep(x)  # fast by default
    torch.testing.assert_close(out[..., :-1, :-1], x[..., :-1, :-1], **TOL)
    torch.testing.assert_close(
        out[..., -1, :-1], (x[..., -1, :-1] + x[..., -1, 1:]) / 2, atol=1e-6, rtol=0
    )


# -- gradients ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["shared", "official"])
def test_input_gradients_through_irad_equal_the_reference(layout, small_blocks):
    model = irad_model(4, layout=layout)
    head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 7 * 6, 4))
    x = torch.rand(2, 3, 7, 6)
    grads = []
    for fast in (False, True):
        model.fast = fast
        xg = x.clone().requires_grad_(True)
        head(model(xg)).square().sum().backward()
        grads.append(xg.grad)
    assert grads[0].abs().max() > 1e-3
    torch.testing.assert_close(grads[1], grads[0], **TOL)


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("layout", ["shared", "official"])
def test_stage2_gradients_of_samplenet_equal_the_reference(checkpoint, layout, small_blocks):
    model = irad_model(5, layout=layout)
    for p in model.representation.parameters():
        p.requires_grad_(False)
    x = torch.rand(3, 3, 5, 8)
    target = torch.rand(3, 3, 5, 8)
    params = list(model.samplenet.imnet.parameters())
    grads = []
    for fast in (False, True):
        model.fast = fast
        out = model.resample(x, frozen_representation=True, checkpoint=checkpoint)
        grads.append(torch.autograd.grad((out - target).square().sum(), params))
    assert grads[0][0].abs().max() > 1e-3
    for fast_g, ref_g in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(fast_g, ref_g, **TOL)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_gradients_with_respect_to_the_sample_points_equal_the_reference(checkpoint):
    rep = representation(6, skip="bilinear")
    x = torch.rand(2, 3, 6, 7)
    field_ = rep.field(x)
    points = torch.rand(2, 30, 2) * torch.tensor([8.0, 9.0]) - 1.0  # pixels, some outside
    points[:, :6] = make_grid(6, 7).view(-1, 2)[:6] + 1e-4  # near centres: tiny weights
    grads = []
    for fast in (False, True):
        p = points.clone().requires_grad_(True)
        coord = liif_normalize(p, (6, 7))
        cell = normalized_cell((6, 7)).expand_as(coord)
        out = rep.query_normalized(
            field_, coord, cell, chunk_size=4, checkpoint=checkpoint, fast=fast
        )
        grads.append(torch.autograd.grad(out.square().sum(), p)[0])
    assert grads[0].abs().max() > 1e-2
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-6)


def test_stage1_parameter_gradients_on_pixel_queries_equal_the_reference(small_blocks):
    rep = representation(7)
    x = torch.rand(4, 3, 6, 5)
    g = torch.Generator().manual_seed(1)
    rows = torch.stack([torch.randperm(30, generator=g)[:7] for _ in range(4)])
    points = make_grid(6, 5).view(-1, 2)[rows]
    target = torch.rand(4, 7, 3)
    params = [rep.encoder.head[0].weight, rep.encoder.body[0].body[2].bias]
    params += list(rep.imnet.parameters())
    grads = []
    for fast in (False, True):
        out = rep.query(rep.field(x, fast=fast), points, clamp=False, chunk_size=None, fast=fast)
        grads.append(torch.autograd.grad((out - target).abs().mean(), params))
    for fast_g, ref_g in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(fast_g, ref_g, atol=1e-6, rtol=1e-5)


# -- switches and the bfloat16 option ------------------------------------------------------------


def test_fast_and_precision_are_recorded_and_rebuilt(tmp_path):
    model = irad_model()
    model.save_pretrained(tmp_path)
    default = build_defense("irad", checkpoint=str(tmp_path))
    assert default.fast and "fast" not in default.config() and "precision" not in default.config()
    ref = build_defense("irad", checkpoint=str(tmp_path), fast=False, precision="bfloat16")
    cfg = ref.config()
    assert cfg["fast"] is False and cfg["precision"] == "bfloat16"
    again = build_defense(**cfg)
    assert not again.fast and again.precision == "bfloat16"
    assert build_defense_spec(f"recons:fast=false,checkpoint={tmp_path}").fast is False
    with pytest.raises(ConfigError, match="precision"):
        build_defense("irad", checkpoint=str(tmp_path), precision="float16")
    with pytest.raises(ConfigError, match="precision"):
        model.precision = "half"


@pytest.mark.filterwarnings("ignore:.*bfloat16 is emulated")
def test_bfloat16_precision_states_its_difference():
    # Measured on the bundled cifar10 weights (benchmarks/bfloat16_trained.py, 500 test images):
    # max 4.0e-2, mean 2.6e-4, no prediction of the bundled classifier changed. Random images
    # here, which move more on average (2.4e-3).
    model = IRAD.from_pretrained("cifar10")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = model(x)
        model.precision = "bfloat16"
        low = model(x)
    assert low.dtype == torch.float32
    diff = (low - exact).abs()
    assert 0 < float(diff.max()) < 0.05
    assert float(diff.mean()) < 5e-3


def test_bfloat16_warns_where_the_cpu_emulates_it(monkeypatch):
    from irad.utils import env

    model = irad_model(3)
    model.precision = "bfloat16"
    x = torch.rand(1, 3, 6, 7)
    monkeypatch.setattr(env.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(env, "cpu_features", lambda: ["avx2"])
    with pytest.warns(UserWarning, match="bfloat16 is emulated"), torch.no_grad():
        model(x)
    monkeypatch.setattr(env, "cpu_features", lambda: ["avx2", "amx"])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error")
        model(x)


@pytest.mark.filterwarnings("ignore:.*bfloat16 is emulated")
@pytest.mark.parametrize("fast", [False, True])
def test_bfloat16_runs_on_every_path(fast):
    model = irad_model(8)
    model.fast = fast
    x = torch.rand(2, 3, 6, 7)
    points = make_grid(6, 7).view(-1, 2)[:5].expand(2, -1, -1)  # sparse: the gather path
    rep = model.representation
    with torch.no_grad():
        exact = model(x)
        model.precision = "bfloat16"
        low = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            sparse = rep.query(rep.field(x, fast=fast), points, fast=fast)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert float((low - exact).abs().max()) < 0.1
    with torch.no_grad():
        exact_sparse = rep.query(rep.field(x), points)
    torch.testing.assert_close(sparse.float(), exact_sparse, atol=0.1, rtol=0)
