"""``irad purify``: a folder of images of any size -> purified PNGs at the same relative paths."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from irad.cli import app
from irad.data import find_images
from irad.defenses import IRAD, build_defense
from irad.errors import DataError, InputError
from irad.models.edsr import EDSRConfig
from irad.models.liif import ImplicitConfig, ImplicitRepresentation
from irad.models.samplenet import SampleNetConfig
from irad.purify import purify_folder

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def irad_dir(tmp_path_factory):
    """A tiny random IRAD with a non-zero SampleNet, saved with save_pretrained."""
    torch.manual_seed(0)
    rep = ImplicitRepresentation(ImplicitConfig(EDSRConfig(n_resblocks=1, n_feats=4), (8, 8)))
    irad = IRAD(rep, preset=None, samplenet_config=SampleNetConfig(hidden=(8, 8)), chunk_size=64)
    with torch.no_grad():
        irad.samplenet.imnet.last.weight.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("ckpt") / "irad"
    irad.save_pretrained(path)
    return path


def _write(path, size, mode="RGB", seed=0):
    h, w = size
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (h, w, channels) if channels else (h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "in"
    _write(root / "a.png", (5, 7), seed=1)
    _write(root / "sub" / "b.png", (5, 7), seed=2)
    _write(root / "sub" / "deeper" / "c.jpg", (6, 4), seed=3)
    _write(root / "gray.bmp", (4, 4), mode="L", seed=4)
    _write(root / "alpha.webp", (3, 8), mode="RGBA", seed=5)
    (root / "notes.txt").write_text("not an image")
    _write(root / ".hidden.png", (5, 7), seed=6)
    return root


EXPECTED = ["a.png", "alpha.png", "gray.png", "sub/b.png", "sub/deeper/c.png"]


def _outputs(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))


def _run(*args):
    return RUNNER.invoke(app, ["purify", *map(str, args), "--no-progress"])


def test_purifies_every_image_at_its_own_size(images, irad_dir, tmp_path):
    out = tmp_path / "out"
    spec = f"irad:checkpoint={irad_dir}"
    result = _run("--defense", spec, "-i", images, "-o", out, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert "5 images found, 5 purified, 0 already there" in result.output
    assert _outputs(out) == EXPECTED
    irad = IRAD.from_pretrained(irad_dir)
    for rel in ("a.png", "gray.png", "alpha.png", "sub/deeper/c.png"):
        src = next(images.glob(rel.replace(".png", ".*")))
        x = torch.from_numpy(np.array(Image.open(src).convert("RGB"))).permute(2, 0, 1)
        with torch.no_grad():
            ref = (irad(x[None].float() / 255)[0] * 255).round().to(torch.uint8)
        with Image.open(out / rel) as im:
            assert im.mode == "RGB" and im.size == (x.shape[2], x.shape[1])
            got = torch.from_numpy(np.array(im)).permute(2, 0, 1)
        # batching may move a value across a rounding boundary, never further
        diff = (got.int() - ref.int()).abs()
        assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99
        assert not torch.equal(got, x)  # the defense did something
    manifest = json.loads((out / "purify.json").read_text())
    assert manifest["status"] == "done" and manifest["written_this_run"] == 5
    assert manifest["defense_config"]["name"] == "irad"


def test_rerun_skips_written_outputs_and_overwrite_redoes_them(images, tmp_path):
    out = tmp_path / "out"
    assert _run("-d", "jpeg:quality=50", "-i", images, "-o", out).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    (out / "sub" / "b.png").unlink()
    again = _run("-d", "jpeg:quality=50", "-i", images, "-o", out)
    assert "1 purified, 4 already there" in again.output
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p.name != "b.png")
    redo = _run("-d", "jpeg:quality=50", "-i", images, "-o", out, "--overwrite")
    assert "5 purified, 0 already there" in redo.output
    # another defense into the same folder would mix outputs: refused
    mixed = _run("-d", "jpeg:quality=90", "-i", images, "-o", out)
    assert isinstance(mixed.exception, InputError)
    assert "purified with another defense" in str(mixed.exception)


def test_python_api_and_batching_by_size(images, tmp_path):
    defense = build_defense("bit-depth", bits=3)
    summary = purify_folder(defense, images, tmp_path / "o", batch_size=16, progress=False)
    assert (summary.found, summary.written, summary.skipped) == (5, 5, 0)
    with Image.open(tmp_path / "o" / "a.png") as im:
        values = np.unique(np.array(im))
    assert len(values) <= 8  # 3 bits per channel
    assert [p.name for p in find_images(images)] == [
        "a.png",
        "alpha.webp",
        "gray.bmp",
        "b.png",
        "c.jpg",
    ]


def test_folder_and_image_errors_are_clear(images, tmp_path):
    missing = _run("-d", "jpeg", "-i", tmp_path / "nope", "-o", tmp_path / "o")
    assert isinstance(missing.exception, InputError) and "does not exist" in str(missing.exception)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "x.txt").write_text("")
    empty = _run("-d", "jpeg", "-i", tmp_path / "empty", "-o", tmp_path / "o")
    assert isinstance(empty.exception, InputError) and "no images under" in str(empty.exception)
    inside = _run("-d", "jpeg", "-i", images, "-o", images / "purified")
    assert isinstance(inside.exception, InputError) and "inside the input folder" in str(
        inside.exception
    )

    (tmp_path / "a-file").write_text("")
    blocked = _run("-d", "irad:checkpoint=nowhere", "-i", images, "-o", tmp_path / "a-file" / "o")
    # refused before the defense is built (its checkpoint does not exist either)
    assert isinstance(blocked.exception, InputError) and "is a file" in str(blocked.exception)

    _write(images / "a.jpg", (5, 7))  # a.png and a.jpg would both become a.png
    clash = _run("-d", "jpeg", "-i", images, "-o", tmp_path / "o")
    assert isinstance(clash.exception, InputError) and "a.jpg and a.png" in str(clash.exception)
    (images / "a.jpg").unlink()

    (images / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    broken = _run("-d", "jpeg", "-i", images, "-o", tmp_path / "o2")
    assert isinstance(broken.exception, DataError)
    assert "broken.png: cannot read this image" in str(broken.exception)
    # the header pass runs before any image is purified
    assert not list((tmp_path / "o2").rglob("*.png"))


def test_main_prints_one_line_and_exits_2(monkeypatch, capsys, tmp_path):
    from irad.cli import main

    monkeypatch.setattr(sys, "argv", ["irad", "purify", "-i", str(tmp_path / "x"), "-o", "y"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "error: the input folder" in capsys.readouterr().err


def test_help_shows_examples():
    result = RUNNER.invoke(app, ["purify", "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    assert "Examples" in result.output and "irad:checkpoint=" in result.output


def _png16_values(path) -> np.ndarray:
    """The pixels of a 16-bit RGB PNG, decoded without PIL (which reads such files at 8 bits)."""
    import struct
    import zlib

    data = path.read_bytes()
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + size
    w, h, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (16, 2)  # 16 bits per channel, RGB
    raw = zlib.decompress(idat)
    stride = 1 + w * 6
    assert all(raw[r * stride] == 0 for r in range(h))  # filter type 0 on every row
    rows = b"".join(raw[r * stride + 1 : (r + 1) * stride] for r in range(h))
    return np.frombuffer(rows, dtype=">u2").reshape(h, w, 3).astype(np.uint16)


def test_a_16_bit_png_is_purified_at_16_bits_not_to_white(tmp_path):
    grey = (np.arange(4 * 6, dtype=np.uint32).reshape(4, 6) * 2700 + 300).astype(np.uint16)
    (tmp_path / "in").mkdir()
    Image.fromarray(grey).save(tmp_path / "in" / "scan.png")  # PIL mode I;16
    _write(tmp_path / "in" / "photo.png", (4, 6), seed=7)
    summary = purify_folder("none", tmp_path / "in", tmp_path / "out", progress=False)
    assert summary.written == 2 and summary.written_16bit == 1
    assert "1 of them 16-bit" in summary.line()
    out = _png16_values(tmp_path / "out" / "scan.png")
    assert np.array_equal(out, np.repeat(grey[..., None], 3, axis=2))  # every bit kept
    with Image.open(tmp_path / "out" / "photo.png") as im:  # 8-bit inputs stay 8-bit
        assert im.mode == "RGB"
    manifest = json.loads((tmp_path / "out" / "purify.json").read_text())
    assert manifest["written_16bit"] == 1 and "bit depth" in manifest["output_format"]
    # a defense sees the 16-bit image scaled by 65535, so it is not white
    jpeg = purify_folder("jpeg:quality=95", tmp_path / "in", tmp_path / "jpeg", progress=False)
    assert jpeg.written == 2
    values = _png16_values(tmp_path / "jpeg" / "scan.png")
    assert abs(float(values.mean()) - float(grey.mean())) < 0.02 * 65535


def test_an_image_folder_reads_16_bit_pngs_scaled_not_clipped(tmp_path):
    from irad.data import ImageFolderDataset

    grey = np.full((4, 4), 32896, dtype=np.uint16)  # mid-grey at 16 bits: 32896 / 257 = 128
    (tmp_path / "cls").mkdir()
    Image.fromarray(grey).save(tmp_path / "cls" / "a.png")
    x, _ = ImageFolderDataset(tmp_path)[0]
    assert torch.allclose(x, torch.full_like(x, 128 / 255))
