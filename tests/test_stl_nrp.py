"""STL (convolutional sparse coding) and NRP (a purifier against self-supervised perturbations):
shapes, ranges, the solver's convergence, training on the one trainer, checkpoints and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from irad.data import ImageDataset
from irad.defenses import NRP, STL, build_defense, build_defense_spec
from irad.errors import CheckpointError, ConfigError, InputError, IradError
from irad.models import build_classifier
from irad.models.nrp import Purifier, PurifierConfig
from irad.models.sparse_coding import (
    ConvSparseCoder,
    SparseCodingConfig,
    analyze,
    lipschitz_bound,
    synthesize,
    tikhonov_split,
)
from irad.train import TrainConfig, Trainer
from irad.train.nrp import LayerFeatures, NRPObjective, ssp_attack
from irad.train.stl import DictionaryObjective


def _images(n: int = 16, size: int = 16, seed: int = 0) -> ImageDataset:
    """Smooth random images with some edges (a stand-in for CIFAR-10)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)
    x = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    x = (x + 0.1 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)
    return ImageDataset((x.permute(0, 2, 3, 1) * 255).round().to(torch.uint8), torch.arange(n) % 3)


def _tiny_coder(seed: int = 0) -> ConvSparseCoder:
    torch.manual_seed(seed)
    return ConvSparseCoder(SparseCodingConfig.from_preset("tiny"))


def _tiny_purifier(seed: int = 0) -> Purifier:
    torch.manual_seed(seed)
    return Purifier(PurifierConfig.from_preset("tiny"))


# -- the sparse coder --------------------------------------------------------------------------


def test_analyze_is_the_adjoint_of_synthesize() -> None:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(4, 3, 3, generator=g)
    z = torch.randn(2, 4, 10, 10, generator=g)
    r = torch.randn(2, 1, 8, 8, generator=g)
    lhs = (synthesize(z, d) * r).sum()
    rhs = (z * analyze(r, d)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-4)


def test_lipschitz_bound_bounds_the_operator_norm() -> None:
    d = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(1))
    z = torch.randn(1, 4, 18, 18, generator=torch.Generator().manual_seed(2))
    for _ in range(50):  # power iteration on S^T S
        z = analyze(synthesize(z, d), d)
        z = z / z.norm()
    norm_sq = synthesize(z, d).pow(2).sum()
    assert norm_sq <= lipschitz_bound(d)


def test_tikhonov_split_sums_to_the_input_and_keeps_constants_low() -> None:
    x = torch.rand(2, 3, 12, 12)
    low, high = tikhonov_split(x, 5.0, pad=16)  # the pad is capped at the side
    assert torch.allclose(low + high, x, atol=1e-6)
    flat = torch.full((1, 3, 8, 8), 0.3)
    low, high = tikhonov_split(flat, 5.0)
    assert high.abs().max() < 1e-5


def test_reconstruction_error_falls_with_iterations() -> None:
    coder = _tiny_coder()
    _, high = coder.split(torch.stack([x for x, _ in _images(4)]))
    errors, objectives = [], []
    coder.requires_grad_(False)
    for steps in (1, 5, 20, 80):
        z = coder.encode(high, steps)
        errors.append(float((coder.decode(z) - high).pow(2).mean()))
        objectives.append(float(coder.objective(high, z).mean()))
    assert objectives == sorted(objectives, reverse=True) and objectives[-1] < objectives[0]
    assert errors[-1] < errors[0]
    # FISTA from z = 0 with a positive λ gives codes with many exact zeros
    assert float((coder.encode(high) == 0).float().mean()) > 0.2


def test_stl_shapes_ranges_dtype_and_gradients() -> None:
    stl = STL(_tiny_coder())
    assert not stl.stochastic and stl.differentiable
    x = torch.rand(2, 3, 16, 12, dtype=torch.float64, requires_grad=True)
    out = stl(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    out.sum().backward()  # the adaptive threat differentiates through the solver
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in stl.parameters())
    # deterministic
    assert torch.equal(stl(x.detach()), stl(x.detach()))


