"""The implicit representation (EDSR + LIIF), SampleNet, the recons/IRAD defenses and stage 1/2."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from irad.defenses import IRAD, ImplicitReconstruction
from irad.defenses.base import DefendedClassifier
from irad.defenses.irad import build_irad
from irad.errors import CheckpointError, ConfigError, InputError
from irad.models.edsr import EDSR, EDSRConfig
from irad.models.implicit_presets import get_preset, preset_names
from irad.models.liif import FeatureField, ImplicitConfig, ImplicitRepresentation, local_ensemble
from irad.models.samplenet import SampleNet, SampleNetConfig
from irad.resample import bilinear_reconstruct, make_grid, pixel_to_normalized
from irad.resample.coordinates import make_coord, resize_grid
from irad.train.tasks import TASKS, build_task, task_names

TINY = ImplicitConfig(EDSRConfig(n_resblocks=1, n_feats=4), decoder_hidden=(8, 8))


def tiny_irad(seed: int = 0, **samplenet: object) -> IRAD:
    torch.manual_seed(seed)
    rep = ImplicitRepresentation(TINY)
    cfg = SampleNetConfig(hidden=(8, 8), **samplenet)  # type: ignore[arg-type]
    return IRAD(rep, preset=None, samplenet_config=cfg, chunk_size=64)


def liif_reference(feat, coord, cell, mlp):
    """LIIF's query written from its published algorithm: F.unfold + grid_sample(nearest)."""
    feat = F.unfold(feat, 3, padding=1).view(feat.shape[0], feat.shape[1] * 9, *feat.shape[-2:])
    h, w = feat.shape[-2:]
    fc = make_coord((h, w)).permute(2, 0, 1).unsqueeze(0).expand(feat.shape[0], 2, h, w)
    preds, areas = [], []
    for vx in (-1, 1):
        for vy in (-1, 1):
            c = coord.clone()
            c[:, :, 0] += vx / h + 1e-6
            c[:, :, 1] += vy / w + 1e-6
            c.clamp_(-1 + 1e-6, 1 - 1e-6)
            grid = c.flip(-1).unsqueeze(1)
            qf = F.grid_sample(feat, grid, mode="nearest", align_corners=False)[:, :, 0]
            qc = F.grid_sample(fc, grid, mode="nearest", align_corners=False)[:, :, 0]
            rel = coord - qc.permute(0, 2, 1)
            rel[:, :, 0] *= h
            rel[:, :, 1] *= w
            rc = cell.clone()
            rc[:, :, 0] *= h
            rc[:, :, 1] *= w
            preds.append(mlp(torch.cat([qf.permute(0, 2, 1), rel, rc], -1)))
            areas.append((rel[:, :, 0] * rel[:, :, 1]).abs() + 1e-9)
    total = torch.stack(areas).sum(0)
    return sum(p * (a / total).unsqueeze(-1) for p, a in zip(preds, areas[::-1], strict=True))


def identity_like_representation() -> ImplicitRepresentation:
    """Encoder = identity on the normalised input; MLP = the centre pixel of the 3x3 patch."""
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(n_resblocks=0, n_feats=3), (6,)))
    with torch.no_grad():
        for p in rep.parameters():
            p.zero_()
        head = rep.encoder.head[0]
        for c in range(3):
            head.weight[c, c, 1, 1] = 1.0
        first, last = rep.imnet.layers[0], rep.imnet.layers[2]
        for c in range(3):
            centre = c * 9 + 4  # F.unfold order: channel-major, centre tap 4
            first.weight[2 * c, centre] = 1.0  # relu(v) - relu(-v) = v
            first.weight[2 * c + 1, centre] = -1.0
            last.weight[c, 2 * c] = 1.0
            last.weight[c, 2 * c + 1] = -1.0
    return rep


# -- encoder / decoder ------------------------------------------------------------------------


