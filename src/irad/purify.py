"""Purify a folder of images with a defense: the engine behind ``irad purify``.

Outputs keep the input's relative paths with a ``.png`` suffix and its bit depth (a 16-bit PNG
gives a 16-bit PNG), are written atomically (an interrupted run never leaves a half-written
file), and existing ones are skipped, so running the same call again resumes.
``OUTPUT/purify.json`` records the defense, seed and counts; a folder purified with another
defense is refused unless ``overwrite``.

Example:
    >>> from PIL import Image
    >>> from irad.purify import purify_folder
    >>> Path("images").mkdir()
    >>> for name in ("a.png", "b.png"):
    ...     Image.new("RGB", (32, 32), "white").save(f"images/{name}")
    >>> summary = purify_folder("jpeg:quality=75", "images/", "purified/")
    >>> summary.line()
    '2 images found, 2 purified, 0 already there (skipped); ...; output in purified'
    >>> purify_folder("jpeg:quality=75", "images/", "purified/").line()  # run again: nothing to do
    '2 images found, 0 purified, 2 already there (skipped); ...'
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from irad.checks import check_batch_size, check_seed
from irad.data.image_io import (
    IMAGE_EXTENSIONS,
    bit_depth,
    find_images,
    from_float,
    image_size,
    read_rgb,
    to_float,
    write_png,
)
from irad.errors import InputError
from irad.utils.env import environment_info, resolve_device
from irad.utils.io import atomic_write_json, check_writable_folder
from irad.utils.seed import seeded

__all__ = [
    "MANIFEST",
    "BundledDefenseWarning",
    "PurifySummary",
    "check_folders",
    "purify_folder",
    "warn_if_not_cifar_like",
]

#: Manifest written into the output folder.
MANIFEST = "purify.json"


@dataclass
class PurifySummary:
    """Counts and timing of one :func:`purify_folder` run."""

    found: int
    written: int
    skipped: int
    seconds: float
    output: Path
    written_16bit: int = 0

    def line(self) -> str:
        rate = f", {self.seconds / self.written:.3g} s/image" if self.written else ""
        deep = f" ({self.written_16bit} of them 16-bit PNGs)" if self.written_16bit else ""
        return (
            f"{self.found} images found, {self.written} purified{deep}, {self.skipped} already "
            f"there (skipped); {self.seconds:.1f} s{rate}; output in {self.output}"
        )


def check_folders(input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> None:
    """Refuse a missing input folder and an output folder that is inside it or not writable.

    Cheap: callers run it before loading a (possibly large) defense.
    """
    src, dst = Path(input_dir).expanduser(), Path(output_dir).expanduser()
    if not src.exists():
        raise InputError(f"the input folder {src} does not exist")
    if not src.is_dir():
        raise InputError(f"the input {src} is not a folder (pass the folder holding images)")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise InputError(
            f"the output folder {dst} is inside the input folder {src}; a rerun would read the "
            "purified images as inputs. Choose an output folder outside the input folder"
        )
    check_writable_folder(dst, "the output folder")


def _output_paths(images: Sequence[Path], input_dir: Path, output_dir: Path) -> list[Path]:
    outputs = [output_dir / p.relative_to(input_dir).with_suffix(".png") for p in images]
    seen: dict[Path, Path] = {}
    clashes = []
    for src, dst in zip(images, outputs, strict=True):
        if dst in seen:
            clashes.append(f"{seen[dst].relative_to(input_dir)} and {src.relative_to(input_dir)}")
        seen[dst] = src
    if clashes:
        raise InputError(
            "these inputs would both be written to the same .png: "
            + "; ".join(clashes[:5])
            + " (rename one of each pair)"
        )
    inputs = {p.resolve() for p in images}
    overlap = [str(d) for d in outputs if d.resolve() in inputs]
    if overlap:
        raise InputError(f"outputs would overwrite input images: {', '.join(overlap[:5])}")
    return outputs


def _batches(
    items: Sequence[tuple[Path, Path]], batch_size: int, sizes: dict[Path, tuple[int, int]]
) -> Iterator[list[tuple[Path, Path]]]:
    """Group ``(input, output)`` pairs by image size (``sizes``: every input's ``(H, W)``),
    then cut each group into batches."""
    groups: dict[tuple[int, int], list[tuple[Path, Path]]] = defaultdict(list)
    for src, dst in items:
        groups[sizes[src]].append((src, dst))
    for size in sorted(groups):
        group = groups[size]
        for s in range(0, len(group), batch_size):
            yield group[s : s + batch_size]


def _comparable(config: dict[str, Any]) -> str:
    """The defense config as canonical JSON, checkpoint paths made absolute."""
    cfg = dict(config)
    if isinstance(cfg.get("checkpoint"), str):
        cfg["checkpoint"] = str(Path(cfg["checkpoint"]).resolve())
    return json.dumps(cfg, sort_keys=True, default=str)


def _check_manifest(output_dir: Path, config: dict[str, Any], overwrite: bool) -> None:
    path = output_dir / MANIFEST
    if overwrite or not path.is_file():
        return
    try:
        previous = json.loads(path.read_text()).get("defense_config", {})
    except (json.JSONDecodeError, AttributeError):
        return
    if _comparable(previous) != _comparable(config):
        raise InputError(
            f"{output_dir} holds images purified with another defense ({previous}); this run "
            f"uses {config}. Pass overwrite (--overwrite) to redo every image, or choose "
            "another output folder"
        )


def _build(defense: nn.Module | str) -> tuple[nn.Module, str | None]:
    """A defense module from a module or a spec such as ``"jpeg:quality=75"``."""
    if not isinstance(defense, str):
        return defense, None
    from irad.defenses import build_defense_spec

    return build_defense_spec(defense), defense


class BundledDefenseWarning(UserWarning):
    """The bundled CIFAR-10 IRAD is applied to images unlike CIFAR-10's."""


def _is_bundled_cifar10(module: nn.Module) -> bool:
    """Whether ``module`` is the IRAD the package ships (trained on CIFAR-10, 32 x 32)."""
    from irad.checkpoint import bundled_checkpoint

    source, bundled = getattr(module, "source", None), bundled_checkpoint("irad", "cifar10")
    return bool(source) and bundled is not None and Path(source).resolve() == bundled.resolve()


def warn_if_not_cifar_like(module: nn.Module, sizes: Sequence[tuple[int, int]]) -> None:
    """Warn (:class:`BundledDefenseWarning`) when the bundled CIFAR-10 IRAD is to purify images
    that are not 32 x 32: it runs at any size, but it learned CIFAR-10's statistics only."""
    other = sorted({s for s in sizes if s != (32, 32)})
    if not other or not _is_bundled_cifar10(module):
        return
    shown = ", ".join(f"{h}x{w}" for h, w in other[:3]) + (", ..." if len(other) > 3 else "")
    warnings.warn(
        f"the bundled IRAD was trained on CIFAR-10 (32x32 images of its 10 classes), and these "
        f"images are {shown}: it will run, but it is no defense trained for them. Train one on "
        "your images (docs/own-data.md) and pass it with --defense irad:checkpoint=RUN",
        BundledDefenseWarning,
        stacklevel=3,
    )


def purify_folder(
    defense: nn.Module | str,
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    seed: int = 0,
) -> PurifySummary:
    """Purify every image under ``input_dir`` with ``defense``; write PNGs under ``output_dir``.

    Args:
        defense: a :class:`~irad.defenses.Defense` (moved to ``device``, put in eval mode), or a
            defense spec such as ``"irad"`` or ``"jpeg:quality=75"`` (recorded as typed).
        input_dir: folder read recursively (png, jpg, jpeg, bmp, webp; hidden entries skipped).
        output_dir: outputs at the same relative paths with a ``.png`` suffix.
        batch_size: images per batch; only images of equal size share a batch.
        device: torch device (``"auto"``: CUDA when available).
        overwrite: redo images whose output exists (default: skip them, i.e. resume).
        progress: show a tqdm bar.
        seed: seeds torch's RNG for the run (for random defenses); the caller's RNG state is
            restored afterwards.

    Raises:
        InputError: missing/empty input folder, output inside the input or not writable, name
            clashes, another defense's outputs in ``output_dir``.
        DataError: an image that cannot be read (named), found before any image is purified.

    Warns:
        BundledDefenseWarning: the bundled CIFAR-10 IRAD on images that are not 32 x 32.

    Shape:
        - Each image is fed as ``(B, 3, H, W)`` float in [0, 1] (8-bit pixels / 255, 16-bit
          grey PNGs / 65535); outputs are ``H x W`` RGB PNGs of the input's bit depth.
    """
    batch_size = check_batch_size(batch_size)
    seed = check_seed(seed)
    dev = resolve_device(device)
    src_root, dst_root = Path(input_dir).expanduser(), Path(output_dir).expanduser()
    check_folders(src_root, dst_root)
    images = find_images(src_root)
    if not images:
        raise InputError(
            f"no images under {src_root} (looked recursively for "
            f"{', '.join(IMAGE_EXTENSIONS)} files)"
        )
    outputs = _output_paths(images, src_root, dst_root)
    todo = [(s, d) for s, d in zip(images, outputs, strict=True) if overwrite or not d.exists()]
    module, spec = _build(defense)
    config = module.config() if hasattr(module, "config") else {"name": type(module).__name__}
    _check_manifest(dst_root, config, overwrite)
    # Every header is read before the first batch: an unreadable file fails the run before any
    # image is purified.
    sizes = {src: image_size(src) for src, _ in todo}
    warn_if_not_cifar_like(module, list(sizes.values()))

    start = time.perf_counter()
    manifest: dict[str, Any] = {
        "command": "purify",
        "defense": spec,
        "defense_config": config,
        "seed": seed,
        "input": str(src_root),
        "images": len(images),
        "output_format": "RGB PNG of the input's bit depth (8, or 16 for 16-bit grey PNGs)",
        "status": "running",
    }
    atomic_write_json(dst_root / MANIFEST, manifest)
    module = module.to(dev).eval()
    written = deep = 0
    with (
        torch.no_grad(),
        seeded(seed, devices=[dev]),
        tqdm(total=len(todo), desc="purify", unit="img", disable=not progress) as bar,
    ):
        for batch in _batches(todo, batch_size, sizes):
            pixels = [read_rgb(src) for src, _ in batch]
            x = torch.stack([to_float(p) for p in pixels]).to(dev)
            out = module(x)
            for image, source, (_, dst) in zip(out, pixels, batch, strict=True):
                bits = bit_depth(source)
                write_png(dst, from_float(image, bits))
                deep += bits == 16
            written += len(batch)
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    manifest.update(
        status="done",
        written_this_run=written,
        written_16bit=deep,
        skipped_existing=len(images) - len(todo),
        seconds=round(seconds, 3),
        environment=environment_info(dev),
    )
    atomic_write_json(dst_root / MANIFEST, manifest)
    return PurifySummary(len(images), written, len(images) - len(todo), seconds, dst_root, deep)