def test_stl_reconstruction_is_close_to_a_clean_image() -> None:
    coder = _tiny_coder()
    x = torch.stack([x for x, _ in _images(4)])
    out = STL(coder)(x)
    assert float((out - x).pow(2).mean()) < float((x - x.mean()).pow(2).mean())


def test_stl_overrides_do_not_touch_the_callers_coder() -> None:
    coder = _tiny_coder()
    stl = STL(coder, iterations=3, lmbda=0.5)
    assert stl.config()["iterations"] == 3 and stl.config()["lmbda"] == 0.5
    assert coder.config.iterations == 10


# -- the purifier ------------------------------------------------------------------------------


def test_purifier_starts_at_the_identity_and_nrp_clamps() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(_tiny_purifier()(x), x)
    nrp = NRP(_tiny_purifier())
    assert not nrp.stochastic and nrp.differentiable
    with torch.no_grad():
        nrp.purifier.tail.bias.fill_(2.0)
    out = nrp(x)
    assert out.shape == x.shape and float(out.max()) <= 1 and float(out.min()) >= 0


def test_rrdb_purifier_runs() -> None:
    net = Purifier(PurifierConfig(channels=8, blocks=1, block="rrdb", growth=4))
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_ssp_attack_stays_in_the_ball_and_distorts_features() -> None:
    torch.manual_seed(0)
    features = LayerFeatures(build_classifier("resnet20"), "net.layer2")
    x = torch.stack([x for x, _ in _images(4, 32)])
    eps = 8 / 255
    g = torch.Generator().manual_seed(0)
    adv = ssp_attack(features, x, eps=eps, steps=3, step_size=2 / 255, noise_std=0.02, generator=g)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    noisy = (x + eps * torch.randn(x.shape, generator=g).sign()).clamp(0, 1)
    with torch.no_grad():
        target = features(x)
        ssp_distortion = (features(adv) - target).pow(2).mean()
        random_distortion = (features(noisy) - target).pow(2).mean()
    assert ssp_distortion > random_distortion


# -- training on the one trainer ---------------------------------------------------------------


def _fixed_loss(objective, batch) -> float:
    with torch.no_grad():
        return float(objective.loss(batch)[0])


def test_three_steps_of_dictionary_learning_lower_the_objective(tmp_path) -> None:
    data = _images(8)
    objective = DictionaryObjective(_tiny_coder(), data, data, batch_size=8, crop=8)
    batch = next(objective.batches(0, torch.Generator().manual_seed(0), 0))
    before = _fixed_loss(objective, batch)
    config = TrainConfig(
        epochs=3, batch_size=8, lr=0.05, optimizer="adam", weight_decay=0.0, schedule="constant",
        out_dir=str(tmp_path / "run"), device="cpu", progress=False, checkpoint_minutes=None,
    )  # fmt: skip
    summary = Trainer(objective, config).fit()
    assert summary["global_step"] == 3
    assert _fixed_loss(objective, batch) < before
    norms = objective.model.dictionary.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)  # back on the unit sphere
    loaded = ConvSparseCoder.from_pretrained(tmp_path / "run" / "model")
    assert torch.equal(loaded.dictionary, objective.model.dictionary)
    assert loaded.checkpoint_metadata["training"]["objective"] == "stl-dictionary"
    assert "eval_psnr" in loaded.checkpoint_metadata["training"]["last_evaluation"]
    # the run folder is a checkpoint the defense loads by name
    stl = build_defense_spec(f"stl:checkpoint={tmp_path / 'run'},iterations=4")
    assert isinstance(stl, STL) and stl.config()["iterations"] == 4


