"""Importing the official IRAD release (tsingqguo/irad): layout, conventions, round trip, errors.

The checkpoints are built here with random weights in exactly the official layout
(``Reconstruction.pt`` = LIIF's ``{'model': {'name', 'args', 'sd'}}``, ``SampleNet.pt`` = a
state_dict with ``encoder.*`` and ``imnet.layers.*``), and the converted defense is compared
with a reference of the official forward written below from the published algorithm (EDSR,
LIIF's query with ``F.unfold`` + ``grid_sample(nearest)``, the IRAD wrapper), independent of
irad's modules.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from irad.defenses import IRAD, ImplicitReconstruction
from irad.defenses.official import (
    OFFICIAL_PRESET,
    convert_official,
    load_official,
    load_official_reconstruction,
)
from irad.errors import CheckpointError, InputError
from irad.models.samplenet import SampleNetConfig
from irad.utils.io import sha256_file

# -- official-layout checkpoints with random weights -------------------------------------------


def _edsr_sd(gen: torch.Generator, n_resblocks: int, n_feats: int) -> OrderedDict:
    def conv(cout: int, cin: int, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1 / math.sqrt(cin * k * k)
        return (
            torch.randn(cout, cin, k, k, generator=gen) * scale,
            torch.randn(cout, generator=gen) * 0.1,
        )

    sd: OrderedDict = OrderedDict()
    # LIIF's EDSR keeps its (unused) MeanShift layers in the state_dict.
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        sd[f"{name}.weight"] = torch.eye(3).view(3, 3, 1, 1)
        sd[f"{name}.bias"] = sign * torch.tensor([0.4488, 0.4371, 0.4040])
    sd["head.0.weight"], sd["head.0.bias"] = conv(n_feats, 3)
    for i in range(n_resblocks):
        for j in (0, 2):
            w, b = conv(n_feats, n_feats)
            sd[f"body.{i}.body.{j}.weight"], sd[f"body.{i}.body.{j}.bias"] = w * 0.5, b
    sd[f"body.{n_resblocks}.weight"], sd[f"body.{n_resblocks}.bias"] = conv(n_feats, n_feats)
    return sd


def _mlp_sd(gen: torch.Generator, dims: list[int], last_scale: float = 1.0) -> OrderedDict:
    sd: OrderedDict = OrderedDict()
    for k, (din, dout) in enumerate(itertools.pairwise(dims)):
        scale = (1 / math.sqrt(din)) * (last_scale if k == len(dims) - 2 else 1.0)
        sd[f"layers.{2 * k}.weight"] = torch.randn(dout, din, generator=gen) * scale
        sd[f"layers.{2 * k}.bias"] = torch.randn(dout, generator=gen) * 0.1 * scale
    return sd


def official_reconstruction(
    seed: int = 0,
    n_resblocks: int = 2,
    n_feats: int = 4,
    hidden: tuple[int, ...] = (8, 8),
    encoder: str = "edsr-baseline",
    encoder_args: dict | None = None,
) -> dict:
    """A ``Reconstruction.pt`` object as LIIF's train_liif.py saves it."""
    gen = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()
    for k, v in _edsr_sd(gen, n_resblocks, n_feats).items():
        sd[f"encoder.{k}"] = v
    for k, v in _mlp_sd(gen, [9 * n_feats + 4, *hidden, 3]).items():
        sd[f"imnet.{k}"] = v
    args = {
        "encoder_spec": {
            "name": encoder,
            "args": {"no_upsampling": True, "n_resblocks": n_resblocks, "n_feats": n_feats}
            | (encoder_args or {}),
        },
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": list(hidden)}},
    }
    return {
        "model": {"name": "liif", "args": args, "sd": sd},
        "optimizer": {"name": "adam", "args": {"lr": 1e-4}, "sd": {}},
        "epoch": 1,
    }


def official_samplenet(
    reconstruction: dict, seed: int = 1, hidden: tuple[int, ...] = (8, 8), shift: float = 0.3
) -> OrderedDict:
    """A ``SampleNet.pt`` state_dict: the reconstruction's encoder copy + a 2-output MLP."""
    gen = torch.Generator().manual_seed(seed)
    rec = reconstruction["model"]["sd"]
    sd: OrderedDict = OrderedDict((k, v.clone()) for k, v in rec.items() if k.startswith("enc"))
    n_feats = rec["encoder.head.0.weight"].shape[0]
    for k, v in _mlp_sd(gen, [9 * n_feats + 4, *hidden, 2], last_scale=shift).items():
        sd[f"imnet.{k}"] = v
    return sd