def test_parameter_names_follow_liif():
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(2, 4), (8, 8, 8, 8)))
    names = set(rep.state_dict())
    assert {
        "encoder.head.0.weight",
        "encoder.body.0.body.0.weight",
        "encoder.body.1.body.2.bias",
    } <= names
    assert "encoder.body.2.weight" in names  # the body conv after the residual blocks
    assert {f"imnet.layers.{k}.weight" for k in (0, 2, 4, 6, 8)} <= names
    assert rep.imnet.layers[0].in_features == 9 * 4 + 4
    assert EDSR(EDSRConfig(3, 5))(torch.rand(2, 3, 7, 9)).shape == (2, 5, 7, 9)


@pytest.mark.parametrize("fast", [False, True])
def test_local_ensemble_matches_liif_reference_anywhere(fast):
    torch.manual_seed(0)
    rep = ImplicitRepresentation(TINY)
    feat = rep.encode(torch.rand(2, 3, 5, 7))
    coord = torch.rand(2, 40, 2) * 2.6 - 1.3  # inside and outside the image
    cell = torch.rand(2, 40, 2) * 0.5
    ours = local_ensemble(FeatureField(feat), coord, cell, rep.imnet, chunk_size=None, fast=fast)
    ref = liif_reference(feat, coord.clone(), cell.clone(), rep.imnet)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_unfolded_features_equal_f_unfold():
    feat = torch.rand(2, 3, 4, 5)
    field = FeatureField(feat)
    i, j = torch.meshgrid(torch.arange(4), torch.arange(5), indexing="ij")
    i, j = i.reshape(1, -1).expand(2, -1), j.reshape(1, -1).expand(2, -1)
    ours = field.unfolded_at(i, j)
    ref = F.unfold(feat, 3, padding=1).transpose(1, 2)
    assert torch.equal(ours, ref)


