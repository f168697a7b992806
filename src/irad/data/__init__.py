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
from irad.data.batching import channel_stats, iterate_batches, num_batches
from irad.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CIFAR_SOURCES,
    DatasetSource,
    load_cifar,
)
from irad.data.classes import check_classes, classifier_classes
from irad.data.datasets import (
    SUBSET_METHODS,
    FewClassesWarning,
    ImageDataset,
    dataset_record,
    select_subset,
)
from irad.data.download import download_url, extract_tarball, verify_file
from irad.data.folder import ImageFolderDataset, folder_to_npz
from irad.data.image_io import IMAGE_EXTENSIONS, find_images, read_rgb, write_png
from irad.data.load import DATASETS, Dataset, in_memory, load_dataset
from irad.data.paths import DATA_ENV, resolve_data_dir

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_CLASSES",
    "CIFAR_SOURCES",
    "DATASETS",
    "DATA_ENV",
    "IMAGE_EXTENSIONS",
    "SUBSET_METHODS",
    "Dataset",
    "DatasetSource",
    "FewClassesWarning",
    "ImageDataset",
    "ImageFolderDataset",
    "RandomCropFlip",
    "channel_stats",
    "check_classes",
    "classifier_classes",
    "dataset_record",
    "download_url",
    "extract_tarball",
    "find_images",
    "folder_to_npz",
    "in_memory",
    "iterate_batches",
    "load_cifar",
    "load_dataset",
    "num_batches",
    "random_crop_flip",
    "read_rgb",
    "resolve_data_dir",
    "select_subset",
    "verify_file",
    "write_png",
]