def save(obj: object, path) -> str:
    torch.save(obj, path)
    return str(path)


# -- the reference: the official forward, from the published algorithm ------------------------


def ref_make_coord(h: int, w: int) -> torch.Tensor:
    """LIIF's make_coord: pixel centres in [-1, 1], (row, col), flattened to (h * w, 2)."""
    seqs = []
    for n in (h, w):
        r = (1 - (-1)) / (2 * n)
        seqs.append(-1 + r + (2 * r) * torch.arange(n).float())
    return torch.stack(torch.meshgrid(*seqs, indexing="ij"), dim=-1).view(-1, 2)


def ref_edsr(sd: dict, x: torch.Tensor, n_resblocks: int, res_scale: float = 1.0):
    head = F.conv2d(x, sd["encoder.head.0.weight"], sd["encoder.head.0.bias"], padding=1)
    res = head
    for i in range(n_resblocks):
        p = f"encoder.body.{i}.body."
        t = F.conv2d(res, sd[p + "0.weight"], sd[p + "0.bias"], padding=1).relu()
        res = res + F.conv2d(t, sd[p + "2.weight"], sd[p + "2.bias"], padding=1) * res_scale
    last = f"encoder.body.{n_resblocks}."
    res = F.conv2d(res, sd[last + "weight"], sd[last + "bias"], padding=1)
    return res + head


def ref_mlp(sd: dict, x: torch.Tensor) -> torch.Tensor:
    n = len([k for k in sd if k.startswith("imnet.layers.") and k.endswith(".weight")])
    for k in range(n):
        x = F.linear(x, sd[f"imnet.layers.{2 * k}.weight"], sd[f"imnet.layers.{2 * k}.bias"])
        x = x.relu() if k < n - 1 else x
    return x


def ref_query(feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor, sd: dict):
    """LIIF's query_rgb (local ensemble, feature unfolding, cell decoding)."""
    b = feat.shape[0]
    feat = F.unfold(feat, 3, padding=1).view(b, feat.shape[1] * 9, *feat.shape[-2:])
    h, w = feat.shape[-2:]
    feat_coord = ref_make_coord(h, w).view(h, w, 2).permute(2, 0, 1)[None].expand(b, 2, h, w)
    preds, areas = [], []
    for vx in (-1, 1):
        for vy in (-1, 1):
            c = coord.clone()
            c[:, :, 0] += vx * (2 / h / 2) + 1e-6
            c[:, :, 1] += vy * (2 / w / 2) + 1e-6
            c.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = c.flip(-1).unsqueeze(1)
            q_feat = F.grid_sample(feat, grid, mode="nearest", align_corners=False)[:, :, 0]
            q_coord = F.grid_sample(feat_coord, grid, mode="nearest", align_corners=False)[:, :, 0]
            rel = coord - q_coord.permute(0, 2, 1)
            rel[:, :, 0] *= h
            rel[:, :, 1] *= w
            rel_cell = cell.clone()
            rel_cell[:, :, 0] *= h
            rel_cell[:, :, 1] *= w
            inp = torch.cat([q_feat.permute(0, 2, 1), rel, rel_cell], dim=-1)
            preds.append(ref_mlp(sd, inp))
            areas.append((rel[:, :, 0] * rel[:, :, 1]).abs() + 1e-9)
    total = torch.stack(areas).sum(0)
    areas[0], areas[3] = areas[3], areas[0]
    areas[1], areas[2] = areas[2], areas[1]
    return sum(p * (a / total).unsqueeze(-1) for p, a in zip(preds, areas, strict=True))


def ref_official(rec: dict, sn: dict | None, x: torch.Tensor, sn_input: str = "unit"):
    """tsingqguo/irad's SampleFeatureMLP.forward; returns (image, offset in [-1, 1] units)."""
    b, _, h, w = x.shape
    args = rec["model"]["args"]["encoder_spec"]["args"]
    n, res_scale = args["n_resblocks"], args.get("res_scale", 1.0)
    rsd = rec["model"]["sd"]
    coord = ref_make_coord(h, w).unsqueeze(0).repeat(b, 1, 1)
    cell = torch.ones_like(coord)
    cell[:, :, 0] *= 2 / h
    cell[:, :, 1] *= 2 / w
    offset = torch.zeros_like(coord)
    if sn is not None:
        sn_x = x if sn_input == "unit" else (x - 0.5) / 0.5
        offset = ref_query(ref_edsr(sn, sn_x, n, res_scale), coord, cell, sn)
    out = ref_query(ref_edsr(rsd, (x - 0.5) / 0.5, n, res_scale), coord + offset, cell, rsd)
    out = (out * 0.5 + 0.5).clamp(0, 1).view(b, h, w, 3).permute(0, 3, 1, 2)
    return out, offset


