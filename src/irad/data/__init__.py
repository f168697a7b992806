"""Data sets: CIFAR-10/100 (downloaded with checksums, or a local copy), ``.npz`` files and
image folders, with deterministic subsets, resumable batching and train augmentation.

Example:
    >>> from irad.data import RandomCropFlip, iterate_batches, load_dataset
    >>> train = load_dataset("cifar10", "train")  # doctest: +SKIP
    >>> for x, y in iterate_batches(train, 128, shuffle=True, seed=0,
    ...                             augment=RandomCropFlip(4)):  # doctest: +SKIP
    ...     ...
"""

from irad.data.augment import RandomCropFlip, random_crop_flip
from irad.data.batching import iterate_batches, num_batches
from irad.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR_SOURCES,
    DatasetSource,
    load_cifar,
)
from irad.data.datasets import ImageDataset
from irad.data.download import download_url, extract_tarball, verify_file
from irad.data.folder import ImageFolderDataset
from irad.data.image_io import IMAGE_EXTENSIONS, find_images, read_rgb, write_png
from irad.data.load import DATASETS, Dataset, load_dataset
from irad.data.paths import DATA_ENV, resolve_data_dir

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR_SOURCES",
    "DATASETS",
    "DATA_ENV",
    "IMAGE_EXTENSIONS",
    "Dataset",
    "DatasetSource",
    "ImageDataset",
    "ImageFolderDataset",
    "RandomCropFlip",
    "download_url",
    "extract_tarball",
    "find_images",
    "iterate_batches",
    "load_cifar",
    "load_dataset",
    "num_batches",
    "random_crop_flip",
    "read_rgb",
    "resolve_data_dir",
    "verify_file",
    "write_png",
]