def test_identity_like_model_returns_input_at_pixel_centres():
    rep = identity_like_representation()
    x = torch.rand(2, 3, 6, 5)  # non-square
    out = rep(x, chunk_size=None)
    # Every pixel but the last row and column: the nearest centre's value, to float precision.
    torch.testing.assert_close(out[..., :-1, :-1], x[..., :-1, :-1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[..., -1, -1], x[..., -1, -1], atol=1e-6, rtol=0)
    # LIIF's border rule (kept for its checkpoints): on the last row / column the clamped
    # look-ups make all four areas vanish, so the two distinct neighbours are averaged.
    torch.testing.assert_close(
        out[..., -1, :-1], (x[..., -1, :-1] + x[..., -1, 1:]) / 2, atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        out[..., :-1, -1], (x[..., :-1, -1] + x[..., 1:, -1]) / 2, atol=1e-6, rtol=0
    )
    feat = rep.encode(x)
    centres = make_grid(6, 5).view(1, -1, 2).expand(2, -1, -1)
    colours = rep.query(feat, centres).transpose(1, 2).reshape(2, 3, 6, 5)
    torch.testing.assert_close(colours, out, atol=1e-6, rtol=0)


def test_identity_like_model_blends_like_bilinear_between_centres():
    # With the identity MLP, LIIF's swapped area weights are exactly the bilinear weights.
    rep = identity_like_representation()
    x = torch.rand(1, 3, 6, 7)
    pts = torch.rand(1, 5, 4, 2) * torch.tensor([4.0, 5.0]) + 0.5  # interior points
    got = rep.query(rep.encode(x), pts.view(1, -1, 2)).view(1, 5, 4, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, bilinear_reconstruct(x, pts), atol=1e-6, rtol=0)
    # a query a quarter pixel from a centre is dominated by that pixel
    near = rep.query(rep.encode(x), torch.tensor([[[2.25, 3.0]]]))
    expected = 0.75 * x[0, :, 2, 3] + 0.25 * x[0, :, 3, 3]
    torch.testing.assert_close(near[0, 0], expected, atol=1e-6, rtol=0)


def test_chunked_and_unchunked_queries_agree_on_non_square_images():
    torch.manual_seed(1)
    rep = ImplicitRepresentation(TINY)
    x = torch.rand(2, 3, 9, 5)
    full = rep(x, chunk_size=None)
    for chunk in (1, 7, 64):
        torch.testing.assert_close(rep(x, chunk_size=chunk), full, atol=1e-6, rtol=1e-5)
    assert rep(x, size=(18, 10)).shape == (2, 3, 18, 10)


def test_resize_grid_and_pixel_convention():
    coords, cell = resize_grid((4, 6), (2, 3))
    assert torch.allclose(cell, torch.tensor([0.5, 0.5]))
    # HR pixel (I, J) lies at ((I + 0.5) / 2 - 0.5, (J + 0.5) / 2 - 0.5) in LR pixels
    assert torch.allclose(coords[0, 0], torch.tensor([-0.25, -0.25]))
    assert torch.allclose(coords[3, 5], torch.tensor([1.25, 2.25]))
    same, one = resize_grid((3, 4), (3, 4))
    assert torch.equal(same, make_grid(3, 4)) and torch.equal(one, torch.ones(2))
    assert torch.allclose(make_coord((3, 4)), pixel_to_normalized(make_grid(3, 4), (3, 4)))


def test_presets_are_data_with_the_paper_sizes():
    assert set(preset_names()) >= {"paper", "cpu"}
    paper, cpu = get_preset("paper"), get_preset("cpu")
    assert (paper.encoder_blocks, paper.encoder_channels) == (16, 64)
    assert paper.decoder_hidden == paper.samplenet_hidden == (256, 256, 256, 256)
    assert (paper.inr.lr, paper.inr.betas, paper.inr.batch_size) == (1e-4, (0.0, 0.9), 128)
    assert (paper.samplenet.lr, paper.samplenet.batch_size) == (2e-4, 400)
    assert cpu.encoder_channels < paper.encoder_channels
    json.dumps(cpu.to_dict())
    assert "preset cpu" in cpu.summary()
    with pytest.raises(ConfigError, match="paper"):
        get_preset("papr")


# -- tasks ---------------------------------------------------------------------------------------


def test_each_task_transform_on_tiny_tensors():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 8, 6)
    adv = (clean + 0.03).clamp(0, 1)
    assert task_names() == [
        "clean2clean",
        "super-resolution",
        "inpainting",
        "gaussian-denoising",
        "pgd-denoising",
    ]
    for name in task_names():
        b = build_task(name)(clean, adv, generator=g)
        assert b.coords.shape == (2, 48, 2) and b.targets.shape == (2, 48, 3)
        torch.testing.assert_close(b.targets, clean.flatten(2).transpose(1, 2))
        assert float(b.inputs.min()) >= 0 and float(b.inputs.max()) <= 1

    assert torch.equal(build_task("clean2clean")(clean).inputs, clean)
    assert torch.equal(build_task("pgd")(clean, adv).inputs, adv)
    with pytest.raises(InputError, match="adversarial"):
        build_task("pgd-denoising")(clean)

    sr = build_task("sr", method="area")(clean)
    assert torch.allclose(sr.inputs, F.avg_pool2d(clean, 2))
    assert torch.allclose(sr.cells, torch.full_like(sr.cells, 0.5))
    assert torch.allclose(sr.coords[0, 7], torch.tensor([0.25, 0.25]))  # HR pixel (1, 1)
    assert torch.allclose(sr.coords[0, 0], torch.tensor([-0.25, -0.25]))  # HR pixel (0, 0)
    assert build_task("super-resolution")(clean).inputs.shape == (2, 3, 4, 3)

    inp = build_task("inpainting", fill=0.0)
    mask = inp.masks(clean, torch.Generator().manual_seed(3))
    out = inp(clean, generator=torch.Generator().manual_seed(3)).inputs
    assert mask.any() and not mask.all()
    assert torch.equal(out, torch.where(mask, torch.zeros_like(clean), clean))

    noisy = build_task("gaussian", sigma=25.5)(torch.full((4, 3, 16, 16), 0.5), generator=g)
    assert abs(float((noisy.inputs - 0.5).std()) - 0.1) < 0.01


