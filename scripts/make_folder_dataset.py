"""Write a class-per-folder image data set like the one of ``docs/own-data.md``.

Real images, not noise: the chosen CIFAR-10 classes, upscaled (bicubic) to ``--size`` and saved
as PNGs in ``OUT/train/<class>/`` and ``OUT/test/<class>/``. The tutorial's run
(``docs/own-data.md``) uses

    python scripts/make_folder_dataset.py --cifar10 ../shared/data/cifar10 --out data \\
        --classes bird,cat,deer,dog,horse --train-per-class 600 --test-per-class 120 --size 64

(3,000 training and 600 test images of 5 classes at 64x64). The first images of each class in
CIFAR-10's order are taken, so the folder is the same on every machine. A class folder that
already holds images is refused, so that a second run cannot mix two sizes of data set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")  # fmt: skip


def write_split(x: np.ndarray, y: np.ndarray, classes: list[str], per_class: int, size: int,
                out: Path) -> int:  # fmt: skip
    """Save the first ``per_class`` images of each class into ``out/<class>/NNNN.png``."""
    written = 0
    for name in classes:
        label = CIFAR10_CLASSES.index(name)
        picked = np.flatnonzero(y == label)[:per_class]
        if len(picked) < per_class:
            raise SystemExit(f"{name}: only {len(picked)} images, --*-per-class asks {per_class}")
        folder = out / name
        if folder.is_dir() and any(folder.iterdir()):
            raise SystemExit(f"{folder} is not empty: remove it or choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(picked):
            image = Image.fromarray(x[i])
            if size != image.width:
                image = image.resize((size, size), Image.Resampling.BICUBIC)
            image.save(folder / f"{k:04d}.png")
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar10", type=Path, required=True, help="folder of train/test.npz")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--classes", default="bird,cat,deer,dog,horse")
    parser.add_argument("--train-per-class", type=int, default=600)
    parser.add_argument("--test-per-class", type=int, default=120)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = [c for c in classes if c not in CIFAR10_CLASSES]
    if unknown:
        raise SystemExit(f"unknown classes {unknown}; CIFAR-10 has {', '.join(CIFAR10_CLASSES)}")
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        source = args.cifar10 / f"{split}.npz"
        if not source.is_file():
            raise SystemExit(f"{source} not found: --cifar10 must hold train.npz and test.npz")
        with np.load(source) as data:
            n = write_split(data["x"], data["y"], classes, per_class, args.size, args.out / split)
        print(f"{split}: {n} images of {len(classes)} classes at {args.size}x{args.size}")


if __name__ == "__main__":
    main()
