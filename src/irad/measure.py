"""Measurements behind two commands, from the run to the written record.

* :func:`classify_dataset` (``irad classify``): clean accuracy of a classifier checkpoint.
* :func:`reconstruction_quality` (``irad quality``): Table 17's image quality of a
  reconstruction on adversarial pairs.

Each checks its output path before the work starts and writes its record atomically.

Example:
    >>> from irad.measure import classify_dataset
    >>> run = classify_dataset("resnet20-12fca82f.th", n=1000)  # doctest: +SKIP
    >>> run.line()  # doctest: +SKIP
    'resnet20 on cifar10/test[first 1000] (1000 images): accuracy 91.50 % (915/1000) in ...'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from irad.checks import check_batch_size, check_count
from irad.errors import SettingError
from irad.evaluate.accuracy import AccuracyResult, accuracy
from irad.utils.env import environment_info, resolve_device
from irad.utils.io import atomic_write_json, check_writable_file

__all__ = ["ClassifyRun", "classify_dataset", "reconstruction_quality"]


@dataclass
class ClassifyRun:
    """What :func:`classify_dataset` measured, and the record it wrote (if asked to)."""

    model: str
    data: str
    result: AccuracyResult
    record: dict[str, Any]

    def line(self) -> str:
        """One summary line: accuracy, counts, time and images per second."""
        r = self.result
        return (
            f"{self.model} on {self.data} ({r.total} images): accuracy {r.percent:.2f} % "
            f"({r.correct}/{r.total}) in {r.seconds:.1f} s, {r.images_per_second:.0f} images/s"
        )


def classify_dataset(
    weights: str | os.PathLike[str],
    *,
    arch: str | None = None,
    dataset: str = "cifar10",
    split: str = "test",
    data_dir: str | os.PathLike[str] | None = None,
    n: int | None = None,
    seed: int | None = None,
    subset: str | None = None,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    progress: bool = True,
    json_out: str | os.PathLike[str] | None = None,
) -> ClassifyRun:
    """Measure the top-1 accuracy of the classifier in ``weights`` on a data set.

    Args:
        weights: an irad checkpoint (prefix, folder or bundled name) or an akamaster ``.th``.
        arch: its architecture when the checkpoint does not record one.
        dataset, split, data_dir: as :func:`irad.data.load_dataset`.
        n: use ``n`` images; more than the data set holds is refused.
        subset: how the ``n`` are picked (:func:`irad.data.select_subset`): ``"first"``,
            ``"random"`` or ``"stratified"`` (seeded with ``seed``, default 0). Default:
            ``"random"`` when a ``seed`` is given, else ``"first"``.
        batch_size, device, progress: as :func:`irad.evaluate.accuracy.accuracy`.
        json_out: also write the result, settings and environment here (checked before the
            work starts).

    Raises:
        SettingError: ``seed`` without ``n``, ``n`` above the data set size, a bad device.
        ConfigError: the data set's classes are not the classifier's
            (:func:`irad.data.check_classes`).
    """
    from irad.data import check_classes, load_dataset, select_subset
    from irad.models import load_classifier, model_fingerprint

    if seed is not None and n is None:
        raise SettingError("seed picks a random subset, so it needs n (--n)")
    method = subset or ("random" if seed is not None else "first")
    batch_size = check_batch_size(batch_size)
    dev = resolve_device(device)
    if json_out is not None:
        json_out = check_writable_file(json_out, "--json")

    clf = load_classifier(weights, arch=arch)
    data = load_dataset(dataset, split, data_dir)
    if n is not None:
        n = check_count(n, "--n", len(data), f"images in {data.description}")
        data = select_subset(data, n, method, 0 if seed is None else seed)
    max_label = int(data.y.max()) if len(data.y) else -1
    check_classes(clf, data.classes, max_label, data.description)

    result = accuracy(clf, data, batch_size=batch_size, device=dev, progress=progress)
    record: dict[str, Any] = {
        "command": "classify",
        "model": clf.config,
        "weights": str(weights),
        "model_fingerprint": model_fingerprint(clf),
        "dataset": dataset,
        "split": split,
        "subset": data.description,
        "n": n,
        "seed": seed,
        "subset_method": method if n is not None else None,
        "batch_size": batch_size,
        **result.to_dict(),
        "accuracy_percent": result.percent,
        "environment": environment_info(dev),
    }
    if json_out is not None:
        atomic_write_json(Path(json_out), record)
    return ClassifyRun(clf.name, data.description, result, record)


def reconstruction_quality(
    recons: str | os.PathLike[str],
    pairs: str | os.PathLike[str],
    *,
    n: int | None = None,
    batch_size: int = 100,
    data_dir: str | os.PathLike[str] | None = None,
    radius: float | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    json_out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Table 17 on stored pairs: clean vs adversarial and clean vs RECONS(adversarial).

    Args:
        recons: an implicit-representation checkpoint (folder, prefix, IRAD checkpoint or a
            bundled name).
        pairs: a folder from ``irad prepare-pairs``.
        n: use the first ``n`` pairs (default: 1000, or all if fewer); more than there are is
            refused.
        batch_size, data_dir, device, progress: as elsewhere.
        radius: low-frequency disc radius in FFT bins (default: ``min(H, W) / 8``).
        json_out: also write the result and settings here (checked before the work starts).

    Returns:
        The record: PSNR, SSIM, FFT losses (and LPIPS when available) of both comparisons,
        ``n``, the reconstruction's config, the pairs' settings and the environment.
    """
    from tqdm.auto import tqdm

    from irad.defenses import ImplicitReconstruction
    from irad.evaluate.quality import lpips_metric, quality_table
    from irad.train.pairs import PairDataset

    batch_size = check_batch_size(batch_size)
    dev = resolve_device(device)
    if json_out is not None:
        json_out = check_writable_file(json_out, "--json")
    model = ImplicitReconstruction.from_pretrained(recons, map_location=dev).eval()
    data = PairDataset(pairs, data_dir=data_dir)
    total = (
        min(1000, len(data)) if n is None else check_count(n, "--n", len(data), f"pairs in {pairs}")
    )
    lpips_fn, lpips_status = lpips_metric(dev)

    def batches() -> Any:
        starts = range(0, total, batch_size)
        for s in tqdm(starts, desc="quality", unit="batch", disable=not progress):
            clean, adv, _ = data.take(range(s, min(total, s + batch_size)))
            yield clean.to(dev), adv.to(dev)

    result = quality_table(batches(), model, lpips_fn=lpips_fn, radius=radius)
    record = {
        "command": "quality",
        "recons": model.config(),
        "recons_source": model.source,
        "pairs": str(pairs),
        "pairs_config": data.manifest.get("config"),
        "radius": radius,
        "lpips": lpips_status,
        **result,
        "environment": environment_info(dev),
    }
    if json_out is not None:
        atomic_write_json(Path(json_out), record)
    return record
