"""Diffusion purification: the schedule, the reverse chain, DiffPure, chains, training, loading."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("diffusers")

from diffusers import DDPMScheduler, UNet2DModel

from irad.data import ImageDataset
from irad.defenses import DefenseChain, build_defense
from irad.defenses.diffpure import DiffPure, reverse_step, reverse_timesteps
from irad.errors import CheckpointError, ConfigError, InputError
from irad.models.diffusion import DiffusionConfig, DiffusionModel, linear_alpha_bar
from irad.train import Trainer
from irad.train.diffusion import DiffusionObjective, diffusion_train_config


@pytest.fixture(scope="module")
def tiny() -> DiffusionModel:
    torch.manual_seed(0)
    return DiffusionModel(DiffusionConfig.from_preset("tiny")).eval()


def test_alpha_bar_matches_diffusers_scheduler() -> None:
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear"
    )
    ours = linear_alpha_bar(1000, 1e-4, 0.02)
    assert float(ours[0]) == 1.0
    # our ᾱ_t is diffusers' alphas_cumprod[t - 1]
    torch.testing.assert_close(ours[1:].float(), scheduler.alphas_cumprod, rtol=1e-6, atol=1e-7)


def test_ddpm_step_matches_diffusers(tiny: DiffusionModel) -> None:
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, clip_sample=True
    )
    x = torch.randn(2, 3, 16, 16)
    t = 37
    with torch.no_grad():
        eps = tiny.eps(x, t)
        expected = scheduler.step(
            eps, t - 1, x, generator=torch.Generator().manual_seed(5)
        ).prev_sample
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
        ours = reverse_step(tiny, x, t, t - 1, noise)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_reverse_timesteps() -> None:
    assert reverse_timesteps(5, 5) == [5, 4, 3, 2, 1, 0]
    assert reverse_timesteps(20, 4) == [20, 15, 10, 5, 0]
    with pytest.raises(InputError, match="reverse_steps"):
        reverse_timesteps(5, 6)


def test_t_zero_returns_input(tiny: DiffusionModel) -> None:
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(DiffPure(tiny, t=0)(x), x)
    assert not DiffPure(tiny, t=0).stochastic


def test_seed_reproduces_and_seeds_differ(tiny: DiffusionModel) -> None:
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        a = DiffPure(tiny, t=8, seed=1)(x)
        b = DiffPure(tiny, t=8, seed=1)(x)
        c = DiffPure(tiny, t=8, seed=2)(x)
        again = DiffPure(tiny, t=8, seed=1)
        first, second = again(x), again(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # repeated calls draw fresh noise (EOT needs that), reproducibly from the seed
    assert torch.equal(first, a) and not torch.allclose(first, second)
    again.reseed(1)
    assert torch.equal(again(x).detach(), a)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_gradient_reaches_input_and_checkpointing_agrees(
    tiny: DiffusionModel, sampler: str
) -> None:
    x = torch.rand(2, 3, 16, 16)
    grads = []
    for checkpointing in (True, False):
        xi = x.clone().requires_grad_(True)
        purifier = DiffPure(tiny, t=6, sampler=sampler, seed=3, checkpointing=checkpointing)
        purifier(xi).square().sum().backward()
        grads.append(xi.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_ddim_reverse_is_deterministic_given_xt(tiny: DiffusionModel) -> None:
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        a = reverse_step(tiny, x, 10, 5, None, sampler="ddim")
        b = reverse_step(tiny, x, 10, 5, torch.randn_like(x), sampler="ddim")
    assert torch.equal(a, b)


def test_fewer_reverse_steps_cost_fewer_unet_calls(tiny: DiffusionModel) -> None:
    calls = []
    handle = tiny.unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            DiffPure(tiny, t=20, reverse_steps=4, seed=0)(torch.rand(1, 3, 16, 16))
    finally:
        handle.remove()
    assert len(calls) == 4


def test_bad_input_gets_clear_errors(tiny: DiffusionModel) -> None:
    with pytest.raises(InputError, match=r"\[0, 1000\]"):
        DiffPure(tiny, t=1001)
    with pytest.raises(InputError, match=r"\[0, 1000\]"):
        DiffPure(tiny, t=-1)
    with pytest.raises(InputError, match="integer"):
        DiffPure(tiny, t=2.5)
    with pytest.raises(InputError, match="multiples of 2"):
        DiffPure(tiny, t=4)(torch.rand(1, 3, 15, 16))
    with pytest.raises(InputError, match="sampler"):
        DiffPure(tiny, t=4, sampler="euler")
    with pytest.raises(ConfigError, match="unknown diffusion preset"):
        DiffusionConfig.from_preset("huge")


def test_warns_beyond_the_trained_range() -> None:
    model = DiffusionModel(DiffusionConfig.from_preset("tiny", t_max=50))
    with pytest.warns(UserWarning, match="trained on t <= 50"):
        DiffPure(model, t=100)


def test_chain_flags_and_order(tiny: DiffusionModel) -> None:
    jpeg = build_defense("jpeg", quality=75)
    median = build_defense("median")
    assert median.differentiable and not jpeg.differentiable
    chain = DefenseChain(DiffPure(tiny, t=4, seed=0), median)
    assert chain.stochastic and chain.differentiable  # random if any part is
    assert not DefenseChain(median, jpeg).stochastic
    assert not DefenseChain(median, jpeg).differentiable  # differentiable only if all are
    # the surrogate of a chain replaces each part by its own surrogate
    surrogate = DefenseChain(median, jpeg).differentiable_surrogate()
    assert surrogate.differentiable
    # the first part is applied first
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(DefenseChain(jpeg, median)(x), median(jpeg(x)))
    assert not torch.equal(DefenseChain(jpeg, median)(x), jpeg(median(x)))
    assert chain.config()["parts"][0]["name"] == "diffpure"
    with pytest.raises(InputError, match="at least two"):
        DefenseChain(jpeg)
    with pytest.raises(InputError, match="Defense"):
        DefenseChain(jpeg, torch.nn.Identity())


def test_checkpoint_round_trip(tmp_path, tiny: DiffusionModel) -> None:
    tiny.save_pretrained(tmp_path / "run", metadata={"note": "test"})
    loaded = DiffusionModel.from_pretrained(tmp_path / "run")
    assert loaded.config == tiny.config
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eps(x, 3), tiny.eps(x, 3))
    assert loaded.checkpoint_metadata == {"note": "test"}
    with pytest.raises(CheckpointError, match="diffusion checkpoint not found"):
        DiffusionModel.from_pretrained(tmp_path / "nothing-here")


def test_half_precision_weights_load(tmp_path, tiny: DiffusionModel) -> None:
    from irad.checkpoint import checkpoint_paths, load_state, save_state

    prefix = tiny.save(tmp_path / "model").with_suffix("")
    tensors, config = load_state(prefix)
    save_state(tmp_path / "half", {k: v.half() for k, v in tensors.items()}, config)
    assert checkpoint_paths(tmp_path / "half")[0].is_file()
    half = DiffusionModel.from_pretrained(tmp_path / "half")
    assert next(half.parameters()).dtype == torch.float32


def test_local_diffusers_folder(tmp_path, tiny: DiffusionModel) -> None:
    folder = tmp_path / "pipeline"
    tiny.unet.save_pretrained(folder / "unet", safe_serialization=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    loaded = DiffusionModel.from_pretrained(folder)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eps(x, 9), tiny.eps(x, 9))
    # the unet folder alone works too
    assert isinstance(DiffusionModel.from_pretrained(folder / "unet"), DiffusionModel)


def test_diffusers_folder_that_is_not_a_unet(tmp_path) -> None:
    folder = tmp_path / "scheduler-only"
    DDPMScheduler().save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(CheckpointError, match="not a UNet2DModel"):
        DiffusionModel.from_pretrained(folder)
    unet_only_bin = tmp_path / "bin"
    UNet2DModel(**DiffusionConfig.from_preset("tiny").unet).save_pretrained(
        unet_only_bin, safe_serialization=False
    )
    with pytest.raises(CheckpointError, match="safetensors"):
        DiffusionModel.from_pretrained(unet_only_bin)


def _images(n: int, size: int = 16) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(n, size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
    y = torch.zeros(n, dtype=torch.long).numpy()
    return ImageDataset(x, y, classes=["a"], name="synthetic")


def test_training_lowers_the_loss_and_updates_the_ema(tmp_path) -> None:
    torch.manual_seed(0)
    model = DiffusionModel(DiffusionConfig.from_preset("tiny", t_max=100))
    objective = DiffusionObjective(model, _images(64), _images(8), batch_size=8, ema_decay=0.5)
    before = [p.clone() for p in objective.ema.parameters()]
    config, _ = diffusion_train_config(
        "tiny", epochs=3, lr=3e-3, out_dir=tmp_path / "run", progress=False
    )
    summary = Trainer(objective, config).fit()
    losses = [h["train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0]
    assert int(objective.module.ema_updates) == 3 * 8
    moved = zip(before, objective.ema.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in moved)
    assert "psnr_t20" in summary["final"]
    saved = DiffusionModel.from_pretrained(tmp_path / "run")
    for a, b in zip(saved.parameters(), objective.ema.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_training_batches_are_reproducible_from_the_epoch_seed() -> None:
    model = DiffusionModel(DiffusionConfig.from_preset("tiny", t_max=30))
    objective = DiffusionObjective(model, _images(32), batch_size=8)
    whole = list(objective.batches(0, torch.Generator().manual_seed(1), 0))
    resumed = list(objective.batches(0, torch.Generator().manual_seed(1), 2))
    for a, b in zip(whole[2:], resumed, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert all(int(t.max()) <= 30 and int(t.min()) >= 1 for _, t, _ in whole)


def test_denoising_quality_rows(tiny: DiffusionModel) -> None:
    from irad.evaluate.denoising import denoising_quality, format_denoising_table

    data = _images(6)
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2)).eval()
    result = denoising_quality(tiny, data, (2, 4), batch_size=4, progress=False, classifier=clf)
    assert [r["t"] for r in result["rows"]] == [2, 4]
    for row in result["rows"]:
        assert row["psnr_noisy"] > 0 and 0 <= row["sa"] <= 100
    again = denoising_quality(tiny, data, (2, 4), batch_size=4, progress=False, classifier=clf)
    assert again["rows"][0]["psnr_purified"] == result["rows"][0]["psnr_purified"]
    assert "SA (DiffPure)" in format_denoising_table(result)


def test_bundled_purifiers_run_offline() -> None:
    from irad.checkpoint import bundled_checkpoint

    if bundled_checkpoint("diffusion", "cifar10") is None:
        pytest.skip("no bundled diffusion weights in this checkout")
    model = DiffusionModel.from_pretrained("cifar10")
    assert model.config.preset == "cpu" and model.config.t_max == 120
    assert "provenance" in model.checkpoint_metadata
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        for spec in ("diffpure:t=100,reverse_steps=2", "irad+diffpure:t=20,reverse_steps=2"):
            name, params = spec.split(":")
            kwargs = {k: int(v) for k, v in (p.split("=") for p in params.split(","))}
            out = build_defense(name, **kwargs)(x)
            assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_chain_specs_build_irad_diffpure(tiny: DiffusionModel) -> None:
    from irad.defenses import build_defense_spec

    chain = build_defense_spec("jpeg:quality=50>median:kernel_size=3")
    assert isinstance(chain, DefenseChain) and chain.parts[0].quality == 50
    with pytest.raises(ConfigError, match="empty part"):
        build_defense_spec("jpeg>")
    with pytest.raises(ConfigError, match="unknown defense"):
        build_defense_spec("jpeg>nonsense")
