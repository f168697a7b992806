"""``irad purify``: run a defense over a folder of images (any sizes) and write PNGs.

The engine is :func:`purify_folder`; the command parses the defense spec, checks the device and
prints the summary. Outputs keep the input's relative paths with a ``.png`` suffix, are written
atomically (an interrupted run never leaves a half-written file), and existing ones are skipped,
so rerunning the same command resumes. ``OUTPUT/purify.json`` records the defense, seed and
counts; a folder purified with another defense is refused unless ``--overwrite``.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

EPILOG = """\
Examples:

\b
  # the bundled CIFAR-10 IRAD (same as --defense irad:checkpoint=cifar10)
  irad purify --defense irad --input images/ --output purified/
\b
  # your own IRAD checkpoint (a folder from train-samplenet or convert-official), on a GPU
  irad purify --defense irad:checkpoint=runs/irad-cpu --input adv/ --output pure/ \\
      --device cuda --batch-size 64
\b
  # any registered defense spec works
  irad purify --defense jpeg:quality=75 --input images/ --output jpeg75/
  irad purify --defense recons:checkpoint=runs/inr-cpu --input images/ --output recons/
\b
Every .png/.jpg/.jpeg/.bmp/.webp under --input (recursively, hidden files and folders skipped)
is read as RGB at its own size; images of equal size are batched together. Outputs are PNGs at
the same relative paths under --output. Rerunning skips images already written (--overwrite
redoes them).
"""

#: Image suffixes read from the input folder (case-insensitive).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
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

    def line(self) -> str:
        rate = f", {self.seconds / self.written:.3g} s/image" if self.written else ""
        return (
            f"{self.found} images found, {self.written} purified, {self.skipped} already there "
            f"(skipped); {self.seconds:.1f} s{rate}; output in {self.output}"
        )


# --------------------------------------------------------------------------------------------
# scanning and reading
# --------------------------------------------------------------------------------------------


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted), skipping hidden files and folders."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                out.append(Path(dirpath) / name)
    return sorted(out)


def _check_folders(input_dir: Path, output_dir: Path) -> None:
    from irad.errors import InputError

    if not input_dir.exists():
        raise InputError(f"--input {input_dir} does not exist")
    if not input_dir.is_dir():
        raise InputError(f"--input {input_dir} is not a folder (pass the folder holding images)")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"--output {output_dir} exists and is not a folder")
    src, dst = input_dir.resolve(), output_dir.resolve()
    if dst == src or src in dst.parents:
        raise InputError(
            f"--output {output_dir} is inside --input {input_dir}; a rerun would read the "
            "purified images as inputs. Choose an output folder outside the input folder"
        )


def _output_paths(images: Sequence[Path], input_dir: Path, output_dir: Path) -> list[Path]:
    from irad.errors import InputError

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


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the file header, or a DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    from irad.errors import DataError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(
            f"{path}: cannot read this image ({err}); replace or remove the file"
        ) from None
    return h, w


def _load(path: Path) -> Any:
    """The image as a uint8 tensor ``(3, H, W)`` (RGB; grayscale/alpha/palette converted)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from irad.errors import DataError

    try:
        with Image.open(path) as im:
            array = np.array(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(
            f"{path}: cannot decode this image ({err}); replace or remove the file"
        ) from None
    return torch.from_numpy(array).permute(2, 0, 1)


def _save_png(image: Any, path: Path) -> None:
    """Write a uint8 ``(3, H, W)`` tensor as PNG, atomically."""
    from PIL import Image

    from irad.utils.io import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).cpu().numpy(), "RGB").save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _batches(
    items: Sequence[tuple[Path, Path]], batch_size: int
) -> Iterator[list[tuple[Path, Path]]]:
    """Group ``(input, output)`` pairs by image size, then cut each group into batches."""
    groups: dict[tuple[int, int], list[tuple[Path, Path]]] = defaultdict(list)
    for src, dst in items:
        groups[_image_size(src)].append((src, dst))
    for size in sorted(groups):
        group = groups[size]
        for s in range(0, len(group), batch_size):
            yield group[s : s + batch_size]


# --------------------------------------------------------------------------------------------
# the engine
# --------------------------------------------------------------------------------------------


def _comparable(config: dict[str, Any]) -> str:
    """The defense config as canonical JSON, checkpoint paths made absolute."""
    cfg = dict(config)
    if isinstance(cfg.get("checkpoint"), str):
        cfg["checkpoint"] = str(Path(cfg["checkpoint"]).resolve())
    return json.dumps(cfg, sort_keys=True, default=str)


def _check_manifest(output_dir: Path, config: dict[str, Any], overwrite: bool) -> None:
    from irad.errors import InputError

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
            f"uses {config}. Pass --overwrite to redo every image, or choose another --output"
        )