# -- the converted defense reproduces the official forward --------------------------------------


@pytest.fixture
def files(tmp_path):
    rec = official_reconstruction()
    sn = official_samplenet(rec)
    return rec, sn, save(rec, tmp_path / "Reconstruction.pt"), save(sn, tmp_path / "SampleNet.pt")


def test_reconstruction_path_matches_the_official_forward(files):
    rec, _, rec_path, _ = files
    recons = load_official_reconstruction(rec_path)
    x = torch.rand(2, 3, 6, 9)  # non-square: (row, col) order matters
    with torch.no_grad():
        ours = recons(x)
        ref, _ = ref_official(rec, None, x)
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=0)
    assert recons.preset == OFFICIAL_PRESET


def test_shift_path_matches_the_official_forward(files):
    rec, sn, rec_path, sn_path = files
    irad = load_official(rec_path, sn_path)
    assert irad.samplenet.config == SampleNetConfig.official((8, 8))
    x = torch.rand(2, 3, 7, 5)
    with torch.no_grad():
        ours = irad(x)
        ref, offset = ref_official(rec, sn, x)
        shifts = irad.shifts(x)
    # the shift is not trivial: a good part of a pixel, so the comparison tests the shift path
    pixels = offset.view(2, 7, 5, 2) * torch.tensor([7 / 2, 5 / 2])
    assert pixels.abs().mean() > 0.1
    torch.testing.assert_close(shifts, pixels, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)
    recons_only, _ = ref_official(rec, None, x)
    assert (ours - recons_only).abs().max() > 1e-2
    # SampleNet's encoder really is fed x in [0, 1]: the other convention gives another image
    wrong, _ = ref_official(rec, sn, x, sn_input="normalized")
    assert (ours - wrong).abs().max() > 1e-3