def test_three_steps_of_nrp_training_lower_the_loss(tmp_path) -> None:
    torch.manual_seed(0)
    extractor = build_classifier("resnet20")
    data = _images(8, 32)
    objective = NRPObjective(
        _tiny_purifier(), extractor, data, data.subset(4), batch_size=8, ssp_steps=1,
        ssp_step_size=8 / 255, augment=False,
    )  # fmt: skip
    batch = next(objective.batches(0, torch.Generator().manual_seed(0), 0))
    before = _fixed_loss(objective, batch)
    config = TrainConfig(
        epochs=3, batch_size=8, lr=1e-3, optimizer="adam", weight_decay=0.0, schedule="constant",
        out_dir=str(tmp_path / "run"), device="cpu", progress=False, checkpoint_minutes=None,
    )  # fmt: skip
    summary = Trainer(objective, config).fit()
    assert summary["global_step"] == 3
    assert _fixed_loss(objective, batch) < before
    assert not any(p.requires_grad for p in extractor.parameters())  # the extractor is frozen
    loaded = Purifier.from_pretrained(tmp_path / "run")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), objective.model.eval()(x))
    training = loaded.checkpoint_metadata["training"]
    assert training["extractor"]["layer"] == "net.layer2" and training["ssp"]["steps"] == 1
    nrp = build_defense("nrp", checkpoint=str(tmp_path / "run" / "model"))
    assert nrp(x).shape == x.shape


# -- checkpoints -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stl", "nrp"])
def test_checkpoint_round_trip(kind: str, tmp_path) -> None:
    model = _tiny_coder(3) if kind == "stl" else _tiny_purifier(3)
    if kind == "nrp":
        with torch.no_grad():
            model.tail.weight.normal_()
    model.save_pretrained(tmp_path / kind)
    defense = build_defense(kind, checkpoint=str(tmp_path / kind))
    x = torch.rand(2, 3, 16, 16)
    reference = (STL(model) if kind == "stl" else NRP(model))(x)
    assert torch.allclose(defense(x), reference)
    assert defense.config()["checkpoint"] == str(tmp_path / kind)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["stl", "nrp"])
def test_missing_weights_say_how_to_train_them(kind: str, tmp_path) -> None:
    with pytest.raises(CheckpointError, match=f"irad train-{kind}.*--defense {kind}:checkpoint="):
        build_defense(kind, checkpoint=str(tmp_path / "nowhere"))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SparseCodingConfig(atoms=0), "atoms"),
        (lambda: SparseCodingConfig(lmbda=-1), "lmbda"),
        (lambda: SparseCodingConfig(iterations=2.5), "iterations"),
        (lambda: SparseCodingConfig.from_preset("huge"), "unknown sparse-coding.*cpu"),
        (lambda: SparseCodingConfig.from_dict({"atoms": 4, "colour": 1}), "colour"),
        (lambda: PurifierConfig(block="unet"), "block must be one of 'residual', 'rrdb'"),
        (lambda: PurifierConfig.from_preset("huge"), "unknown NRP purifier preset"),
        (lambda: STL(_tiny_coder(), iterations=0), "iterations"),
        (lambda: STL(_tiny_coder(), lmbda=0), "lmbda"),
        (lambda: STL(42), "stl checkpoint must be a ConvSparseCoder"),
        (lambda: NRP(_tiny_coder()), "nrp checkpoint must be a Purifier"),
        (
            lambda: DictionaryObjective(_tiny_coder(), _images(8), batch_size=16),
            "fewer than one batch",
        ),
        (
            lambda: DictionaryObjective(_tiny_coder(), _images(8), batch_size=4, crop=2),
            "crop .* smaller than the dictionary's filters",
        ),
        (
            lambda: LayerFeatures(build_classifier("resnet20"), "net.layer9"),
            "no layer 'net.layer9'.*net.layer1",
        ),
        (
            lambda: NRPObjective(
                _tiny_purifier(),
                build_classifier("resnet20"),
                _images(8),
                batch_size=4,
                pixel_weight=0,
                feature_weight=0,
            ),
            "nothing to train on",
        ),
        (
            lambda: NRPObjective(
                _tiny_purifier(),
                build_classifier("resnet20"),
                _images(8),
                batch_size=4,
                noise_std=0,
            ),
            "noise_std must be > 0",
        ),
    ],
)
def test_bad_parameters_are_clear_errors(build, match: str) -> None:
    with pytest.raises(IradError, match=match) as info:
        build()
    assert isinstance(info.value, InputError | ConfigError | CheckpointError)