def purify_folder(
    defense: Any,
    input_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    device: Any = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    seed: int = 0,
    spec: str | None = None,
) -> PurifySummary:
    """Purify every image under ``input_dir`` with ``defense``; write PNGs under ``output_dir``.

    Args:
        defense: a :class:`~irad.defenses.Defense` (moved to ``device``, put in eval mode).
        input_dir: folder read recursively (png, jpg, jpeg, bmp, webp; hidden entries skipped).
        output_dir: outputs at the same relative paths with a ``.png`` suffix.
        batch_size: images per batch; only images of equal size share a batch.
        device: torch device.
        overwrite: redo images whose output exists (default: skip them, i.e. resume).
        progress: show a tqdm bar.
        seed: seeds torch once before the first batch (for random defenses).
        spec: the defense spec as typed, recorded in ``purify.json``.

    Raises:
        InputError: missing/empty input folder, output inside the input, name clashes.
        DataError: an image that cannot be read (named).

    Shape:
        - Each image is fed as ``(B, 3, H, W)`` float in [0, 1]; outputs are ``H x W`` PNGs.

    Example:
        >>> from irad.defenses import build_defense
        >>> purify_folder(build_defense("jpeg", quality=75), "in", "out")  # doctest: +SKIP
    """
    import torch
    from tqdm.auto import tqdm

    from irad.errors import InputError
    from irad.utils.env import environment_info
    from irad.utils.io import atomic_write_json

    src_root, dst_root = Path(input_dir).expanduser(), Path(output_dir).expanduser()
    _check_folders(src_root, dst_root)
    images = find_images(src_root)
    if not images:
        raise InputError(
            f"no images under {src_root} (looked recursively for {', '.join(IMAGE_SUFFIXES)} files)"
        )
    outputs = _output_paths(images, src_root, dst_root)
    todo = [(s, d) for s, d in zip(images, outputs, strict=True) if overwrite or not d.exists()]
    config = defense.config() if hasattr(defense, "config") else {"name": type(defense).__name__}
    _check_manifest(dst_root, config, overwrite)

    start = time.perf_counter()
    manifest = {
        "command": "purify",
        "defense": spec,
        "defense_config": config,
        "seed": seed,
        "input": str(src_root),
        "images": len(images),
        "status": "running",
    }
    atomic_write_json(dst_root / MANIFEST, manifest)
    defense = defense.to(device).eval()
    torch.manual_seed(seed)
    written = 0
    with (
        torch.no_grad(),
        tqdm(total=len(todo), desc="purify", unit="img", disable=not progress) as bar,
    ):
        for batch in _batches(todo, batch_size):
            x = torch.stack([_load(src) for src, _ in batch]).to(device)
            out = defense(x.float().div_(255))
            out = out.mul(255).round_().clamp_(0, 255).to(torch.uint8).cpu()
            for image, (_, dst) in zip(out, batch, strict=True):
                _save_png(image, dst)
            written += len(batch)
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    manifest.update(
        status="done",
        written_this_run=written,
        skipped_existing=len(images) - len(todo),
        seconds=round(seconds, 3),
        environment=environment_info(device),
    )
    atomic_write_json(dst_root / MANIFEST, manifest)
    return PurifySummary(len(images), written, len(images) - len(todo), seconds, dst_root)


# --------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------


def _device(name: str) -> Any:
    import torch

    from irad.errors import InputError

    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise InputError(
            f"--device {name!r} is not a device name ({err}); try cpu or cuda"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available here; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {name}: MPS is not available here; use --device cpu")
    return dev


def purify(
    input_dir: Annotated[
        Path, typer.Option("--input", "-i", help="Folder of images (read recursively).")
    ],
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for the purified PNGs.")
    ],
    defense: Annotated[
        str,
        typer.Option(
            "--defense",
            "-d",
            help="Defense spec: irad, irad:checkpoint=DIR, recons:checkpoint=DIR, "
            "jpeg:quality=75, ... (default: the bundled CIFAR-10 IRAD).",
        ),
    ] = "irad",
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, mps, ...")] = "cpu",
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images per batch (only equal sizes are batched).")
    ] = 16,
    overwrite: Annotated[
        bool, typer.Option(help="Redo images whose output already exists.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for random defenses.")] = 0,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Purify every image in a folder with a defense (IRAD by default) and write PNGs."""
    import torch

    from irad.defenses import build_defense
    from irad.evaluate.specs import parse_spec

    if threads is not None:
        torch.set_num_threads(threads)
    dev = _device(device)
    # Fail on folder problems before loading a (possibly large) model.
    _check_folders(input_dir.expanduser(), output_dir.expanduser())
    name, params = parse_spec(defense)
    model = build_defense(name, **params)
    summary = purify_folder(
        model,
        input_dir,
        output_dir,
        batch_size=batch_size,
        device=dev,
        overwrite=overwrite,
        progress=progress,
        seed=seed,
        spec=defense,
    )
    typer.echo(f"{defense}: {summary.line()}")


def register(app: typer.Typer) -> None:
    """Add ``purify`` to ``app``."""
    app.command("purify", epilog=EPILOG, no_args_is_help=True)(purify)
