"""Image files: finding them in a folder, reading them as RGB, writing PNGs; 8 and 16 bits.

One walk (:func:`find_images`) and one reader (:func:`read_rgb`) serve both the image-folder
data sets and the purification of a folder, so the two accept the same files.

Bit depth: PIL opens a 16-bit grey PNG in mode ``I;16`` (or ``I``), and its ``convert("RGB")``
clips every value above 255, i.e. nearly the whole image turns white. :func:`read_rgb` reads
such images at 16 bits instead (scale 65535); 16-bit colour PNGs are opened by PIL at 8 bits
already (their high bytes), which is correct to 8 bits. :func:`write_png` writes 8-bit or 16-bit
RGB PNGs, so an output can keep its input's bit depth.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from irad.errors import DataError
from irad.utils.io import atomic_write_bytes

#: Suffixes of the image files irad reads from folders (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

# PIL modes of single-channel images with more than 8 bits per pixel.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def is_image_file(name: str) -> bool:
    """Whether a file name has an image suffix and is not hidden."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``root``, recursively, hidden files and folders skipped.

    The order is stable: each folder's images sorted by name, then its sub-folders in sorted
    order. Symbolic links to folders are followed.
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames) if is_image_file(f)]
    return found


def _cannot_read(path: Path, err: Exception) -> DataError:
    return DataError(f"{path}: cannot read this image ({err}); replace or remove the file")


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(H, W)`` from the file header, or a :class:`DataError` naming the file."""
    try:
        with Image.open(path) as image:
            w, h = image.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise _cannot_read(Path(path), err) from None
    return h, w


def read_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """The image at ``path`` as RGB pixels ``(H, W, 3)``: uint8, or uint16 for 16-bit grey.

    Palette, grey, alpha and CMYK images are converted to RGB (alpha dropped). A 16-bit grey
    PNG keeps its 16 bits (uint16, full scale 65535); grey becomes three equal channels.

    Raises:
        DataError: the file cannot be decoded, or holds values no 16-bit image has.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if image.mode in _WIDE_GREY_MODES:
                grey = np.asarray(image, dtype=np.int64)
                if grey.size and (grey.min() < 0 or grey.max() > 65535):
                    raise DataError(
                        f"{path}: mode {image.mode} values in [{grey.min()}, {grey.max()}] are "
                        "not 16-bit pixels; save the image as an 8- or 16-bit PNG"
                    )
                return np.repeat(grey.astype(np.uint16)[..., None], 3, axis=2)
            if image.mode == "F":
                raise DataError(
                    f"{path}: floating-point (mode F) images are not supported; save it as an "
                    "8- or 16-bit PNG"
                )
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise _cannot_read(path, err) from None


def bit_depth(pixels: np.ndarray) -> int:
    """8 for uint8 pixels (:func:`read_rgb`'s usual result), 16 for uint16."""
    return 8 if pixels.dtype == np.uint8 else 16


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels of an 8- or 16-bit image (16 bits are rounded: ``v * 255 / 65535``)."""
    if pixels.dtype == np.uint8:
        return pixels
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def to_float(pixels: np.ndarray) -> Tensor:
    """``(H, W, 3)`` 8- or 16-bit pixels as a float tensor ``(3, H, W)`` in [0, 1]."""
    scale = 255.0 if bit_depth(pixels) == 8 else 65535.0
    array = pixels.astype(np.float32) if pixels.dtype != np.uint8 else pixels
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(scale)


def from_float(image: Tensor, bits: int = 8) -> np.ndarray:
    """A ``(3, H, W)`` float image in [0, 1] as ``(H, W, 3)`` pixels of ``bits`` (8 or 16)."""
    top = 255 if bits == 8 else 65535
    q = image.detach().float().mul(top).round_().clamp_(0, top).permute(1, 2, 0).cpu().numpy()
    return q.astype(np.uint8 if bits == 8 else np.uint16)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bytes(pixels: np.ndarray) -> bytes:
    """PNG bytes of RGB pixels ``(H, W, 3)``: 8-bit for uint8, 16-bit (48-bit RGB) for uint16.

    PIL writes 8-bit RGB only, so 16-bit RGB is encoded here (filter type 0 on every row).
    """
    if pixels.dtype == np.uint8:
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
        return buffer.getvalue()
    h, w, _ = pixels.shape
    rows = pixels.astype(">u2").reshape(h, w * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter byte 0, then the row
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16 bits, RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike[str], pixels: np.ndarray) -> Path:
    """Write :func:`png_bytes` of ``pixels`` to ``path`` atomically."""
    return atomic_write_bytes(path, png_bytes(pixels))
