"""Adversarial pair generation (resumable chunks, uint8 storage in the ε-ball) and Table 17's
image-quality metrics, with the ``prepare-pairs`` and ``quality`` commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from irad.data import ImageDataset
from irad.errors import ConfigError, DataError, InputError
from irad.evaluate.quality import (
    fft_losses,
    format_quality_table,
    image_quality,
    low_frequency_mask,
    lpips_metric,
    psnr,
    quality_table,
    ssim,
)
from irad.train.pairs import (
    PairConfig,
    PairDataset,
    generate_pairs,
    read_manifest,
    round_to_uint8,
)

H = W = 6


def toy_data(n: int = 12, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, H, W, 3), dtype=torch.uint8, generator=g)
    return ImageDataset(x, torch.arange(n) % 3, name="toy")


def toy_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 3))


CONFIG = PairConfig(eps=8, alpha=2, steps=2, chunk=5, batch_size=4, seed=1)


# -- storage -------------------------------------------------------------------------------------


def test_round_to_uint8_moves_at_most_half_a_level_and_stays_in_the_ball():
    clean = torch.randint(0, 256, (2000,), dtype=torch.uint8)
    delta = (torch.rand(2000) * 2 - 1) * 8 / 255
    adv = (clean.float() / 255 + delta).clamp(0, 1)
    q = round_to_uint8(adv, clean, 8.0)
    assert q.dtype == torch.uint8
    assert float((q.float() / 255 - adv).abs().max()) <= 0.5 / 255 + 1e-7
    assert int((q.int() - clean.int()).abs().max()) <= 8
    # a value beyond the ball (float error, or a buggy attack) is clipped back into it
    far = round_to_uint8(
        torch.tensor([120.6 / 255, 0.0]), torch.tensor([100, 5], dtype=torch.uint8), 8
    )
    assert far.tolist() == [108, 0]


# -- generation and loading ------------------------------------------------------------------------


def test_pairs_are_in_the_eps_ball_and_load_back_aligned(tmp_path):
    data = toy_data().subset(10, seed=0)
    manifest = generate_pairs(
        toy_net(), data.x, data.y, tmp_path, CONFIG, indices=data.source_indices, progress=False
    )
    assert manifest["status"] == "complete" and manifest["chunks"] == 2
    totals = manifest["totals"]
    assert totals["n"] == 10 and totals["chunks_done"] == 2
    assert totals["max_linf_rounded"] <= 8 + 1e-4 and totals["max_rounding"] <= 0.5 + 1e-4
    for key in ("success_rate_float", "success_rate_rounded", "flipped_by_rounding"):
        assert key in totals
    assert read_manifest(tmp_path)["surrogate"]["fingerprint"]

    full = toy_data()
    pairs = PairDataset(tmp_path, full)
    assert len(pairs) == 10 and torch.equal(pairs.indices, data.source_indices)
    assert torch.equal(pairs.x_clean, full.x[data.source_indices])
    assert torch.equal(pairs.y, full.y[data.source_indices])
    assert int((pairs.x_adv.int() - pairs.x_clean.int()).abs().max()) <= 8
    assert (pairs.x_adv != pairs.x_clean).any()
    clean, adv, y = pairs.take([0, 3])
    assert clean.shape == adv.shape == (2, 3, H, W) and y.tolist() == pairs.y[[0, 3]].tolist()
    c0, a0, y0 = pairs[3]
    assert torch.equal(c0, clean[1]) and torch.equal(a0, adv[1]) and y0 == int(y[1])
    batches = list(pairs.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]


def test_generation_resumes_without_redoing_finished_chunks(tmp_path):
    data = toy_data()
    net = toy_net()
    generate_pairs(net, data.x, data.y, tmp_path, CONFIG, progress=False)
    chunks = tmp_path / "chunks"
    first = (chunks / "chunk-00000.safetensors").stat().st_mtime_ns
    reference = (chunks / "chunk-00001.safetensors").read_bytes()
    # an interrupted run: the second chunk never got written
    for suffix in (".safetensors", ".json"):
        (chunks / f"chunk-00001{suffix}").unlink()
    with pytest.raises(DataError, match="interrupted"):
        PairDataset(tmp_path, data)
    assert len(PairDataset(tmp_path, data, allow_partial=True)) == 7  # chunks 0 and 2
    manifest = generate_pairs(net, data.x, data.y, tmp_path, CONFIG, progress=False)
    assert manifest["totals"]["chunks_done"] == 3
    assert (chunks / "chunk-00000.safetensors").stat().st_mtime_ns == first
    assert (chunks / "chunk-00001.safetensors").read_bytes() == reference  # seeded: identical
    assert len(PairDataset(tmp_path, data)) == 12


@pytest.mark.parametrize("damage", ["bit-flip", "truncated", "another-chunk"])
def test_a_damaged_chunk_is_recomputed_on_rerun(tmp_path, damage):
    data, net = toy_data(), toy_net()
    generate_pairs(net, data.x, data.y, tmp_path, CONFIG, progress=False)
    chunks = tmp_path / "chunks"
    target = chunks / "chunk-00001.safetensors"
    reference = target.read_bytes()
    untouched = (chunks / "chunk-00000.safetensors").stat().st_mtime_ns
    if damage == "bit-flip":
        broken = bytearray(reference)
        broken[-1] ^= 0xFF  # one pixel of the payload
        target.write_bytes(bytes(broken))
    elif damage == "truncated":
        target.write_bytes(reference[: len(reference) // 2])
    else:  # a whole, readable chunk, but of other rows
        for suffix in (".safetensors", ".json"):
            (chunks / f"chunk-00001{suffix}").write_bytes(
                (chunks / f"chunk-00002{suffix}").read_bytes()
            )
    if damage != "another-chunk":
        with pytest.raises(DataError, match=r"chunk 1 .* damaged.*prepare-pairs"):
            PairDataset(tmp_path, data)
    with pytest.warns(RuntimeWarning, match=r"chunk 1 of .* is damaged .*; recomputing it"):
        manifest = generate_pairs(net, data.x, data.y, tmp_path, CONFIG, progress=False)
    assert target.read_bytes() == reference  # recomputed, identical (seeded)
    assert (chunks / "chunk-00000.safetensors").stat().st_mtime_ns == untouched
    assert manifest["totals"]["n"] == 12 and len(PairDataset(tmp_path, data)) == 12


def test_a_different_setup_in_the_same_folder_is_refused(tmp_path):
    data = toy_data()
    generate_pairs(toy_net(), data.x, data.y, tmp_path, CONFIG, progress=False)
    other = PairConfig(eps=4, alpha=1, steps=2, chunk=5, batch_size=4, seed=1)
    with pytest.raises(ConfigError, match="eps: 8"):
        generate_pairs(toy_net(), data.x, data.y, tmp_path, other, progress=False)
    with pytest.raises(ConfigError, match="surrogate weights differ"):
        generate_pairs(toy_net(seed=5), data.x, data.y, tmp_path, CONFIG, progress=False)
    with pytest.raises(DataError, match="fingerprint"):
        PairDataset(tmp_path, toy_data(seed=9))
    with pytest.raises(DataError, match="not a pairs folder"):
        PairDataset(tmp_path / "nowhere", data)
    with pytest.raises(InputError, match="uint8"):
        generate_pairs(toy_net(), data.x.float(), data.y, tmp_path / "x", CONFIG, progress=False)
    with pytest.raises(ConfigError, match="eps"):
        PairConfig(eps=0)


# -- quality metrics -----------------------------------------------------------------------------


def test_identical_images_are_perfect_and_known_offsets_give_known_values():
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(psnr(x, x), torch.full((3,), 100.0))
    torch.testing.assert_close(ssim(x, x), torch.ones(3), atol=1e-4, rtol=0)
    lo, hi = fft_losses(x, x)
    assert torch.equal(lo, torch.zeros(3)) and torch.equal(hi, torch.zeros(3))
    flat = torch.full((1, 3, 8, 8), 0.4)
    torch.testing.assert_close(psnr(flat, flat + 0.1), torch.tensor([20.0]), atol=1e-4, rtol=0)
    with pytest.raises(InputError, match="differ in shape"):
        psnr(x, x[:, :, :8])


def test_fft_split_separates_low_and_high_frequencies():
    base = torch.full((1, 3, 16, 16), 0.5)
    # a constant offset lives in the DC bin only: all low frequency
    lo, hi = fft_losses(base, base + 0.05)
    assert lo.item() > 0 and hi.item() == pytest.approx(0.0, abs=1e-6)
    # a checkerboard lives at the Nyquist corner: all high frequency
    checker = (torch.arange(16).view(-1, 1) + torch.arange(16).view(1, -1)) % 2
    lo, hi = fft_losses(base, base + 0.05 * (checker * 2 - 1))
    assert lo.item() == pytest.approx(0.0, abs=1e-6) and hi.item() > 0
    mask = low_frequency_mask(32, 32)
    assert mask[16, 16] and not mask[0, 0] and int(mask.sum()) == 49  # radius 32 / 8 = 4


def test_quality_table_has_table_17s_two_columns():
    clean = torch.rand(4, 3, 8, 8)
    adv = (clean + 0.02 * torch.randn_like(clean)).clamp(0, 1)
    result = quality_table([(clean[:2], adv[:2]), (clean[2:], adv[2:])], lambda z: z)
    assert result["n"] == 4
    assert result["clean_vs_adv"] == pytest.approx(result["clean_vs_recons_adv"])
    assert math.isfinite(result["clean_vs_adv"]["psnr"])
    table = format_quality_table(result)
    assert "| PSNR (dB) |" in table and "| SSIM |" in table and "High frequency FFT" in table
    assert set(image_quality(clean, adv)) >= {"psnr", "ssim", "fft_low", "fft_high"}


def test_lpips_is_skipped_with_a_clear_message_when_unavailable():
    fn, status = lpips_metric()
    if fn is not None:
        pytest.skip("lpips and its weights are installed here")
    assert status.startswith("LPIPS skipped")


# -- commands -------------------------------------------------------------------------------------


def _write_npz(path: Path, data: ImageDataset) -> Path:
    np.savez(path, x=data.x.numpy(), y=data.y.numpy())
    return path


def test_prepare_pairs_and_quality_commands(tmp_path):
    from typer.testing import CliRunner

    from irad.cli import app
    from irad.defenses import ImplicitReconstruction
    from irad.models import build_classifier, save_classifier
    from irad.models.edsr import EDSRConfig
    from irad.models.liif import ImplicitConfig, ImplicitRepresentation

    data = toy_data(n=16)
    npz = _write_npz(tmp_path / "train.npz", data)
    torch.manual_seed(0)
    save_classifier(build_classifier("resnet20", num_classes=3), tmp_path / "r20")
    runner = CliRunner()
    args = [
        "prepare-pairs", "--weights", str(tmp_path / "r20"), "--dataset", str(npz),
        "--n", "6", "--steps", "1", "--chunk", "4", "--batch-size", "4",
        "--out", str(tmp_path / "pairs"), "--no-progress",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "6 pairs" in result.output
    manifest = json.loads((tmp_path / "pairs" / "manifest.json").read_text())
    assert manifest["config"]["steps"] == 1 and manifest["surrogate"]["sha256"]
    assert manifest["data"]["description"].endswith("[random 6, seed 0]")

    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(1, 4), (8,)))
    ImplicitReconstruction(rep, preset=None).save_pretrained(tmp_path / "recons")
    out = tmp_path / "q.json"
    args = [
        "quality", "--recons", str(tmp_path / "recons"), "--pairs", str(tmp_path / "pairs"),
        "--n", "5", "--json", str(out), "--no-progress",
    ]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "clean vs RECONS(adv)" in result.output
    record = json.loads(out.read_text())
    assert record["n"] == 5 and "psnr" in record["clean_vs_recons_adv"]