@pytest.mark.parametrize("fast", [False, True])
def test_both_paths_reproduce_the_official_forward(fast, tmp_path):
    """The per-query reference path is the official algorithm; the fast path (first layer as a
    convolution, negligible grid terms skipped, encoder channels last) gives the same images.
    Measured over 10 seeds at these sizes: 1.8e-7 on both paths, both with and without shift."""
    for seed in range(3):
        rec = official_reconstruction(seed, n_resblocks=3, n_feats=8, hidden=(16, 16, 16))
        sn = official_samplenet(rec, seed + 1, hidden=(16, 16, 16))
        rec_path = save(rec, tmp_path / f"r{seed}.pt")
        irad = load_official(rec_path, save(sn, tmp_path / f"s{seed}.pt"))
        recons = load_official_reconstruction(rec_path)
        irad.fast = recons.fast = fast
        x = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            torch.testing.assert_close(irad(x), ref_official(rec, sn, x)[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(recons(x), ref_official(rec, None, x)[0], atol=1e-6, rtol=0)


def test_convert_round_trips_bit_for_bit(files, tmp_path):
    _, _, rec_path, sn_path = files
    report = convert_official(rec_path, sn_path, tmp_path / "out")
    assert report.path == tmp_path / "out" / "model.safetensors"
    loaded = IRAD.from_pretrained(tmp_path / "out")
    direct = load_official(rec_path, sn_path)
    x = torch.rand(3, 3, 8, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), direct(x))
        # and through the registry, as `--defense irad:checkpoint=DIR` builds it
        from irad.defenses import build_defense

        assert torch.equal(build_defense("irad", checkpoint=str(tmp_path / "out"))(x), loaded(x))
    assert loaded.samplenet.config == SampleNetConfig.official((8, 8))
    assert loaded.preset == OFFICIAL_PRESET
    saved = json.loads((tmp_path / "out" / "model.json").read_text())
    assert saved["format"] == "irad.irad"
    src = saved["metadata"]["converted_from"]
    assert src["reconstruction"]["sha256"] == sha256_file(rec_path)
    assert src["samplenet"]["sha256"] == sha256_file(sn_path)
    assert saved["metadata"]["samplenet_encoder_equals_reconstruction_encoder"] is True
    assert saved["metadata"]["liif_args"]["encoder_spec"]["name"] == "edsr-baseline"
    assert "encoder.sub_mean.weight" in saved["metadata"]["dropped"]
    # the representation alone loads as the DISCO-style defense
    recons = ImplicitReconstruction.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        assert torch.equal(recons(x), direct.reconstruction()(x))


def test_reconstruction_only_conversion_round_trips(files, tmp_path):
    _, _, rec_path, _ = files
    report = convert_official(rec_path, None, tmp_path / "recons")
    assert "samplenet" not in report.config
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        ours = ImplicitReconstruction.from_pretrained(tmp_path / "recons")(x)
        assert torch.equal(ours, load_official_reconstruction(rec_path)(x))
    with pytest.raises(CheckpointError, match=r"ImplicitReconstruction\.from_pretrained"):
        IRAD.from_pretrained(tmp_path / "recons")


@pytest.mark.parametrize(
    ("sizes", "encoder", "encoder_args"),
    [
        ({"n_resblocks": 1, "n_feats": 6, "hidden": (10, 12, 7)}, "edsr-baseline", {}),
        ({"n_resblocks": 3, "n_feats": 5, "hidden": (9,)}, "edsr", {"res_scale": 0.1}),
        ({"n_resblocks": 0, "n_feats": 4, "hidden": (8, 8, 8, 8)}, "edsr", {}),
    ],
)
def test_sizes_are_inferred_from_the_checkpoint(tmp_path, sizes, encoder, encoder_args):
    rec = official_reconstruction(encoder=encoder, encoder_args=encoder_args, **sizes)
    sn = official_samplenet(rec, hidden=(6, 6))
    irad = load_official(save(rec, tmp_path / "r.pt"), save(sn, tmp_path / "s.pt"))
    enc = irad.representation.config.encoder
    assert (enc.n_resblocks, enc.n_feats) == (sizes["n_resblocks"], sizes["n_feats"])
    # LIIF's `edsr` factory defaults res_scale to 0.1, `edsr-baseline` to 1
    assert enc.res_scale == (1.0 if encoder == "edsr-baseline" else 0.1)
    assert irad.representation.config.decoder_hidden == sizes["hidden"]
    assert irad.samplenet.config.hidden == (6, 6)
    assert irad.samplenet.encoder.config == enc
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(irad(x), ref_official(rec, sn, x)[0], atol=2e-5, rtol=0)


def test_wrapped_and_dataparallel_samplenet_files_load(files, tmp_path):
    _, sn, rec_path, sn_path = files
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        expected = load_official(rec_path, sn_path)(x)
        wrapped = save({"model": sn}, tmp_path / "wrapped.pt")  # what their test.py reads
        assert torch.equal(load_official(rec_path, wrapped)(x), expected)
        prefixed = save({f"module.{k}": v for k, v in sn.items()}, tmp_path / "dp.pt")
        assert torch.equal(load_official(rec_path, prefixed)(x), expected)


# -- bad layouts get errors that name the problem ---------------------------------------------


def _edit_rec(edit):
    def apply(rec, sn):
        edit(rec)
        return rec, sn

    return apply


def _edit_sn(edit):
    def apply(rec, sn):
        return rec, edit(sn) or sn

    return apply


def _args(rec):
    return rec["model"]["args"]


BAD_LAYOUTS = {
    "missing key": (
        _edit_rec(lambda r: r["model"]["sd"].pop("encoder.body.1.body.2.bias")),
        r"missing keys: encoder\.body\.1\.body\.2\.bias.*official layout",
    ),
    "unexpected name": (
        _edit_rec(lambda r: r["model"]["sd"].__setitem__("decoder.w", torch.zeros(1))),
        r"unexpected parameter names decoder\.w",
    ),
    "upsampling tail in the weights": (
        _edit_rec(lambda r: r["model"]["sd"].__setitem__("encoder.tail.0.weight", torch.zeros(1))),
        r"unexpected keys: encoder\.tail\.0\.weight",
    ),
    "wrong shape": (
        _edit_rec(
            lambda r: r["model"]["sd"].__setitem__("encoder.body.0.body.0.bias", torch.zeros(5))
        ),
        r"shape mismatches: encoder\.body\.0\.body\.0\.bias: checkpoint \(5,\) vs model \(4,\)",
    ),
    "integer tensor": (
        _edit_rec(
            lambda r: r["model"]["sd"].__setitem__("imnet.layers.0.bias", torch.zeros(8).long())
        ),
        r"imnet\.layers\.0\.bias has dtype torch\.int64",
    ),
    "local ensemble off": (
        _edit_rec(lambda r: _args(r).__setitem__("local_ensemble", False)),
        r"LIIF option\(s\) \['local_ensemble'\] are off",
    ),
    "unknown LIIF argument": (
        _edit_rec(lambda r: _args(r).__setitem__("pos_encoding", True)),
        r"unsupported LIIF arguments \['pos_encoding'\]",
    ),
    "other model": (
        _edit_rec(lambda r: r["model"].__setitem__("name", "metasr")),
        r"model 'metasr' is not supported",
    ),
    "other encoder": (
        _edit_rec(lambda r: _args(r)["encoder_spec"].__setitem__("name", "rdn")),
        r"encoder 'rdn' is not supported",
    ),
    "upsampling encoder": (
        _edit_rec(lambda r: _args(r)["encoder_spec"]["args"].__setitem__("no_upsampling", False)),
        r"no_upsampling=True",
    ),
    "args disagree with weights": (
        _edit_rec(lambda r: _args(r)["encoder_spec"]["args"].__setitem__("n_feats", 64)),
        r"args say n_feats=64 but the weights have 4",
    ),
    "hidden list disagrees": (
        _edit_rec(lambda r: _args(r)["imnet_spec"]["args"].__setitem__("hidden_list", [256])),
        r"hidden_list=\[256\] but the weights have \[8, 8\]",
    ),
    "no imnet": (
        _edit_rec(lambda r: _args(r).__setitem__("imnet_spec", None)),
        r"without an imnet",
    ),
    "not LIIF's save format": (
        lambda rec, sn: (rec["model"]["sd"], sn),
        r"expected LIIF's save format",
    ),
    "SampleNet with 3 outputs": (
        _edit_sn(lambda s: s.__setitem__("imnet.layers.4.weight", torch.zeros(3, 8))),
        r"SampleNet's MLP outputs 3 values, expected 2",
    ),
    "SampleNet from another reconstruction": (
        _edit_sn(lambda s: official_samplenet(official_reconstruction(n_resblocks=1))),
        r"1 blocks x 4 channels but the reconstruction's has 2 x 4.*do not belong together",
    ),
    "SampleNet layers not numbered like LIIF's MLP": (
        _edit_sn(lambda s: s.__setitem__("imnet.layers.5.weight", s.pop("imnet.layers.4.weight"))),
        r"numbered layers\.0, layers\.2",
    ),
    "SampleNet with a stray name": (
        _edit_sn(lambda s: s.__setitem__("offset_scale", torch.ones(1))),
        r"unexpected parameter names offset_scale",
    ),
    "reconstruction given as SampleNet": (
        lambda rec, sn: (rec, official_reconstruction()),
        r"LIIF model spec \(a Reconstruction\.pt\?\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_LAYOUTS))
def test_bad_layouts_are_refused_with_the_reason(tmp_path, case):
    edit, message = BAD_LAYOUTS[case]
    rec = official_reconstruction()
    rec, sn = edit(rec, official_samplenet(rec))
    with pytest.raises(CheckpointError, match=message):
        load_official(save(rec, tmp_path / "r.pt"), save(sn, tmp_path / "s.pt"))


def test_unsafe_or_unreadable_files_are_refused_without_unpickling(tmp_path, files):
    _, _, rec_path, _ = files
    module = save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module
    with pytest.raises(CheckpointError, match=r"other than tensors.*torch\.nn\.modules\.linear"):
        load_official(rec_path, module)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_official_reconstruction(tmp_path / "garbage.pt")
    data = (tmp_path / "Reconstruction.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_official_reconstruction(tmp_path / "truncated.pt")
    with pytest.raises(CheckpointError, match=r"SampleNet\.pt not found: .*nope\.pt"):
        load_official(rec_path, tmp_path / "nope.pt")


# -- the command --------------------------------------------------------------------------------


def test_convert_official_command(files, tmp_path):
    from typer.testing import CliRunner

    from irad.cli import app

    _, _, rec_path, sn_path = files
    out = tmp_path / "irad-official"
    args = ["convert-official", "-r", rec_path, "-s", sn_path, "--out", str(out)]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote IRAD checkpoint" in result.output and "identical to" in result.output
    assert IRAD.from_pretrained(out).preset == OFFICIAL_PRESET
    again = runner.invoke(app, args)
    assert isinstance(again.exception, InputError) and "--overwrite" in str(again.exception)
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    bad = runner.invoke(app, ["convert-official", "-r", sn_path, "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, CheckpointError)
    assert "bare state_dict" in str(bad.exception)
    help_text = runner.invoke(app, ["convert-official", "--help"], env={"COLUMNS": "120"}).output
    assert "Examples" in help_text and "weights_only" in help_text