def test_sample_q_picks_matching_random_pixels_per_image():
    clean = torch.rand(2, 3, 5, 4)
    b = build_task("clean2clean", sample_q=6)(clean, generator=torch.Generator().manual_seed(0))
    assert b.coords.shape == (2, 6, 2)
    for k in range(2):
        rows, cols = b.coords[k].long().unbind(-1)
        assert torch.equal(b.targets[k], clean[k, :, rows, cols].T)
        assert len(set((rows * 4 + cols).tolist())) == 6
    assert not torch.equal(b.coords[0], b.coords[1])
    again = build_task("clean2clean", sample_q=6)(clean, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.coords, b.coords)
    with pytest.raises(ConfigError):
        TASKS.build("clean2clean", sample_q=0)


# -- SampleNet and the defenses ---------------------------------------------------------------


def test_untrained_samplenet_gives_exactly_the_disco_style_output():
    irad = tiny_irad()
    x = torch.rand(2, 3, 7, 6)
    assert torch.equal(irad.shifts(x), torch.zeros(2, 7, 6, 2))
    assert torch.equal(irad.sample_points(x)[0], make_grid(7, 6))
    assert torch.equal(irad(x), irad.reconstruction()(x))
    assert irad.stochastic is False and irad.differentiable is True


@pytest.mark.parametrize("units", ["pixel", "normalized"])
def test_shift_moves_the_sample_point_by_the_documented_amount(units):
    irad = tiny_irad(shift_units=units)
    h, w = 6, 8
    want = torch.tensor([1.0, -0.5])  # pixels
    bias = want if units == "pixel" else want * torch.tensor([2.0 / h, 2.0 / w])
    with torch.no_grad():
        irad.samplenet.imnet.last.bias.copy_(bias)  # zero weights: a constant shift
    x = torch.rand(1, 3, h, w)
    torch.testing.assert_close(irad.shifts(x)[0], want.expand(h, w, 2), atol=1e-5, rtol=0)
    points = irad.sample_points(x)[0]
    torch.testing.assert_close(points, make_grid(h, w) + want, atol=1e-5, rtol=0)
    rep = irad.representation
    expected = rep.query(rep.encode(x), points.view(1, -1, 2)).view(1, h, w, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(irad(x), expected, atol=1e-5, rtol=0)


def test_gradients_flow_to_the_input_and_to_samplenet():
    irad = tiny_irad()
    with torch.no_grad():
        irad.samplenet.imnet.last.weight.normal_(0, 0.1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    DefendedClassifier(irad, net)(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert irad.samplenet.imnet.layers[0].weight.grad.abs().sum() > 0
    # the stage-2 path: frozen features, checkpointed chunks, gradient still reaches SampleNet
    irad.zero_grad()
    out = irad.resample(x.detach(), frozen_representation=True, checkpoint=True)
    out.sum().backward()
    assert irad.samplenet.imnet.layers[0].weight.grad.abs().sum() > 0
    assert irad.representation.encoder.head[0].weight.grad is None


@pytest.mark.parametrize("layout", ["shared", "official"])
def test_save_and_from_pretrained_reproduce_the_output_bit_for_bit(tmp_path, layout):
    kw = {} if layout == "shared" else SampleNetConfig.official((8, 8)).to_dict()
    kw.pop("hidden", None)
    irad = tiny_irad(**kw)
    with torch.no_grad():
        irad.samplenet.imnet.last.weight.normal_(0, 0.01)
    x = torch.rand(2, 3, 5, 7)
    irad.save_pretrained(tmp_path / "irad")
    loaded = IRAD.from_pretrained(tmp_path / "irad")
    assert torch.equal(loaded(x), irad(x))
    assert loaded.samplenet.config == irad.samplenet.config
    saved = json.loads((tmp_path / "irad" / "model.json").read_text())
    assert saved["format"] == "irad.irad"
    assert saved["config"]["representation"]["encoder"]["n_feats"] == 4

    recons = irad.reconstruction()
    recons.save_pretrained(tmp_path / "recons")
    assert torch.equal(ImplicitReconstruction.from_pretrained(tmp_path / "recons")(x), recons(x))
    # the representation inside an IRAD checkpoint also loads as the DISCO-style defense
    assert torch.equal(ImplicitReconstruction.from_pretrained(tmp_path / "irad")(x), recons(x))


def test_wrong_preset_and_bad_checkpoints_give_clear_errors(tmp_path):
    torch.manual_seed(0)
    cpu = ImplicitReconstruction(preset="cpu")
    cpu.save_pretrained(tmp_path / "cpu")
    with pytest.raises(CheckpointError, match=r"preset 'cpu'.*'paper' was requested"):
        ImplicitReconstruction.from_pretrained(tmp_path / "cpu", preset="paper")
    paper = ImplicitReconstruction(preset="paper")
    with pytest.raises(CheckpointError, match="preset 'cpu' weights but this model has preset"):
        paper.load_weights(tmp_path / "cpu")
    with pytest.raises(CheckpointError, match=r"ImplicitReconstruction\.from_pretrained"):
        IRAD.from_pretrained(tmp_path / "cpu")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        IRAD.from_pretrained(tmp_path / "missing")
    (tmp_path / "cpu" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        ImplicitReconstruction.from_pretrained(tmp_path / "cpu")


def test_bad_input_gets_a_clear_error():
    irad = tiny_irad()
    with pytest.raises(InputError, match="grayscale"):
        irad(torch.rand(1, 1, 8, 8))
    with pytest.raises(InputError, match="divide by 255"):
        irad(torch.rand(1, 3, 8, 8) * 255)
    with pytest.raises(InputError, match=r"\(B, Q, 2\)"):
        irad.representation.query(torch.rand(1, 4, 3, 3), torch.rand(1, 5, 3))


def test_registration_builds_both_defenses_by_name(tmp_path):
    from irad.defenses import DEFENSES as registry

    assert {"recons", "disco", "irad"} <= set(registry.names())
    assert isinstance(registry.build("disco", checkpoint=None), ImplicitReconstruction)
    irad = tiny_irad()
    irad.save_pretrained(tmp_path)
    built = registry.build("irad", checkpoint=str(tmp_path))
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(built(x), irad(x))
    assert build_irad(checkpoint=str(tmp_path)).config()["name"] == "irad"


def test_samplenet_standalone_has_zero_output_and_own_encoder_when_asked():
    net = SampleNet(4, SampleNetConfig(hidden=(8,), shared_encoder=False), encoder=TINY.encoder)
    assert any(k.startswith("encoder.head") for k in net.state_dict())
    g = make_coord((3, 3)).view(1, -1, 2)
    feat = net.encode(torch.rand(1, 3, 3, 3))
    assert torch.equal(net(FeatureField(feat), g, torch.ones_like(g)), torch.zeros(1, 9, 2))
    with pytest.raises(ConfigError):
        SampleNetConfig(shift_units="meters")  # type: ignore[arg-type]


# -- stage 1 and stage 2 objectives ------------------------------------------------------------


def test_three_training_steps_on_synthetic_data_lower_the_loss():
    from irad.data import ImageDataset
    from irad.train.inr import ImplicitRepresentationObjective

    torch.manual_seed(0)
    images = torch.randint(0, 256, (8, 6, 6, 3), dtype=torch.uint8)
    data = ImageDataset(images, torch.zeros(8, dtype=torch.long))
    rep = ImplicitRepresentation(TINY)
    objective = ImplicitRepresentationObjective(rep, data, "clean2clean", batch_size=8)
    batch = next(objective.batches(0, torch.Generator().manual_seed(0), 0))
    opt = torch.optim.Adam(rep.parameters(), lr=1e-2, betas=(0.0, 0.9))
    losses = []
    for _ in range(3):
        loss, metrics = objective.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert set(metrics) == {"l1"}
    assert float(objective.loss(batch)[0].detach()) < losses[0]
    with pytest.raises(ConfigError, match="pairs"):
        ImplicitRepresentationObjective(rep, data, "pgd-denoising", batch_size=8)


def test_both_stages_run_on_the_one_trainer_and_save_loadable_models(tmp_path):
    from irad.data import ImageDataset
    from irad.train import TrainConfig, Trainer
    from irad.train.inr import ImplicitRepresentationObjective
    from irad.train.pairs import PairConfig, PairDataset, generate_pairs
    from irad.train.samplenet import SampleNetObjective

    torch.manual_seed(0)
    data = ImageDataset(torch.randint(0, 256, (8, 6, 6, 3), dtype=torch.uint8), torch.arange(8) % 3)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 3))
    generate_pairs(net, data.x, data.y, tmp_path / "pairs", PairConfig(steps=1), progress=False)
    pairs = PairDataset(tmp_path / "pairs", data)

    def config(out: str, batch: int, lr: float) -> TrainConfig:
        return TrainConfig(
            epochs=1, batch_size=batch, lr=lr, optimizer="adam", betas=(0.0, 0.9),
            weight_decay=0.0, schedule="constant", out_dir=tmp_path / out, progress=False,
            device="cpu", checkpoint_minutes=None,
        )  # fmt: skip

    rep = ImplicitRepresentation(TINY)
    stage1 = ImplicitRepresentationObjective(
        rep, pairs, ["pgd", "sr"], batch_size=4, sample_q=9, eval_data=pairs, eval_n=4
    )
    s1 = Trainer(stage1, config("inr", 4, 1e-3)).fit()
    assert "psnr_recons_adv" in s1["final"]
    recons = ImplicitReconstruction.from_pretrained(tmp_path / "inr")
    assert torch.equal(recons.representation.state_dict()["imnet.layers.0.weight"],
                       rep.state_dict()["imnet.layers.0.weight"])  # fmt: skip

    irad = IRAD.from_representation(recons, samplenet_config=SampleNetConfig(hidden=(8,)))
    stage2 = SampleNetObjective(irad, net, pairs, batch_size=8, eval_pairs=pairs, eval_n=4)
    s2 = Trainer(stage2, config("irad", 8, 1e-2)).fit()
    assert "acc_irad_adv" in s2["final"]
    loaded = IRAD.from_pretrained(tmp_path / "irad")
    x = torch.rand(1, 3, 6, 6)
    assert torch.equal(loaded(x), irad(x))
    assert loaded.shifts(x).abs().sum() > 0  # SampleNet moved away from zero
    assert all(not p.requires_grad for p in irad.representation.parameters())


# -- the bilinear skip (cpu preset) ------------------------------------------------------------


def test_bilinear_skip_with_a_silent_decoder_is_bilinear_resampling():
    torch.manual_seed(0)
    cfg = ImplicitConfig(EDSRConfig(n_resblocks=1, n_feats=4), (8, 8), skip="bilinear")
    rep = ImplicitRepresentation(cfg)
    with torch.no_grad():
        rep.imnet.last.weight.zero_()
        rep.imnet.last.bias.zero_()
    x = torch.rand(2, 3, 6, 7)
    # at the pixel centres the skip is the input itself
    torch.testing.assert_close(rep(x), x, atol=1e-6, rtol=0)
    # anywhere inside, it is bilinear interpolation, with the gradient reaching the points
    pts = (torch.rand(2, 4, 5, 2) * torch.tensor([5.0, 6.0])).requires_grad_()
    got = rep.query(rep.field(x), pts.view(2, -1, 2)).view(2, 4, 5, 3).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, bilinear_reconstruct(x, pts.detach()), atol=1e-6, rtol=0)
    got.sum().backward()
    assert pts.grad is not None and pts.grad.abs().sum() > 0
    # the skip needs the image: features alone are refused with a message saying what to do
    with pytest.raises(InputError, match=r"rep\.field\(x\)"):
        rep.query(rep.encode(x), pts.detach().view(2, -1, 2))
    assert ImplicitConfig.from_dict(cfg.to_dict()) == cfg
    assert "skip" not in TINY.to_dict()  # configs without a skip stay as they were
    with pytest.raises(ConfigError, match="skip"):
        ImplicitConfig(skip="nearest")


def test_skip_model_irad_round_trips_and_zero_shift_is_disco(tmp_path):
    torch.manual_seed(0)
    rep = ImplicitRepresentation(
        ImplicitConfig(EDSRConfig(n_resblocks=1, n_feats=4), (8, 8), skip="bilinear")
    )
    irad = IRAD(rep, preset=None, samplenet_config=SampleNetConfig(hidden=(8, 8)), chunk_size=64)
    x = torch.rand(2, 3, 5, 6)
    assert torch.equal(irad(x), irad.reconstruction()(x))
    with torch.no_grad():
        irad.samplenet.imnet.last.weight.normal_(0, 0.05)
    irad.save_pretrained(tmp_path)
    loaded = IRAD.from_pretrained(tmp_path)
    assert loaded.representation.config.skip == "bilinear"
    assert torch.equal(loaded(x), irad(x))
    assert not torch.equal(irad(x), irad.reconstruction()(x))


# -- the weights shipped in the package --------------------------------------------------------


def test_bundled_weights_load_offline_and_defend_the_bundled_classifier():
    from irad.checkpoint import bundled_weights_dir
    from irad.models import load_classifier

    irad = IRAD.from_pretrained("cifar10")
    recons = ImplicitReconstruction.from_pretrained("cifar10")
    clf = load_classifier("cifar10")
    assert irad.preset == "cpu" and clf.config["arch"] == "resnet20"
    for stem in ("irad-cifar10", "classifier-cifar10"):
        meta = json.loads((bundled_weights_dir() / f"{stem}.json").read_text())["metadata"]
        assert meta["provenance"]["trained_by"].startswith("irad")
        assert meta["provenance"]["command"]
    x = torch.rand(2, 3, 32, 32)
    out = irad(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # trained: IRAD is not the identity and differs from its own representation alone
    assert (out - x).abs().mean() > 1e-3
    assert not torch.equal(out, recons(x))
    assert clf(irad(x)).shape == (2, 10)


def test_recons_with_naive_sampling_queries_the_shifted_grid(tmp_path):
    from irad.defenses import build_defense

    rep = identity_like_representation()
    ImplicitReconstruction(rep, preset=None).save_pretrained(tmp_path)
    x = torch.rand(1, 3, 8, 8)
    si = build_defense("recons", checkpoint=str(tmp_path), sampling="si", shift=0.5)
    assert si.stochastic is False and si.config()["sampling"] == "si"
    # the identity-like model blends like bilinear between centres (interior pixels)
    expected = bilinear_reconstruct(x, make_grid(8, 8).unsqueeze(0) + 0.5)
    torch.testing.assert_close(si(x)[..., :-2, :-2], expected[..., :-2, :-2], atol=1e-6, rtol=0)
    sv = build_defense("recons", checkpoint=str(tmp_path), sampling="sv", shift=1.5, seed=3)
    assert sv.stochastic is True
    assert not torch.equal(sv(x), sv(x))  # a fresh draw per call
    rebuilt = build_defense("recons", **{k: v for k, v in sv.config().items() if k != "name"})
    assert rebuilt.config() == sv.config()


@pytest.mark.parametrize("render", ["bilinear", "nearest"])
def test_samplenet_with_a_naive_reconstruction_renders_the_input_at_u(render, tmp_path):
    from irad.resample import reconstruct

    irad = tiny_irad(render=render)
    h, w = 6, 8
    with torch.no_grad():
        irad.samplenet.imnet.last.bias.copy_(torch.tensor([0.25, -0.5]))  # constant shift
    x = torch.rand(2, 3, h, w)
    pts = make_grid(h, w).expand(2, h, w, 2) + torch.tensor([0.25, -0.5])
    torch.testing.assert_close(irad(x), reconstruct(x, pts, render), atol=1e-5, rtol=0)
    irad.save_pretrained(tmp_path)
    loaded = IRAD.from_pretrained(tmp_path)
    assert loaded.samplenet.config.render == render and torch.equal(loaded(x), irad(x))
    # bilinear passes a gradient to SampleNet, nearest none (why Table 15's nearest row fails)
    irad.zero_grad()
    out = irad.resample(x, frozen_representation=True)
    if render == "nearest":
        assert not out.requires_grad
    else:
        out.sum().backward()
        assert irad.samplenet.imnet.last.bias.grad.abs().sum() > 0


# -- coordinate maths lives in irad.resample.coordinates ----------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (8, 8), (7, 32)])
def test_length_conversions_invert_and_match_the_grids(size):
    from irad.resample.coordinates import (
        length_to_normalized,
        length_to_pixel,
        liif_normalize,
        normalized_cell,
    )

    h, w = size
    d = torch.randn(10, 2, dtype=torch.float64)
    assert torch.allclose(length_to_pixel(length_to_normalized(d, size), size), d)
    # a shift of d pixels moves a point by d pixels in either unit system
    p = make_grid(h, w, dtype=torch.float64)
    shift = torch.tensor([0.75, -1.25], dtype=torch.float64)
    moved = pixel_to_normalized(p + shift, size) - pixel_to_normalized(p, size)
    assert torch.allclose(moved, length_to_normalized(shift, size).expand_as(moved))
    # the cell of one pixel is the spacing of LIIF's grid, whose formula is liif_normalize's
    grid = make_coord(size)
    assert torch.equal(liif_normalize(make_grid(h, w), size), grid)
    cell = normalized_cell(size)
    if h > 1:
        assert torch.allclose(grid[1, 0, 0] - grid[0, 0, 0], cell[0])
    if w > 1:
        assert torch.allclose(grid[0, 1, 1] - grid[0, 0, 1], cell[1])


def test_models_and_defenses_convert_no_units_inline():
    from pathlib import Path

    import irad

    root = Path(irad.__file__).parent
    for rel in ("defenses/irad.py", "defenses/reconstruction.py", "models/liif.py"):
        source = (root / rel).read_text()
        for pattern in ("2.0 /", "/ 2.0", "* 2 /", "def make_coord", "def liif_normalize"):
            assert pattern not in source, (rel, pattern)


def test_pixel_and_normalized_shift_units_give_the_same_sample_points():
    pixel = tiny_irad()
    with torch.no_grad():
        pixel.samplenet.imnet.last.bias.copy_(torch.tensor([0.5, -1.0]))  # pixels
    x = torch.rand(1, 3, 4, 8)
    normalized = tiny_irad(shift_units="normalized")
    with torch.no_grad():
        normalized.samplenet.imnet.last.bias.copy_(torch.tensor([0.5 * 2 / 4, -1.0 * 2 / 8]))
    assert torch.allclose(pixel.shifts(x), normalized.shifts(x))
    assert torch.allclose(pixel.sample_points(x), make_grid(4, 8) + torch.tensor([0.5, -1.0]))
    assert torch.allclose(pixel(x), normalized(x), atol=1e-6)


# -- one dtype policy for every defense (irad.defenses.base) ------------------------------------


def _registered_defenses() -> list[str]:
    from irad.defenses import DEFENSES

    names, seen = [], []
    for name in sorted(DEFENSES.names()):
        factory = DEFENSES.get(name)
        if all(factory is not other for other in seen):
            seen.append(factory)
            names.append(name)
    return names


@pytest.mark.parametrize("name", _registered_defenses())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_every_defense_takes_any_float_dtype_and_returns_it(name, dtype):
    from irad.defenses import build_defense
    from irad.errors import IradError

    try:
        defense = build_defense(name)  # the implicit defenses load the bundled cifar10 weights
    except (IradError, ImportError) as err:
        pytest.skip(f"{name} cannot be built offline with its defaults: {err}")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16).to(dtype)
    out = defense(x)
    assert out.dtype == dtype and out.shape == x.shape
    assert torch.isfinite(out.float()).all() and out.min() >= 0 and out.max() <= 1
    if not defense.stochastic:  # computed in the defense's float32, from the same values
        assert torch.equal(out, defense(x.float()).to(dtype))
    if dtype == torch.float64 and defense.differentiable:
        x = x.clone().requires_grad_(True)
        defense(x).sum().backward()
        assert x.grad is not None and x.grad.dtype == torch.float64
        assert torch.isfinite(x.grad).all()
