"""Adversarial training pairs (Sec. 6, A.1): PGD on a surrogate, stored in resumable chunks.

The implicit representation (PGD denoising, Table 7) and SampleNet are trained on pairs
``(clean, PGD(clean))``. :func:`generate_pairs` attacks a (seeded) subset of the training set
with L∞ PGD (ε = 8/255, step 2/255, ``steps`` iterations, random start; the paper uses 100 steps
with a ResNet-18, the CPU protocol 10 with a ResNet-20) and writes::

    out/manifest.json                    configuration, surrogate sha256, data fingerprint, totals
    out/chunks/chunk-00000.safetensors   adv: uint8 (n, H, W, 3); indices: int64 (n,)
    out/chunks/chunk-00000.json          per-chunk statistics (accuracies, rounding, L∞)

Storage and its cost in exactness
---------------------------------
Adversarial images are stored as **uint8**, like the clean images they are paired with (4× less
disk than float32, and the pair is then exactly what a saved PNG would hold). PGD's float result
``x_adv`` is rounded to the nearest level, ``q = round(255 x_adv)``, which moves each pixel by at
most 0.5/255. The rounded image is then clipped to the ε-ball *in uint8 space*,
``|q - 255 x| <= floor(255 ε)`` (= 8 levels for ε = 8/255), and to [0, 255], so a stored pair is
always inside the threat model (rounding alone could not leave it for an integer budget, but the
clip makes that a guarantee). Rounding can undo a few successful perturbations; every chunk
records the surrogate's accuracy on the float and on the rounded adversarial images, and the
manifest the totals, so the cost is measured rather than assumed.

Chunks are written atomically (each with the sha256 of its tensors, :func:`irad.checkpoint.
save_state`), and an interrupted run resumes by calling :func:`generate_pairs` (or ``irad
prepare-pairs``) again with the same arguments: a finished chunk is kept when it reads back whole
(hash, run key, rows and indices), and a damaged one is recomputed with a warning. A different
configuration, surrogate or data subset in the same folder is refused.

:class:`PairDataset` loads the pairs back, aligned with the clean images of the same data set
(checked against the recorded fingerprint).
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from irad.checkpoint import checkpoint_paths, load_state, save_state
from irad.checks import (
    check_batch_size,
    check_bool,
    check_count,
    check_positive,
    check_positive_int,
    check_seed,
)
from irad.errors import CheckpointError, ConfigError, DataError, InputError
from irad.utils.env import environment_info
from irad.utils.io import atomic_write_json

PAIRS_FORMAT = "irad.adversarial-pairs"
PAIRS_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PairConfig:
    """How the adversarial images are made (everything that changes their pixels).

    Args:
        eps: L∞ budget in /255 units (8).
        alpha: PGD step in /255 units (2).
        steps: PGD iterations (paper 100, CPU protocol 10).
        random_start: PGD's uniform random start in the ε-ball.
        seed: seeds the subset choice (in the CLI) and PGD's random start of every batch.
        chunk: images per chunk file (the unit of resumption).
        batch_size: images per attack call (the random start of a batch depends on it).
    """

    eps: float = 8.0
    alpha: float = 2.0
    steps: int = 10
    random_start: bool = True
    seed: int = 0
    chunk: int = 1000
    batch_size: int = 250

    def __post_init__(self) -> None:
        # Checked, not converted: the values as given make the run key.
        check_positive(self.eps, "eps (in /255 units)", 255)
        check_positive(self.alpha, "alpha (in /255 units)", 255)
        check_positive_int(self.steps, "steps")
        check_bool(self.random_start, "random_start")
        check_seed(self.seed)
        check_positive_int(self.chunk, "chunk")
        check_batch_size(self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def images_fingerprint(x: Tensor, y: Tensor) -> str:
    """sha256 over shape, pixels and labels (the same recipe as ``ImageDataset.fingerprint``)."""
    h = hashlib.sha256()
    h.update(f"ImageDataset:{tuple(x.shape)}".encode())
    h.update(x.contiguous().numpy().tobytes())
    h.update(y.contiguous().numpy().tobytes())
    return h.hexdigest()


def _module_fingerprint(module: nn.Module) -> str:
    try:
        from irad.models import model_fingerprint

        return model_fingerprint(module)
    except ImportError:  # pragma: no cover - models package always present in a full install
        h = hashlib.sha256()
        for name, t in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def round_to_uint8(x_adv: Tensor, x_clean_u8: Tensor, eps: float) -> Tensor:
    """Round adversarial images to uint8 and clip them to the ε-ball of the clean uint8 images.

    Args:
        x_adv: float adversarial images in [0, 1].
        x_clean_u8: the clean images as uint8 (same layout as ``x_adv`` after ``* 255``).
        eps: budget in /255 units; the stored images satisfy ``|q - c| <= floor(eps)``.

    Shape:
        - x_adv, x_clean_u8: the same shape (any layout). Output: that shape, uint8.

    Example:
        >>> c = torch.tensor([100], dtype=torch.uint8)
        >>> round_to_uint8(torch.tensor([108.6 / 255]), c, 8.0)
        tensor([108], dtype=torch.uint8)
    """
    budget = math.floor(eps + 1e-9)
    q = torch.round(x_adv.detach().double() * 255).to(torch.int16)
    c = x_clean_u8.to(torch.int16)
    q = torch.minimum(torch.maximum(q, c - budget), c + budget).clamp(0, 255)
    return q.to(torch.uint8)


def _chunk_prefix(out_dir: Path, k: int) -> Path:
    return out_dir / "chunks" / f"chunk-{k:05d}"


def _chunk_done(out_dir: Path, k: int) -> bool:
    """Whether chunk ``k`` has both files (see :func:`_chunk_problem` for whether it is whole)."""
    weights, cfg = checkpoint_paths(_chunk_prefix(out_dir, k))
    return weights.is_file() and cfg.is_file()


def _chunk_problem(out_dir: Path, k: int, run_key: str, indices: Tensor) -> str | None:
    """What is wrong with finished chunk ``k`` (``None``: it is whole and belongs to this run).

    Reads it back: the weights must match the sha256 its JSON recorded (or, for chunks from
    before those records, load), and hold this run's rows and data-set indices.
    """
    try:
        tensors, meta = load_state(_chunk_prefix(out_dir, k))
    except CheckpointError as err:
        return str(err)
    if meta.get("run_key") != run_key:
        return "it belongs to another run (run key mismatch)"
    adv, stored = tensors.get("adv"), tensors.get("indices")
    if adv is None or stored is None or adv.dtype != torch.uint8:
        return "it lacks the uint8 'adv' or the 'indices' tensor"
    if adv.shape[0] != indices.shape[0] or not torch.equal(stored, indices):
        return f"it holds rows other than {meta.get('rows')}"
    return None


def _run_key(config: PairConfig, surrogate: dict[str, Any], data: dict[str, Any]) -> str:
    ident = {
        "config": config.to_dict(),
        "surrogate": surrogate.get("fingerprint"),
        "data": data.get("fingerprint"),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _differences(
    old: dict[str, Any], config: PairConfig, surrogate: dict[str, Any], data: dict[str, Any]
) -> str:
    parts = [
        f"{k}: {old.get('config', {}).get(k)!r} -> {v!r}"
        for k, v in config.to_dict().items()
        if old.get("config", {}).get(k) != v
    ]
    if old.get("surrogate", {}).get("fingerprint") != surrogate.get("fingerprint"):
        parts.append("surrogate weights differ")
    if old.get("data", {}).get("fingerprint") != data.get("fingerprint"):
        parts.append("clean images differ")
    return "; ".join(parts) or "unknown difference"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------


def _attack_batch(
    surrogate: nn.Module, x: Tensor, y: Tensor, config: PairConfig, seed: int
) -> Tensor:
    from irad.attacks import build_attack

    attack = build_attack(
        "pgd",
        surrogate,
        eps=config.eps,
        alpha=config.alpha,
        steps=config.steps,
        random_start=config.random_start,
        seed=seed,
    )
    return attack(x, y)


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).argmax(dim=1)


def generate_pairs(
    surrogate: nn.Module,
    images: Tensor,
    labels: Tensor,
    out_dir: str | os.PathLike[str],
    config: PairConfig | None = None,
    *,
    indices: Tensor | None = None,
    surrogate_info: dict[str, Any] | None = None,
    data_info: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Attack ``images`` with PGD on ``surrogate`` and store the pairs in resumable chunks.

    Args:
        surrogate: classifier, images in [0, 1] -> logits (an irad ``Classifier``).
        images: the clean images as uint8 ``(N, H, W, 3)`` (``ImageDataset.x``).
        labels: int64 ``(N,)``.
        out_dir: output folder (created; resumed if it holds a run of the same configuration).
        config: :class:`PairConfig`.
        indices: row of each image in its full data set (stored with the pairs; default 0..N-1).
        surrogate_info: recorded in the manifest (e.g. ``{"name": "resnet20", "weights": path,
            "sha256": ...}``); the weights' fingerprint is added.
        data_info: recorded in the manifest (e.g. ``{"dataset": "cifar10", "split": "train",
            "description": ...}``); the images' fingerprint is added.
        device: where the attack runs.
        progress: show a tqdm bar.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every process runs this with the same arguments and
    attacks the chunks ``k`` with ``k mod WORLD_SIZE == RANK``; a chunk's pairs depend on its rows
    alone (each batch's seed is a function of its first row), so the folder holds exactly what
    one process would have written. Rank 0 writes the manifest. ``out_dir`` must be one folder
    seen by every process (a shared file system across nodes).

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).
    """
    config = config or PairConfig()
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise InputError("images must be a uint8 tensor (N, H, W, 3), e.g. ImageDataset.x")
    if images.shape[-1] != 3:
        raise InputError(f"images must be NHWC with 3 channels, got {tuple(images.shape)}")
    n = images.shape[0]
    if labels.shape != (n,):
        raise InputError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if n == 0:
        raise InputError("no images to attack")
    indices = torch.arange(n) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
    if indices.shape != (n,):
        raise InputError(f"indices must have shape ({n},), got {tuple(indices.shape)}")

    from irad.train.distributed import (
        WORK_TIMEOUT,
        context_from_env,
        local_device,
        setup_distributed,
    )

    ctx = context_from_env()
    if ctx.is_distributed:  # torchrun: this process attacks its share of the chunks
        device = local_device(torch.device(device), ctx)
        ctx = setup_distributed(device, timeout=WORK_TIMEOUT, until_exit=True)
    out = Path(out_dir)
    surrogate = surrogate.to(device).eval()
    surrogate_rec = {**(surrogate_info or {}), "fingerprint": _module_fingerprint(surrogate)}
    data_rec = {
        **(data_info or {}),
        "n": n,
        "image_shape": list(images.shape[1:]),
        "fingerprint": images_fingerprint(images, labels),
        "indices_sha256": hashlib.sha256(indices.contiguous().numpy().tobytes()).hexdigest(),
    }
    run_key = _run_key(config, surrogate_rec, data_rec)
    n_chunks = math.ceil(n / config.chunk)

    manifest_path = out / MANIFEST
    if manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("run_key") != run_key:
            raise ConfigError(
                f"{out} holds pairs made with a different setup "
                f"({_differences(old, config, surrogate_rec, data_rec)}); use another --out "
                "folder, or delete this one to start over"
            )
        created = old.get("created", _now())
    else:
        created = _now()

    manifest: dict[str, Any] = {
        "format": PAIRS_FORMAT,
        "format_version": PAIRS_VERSION,
        "status": "running",
        "run_key": run_key,
        "config": config.to_dict(),
        "surrogate": surrogate_rec,
        "data": data_rec,
        "chunks": n_chunks,
        "storage": {
            "adv": "uint8 (n, H, W, 3), rounded to the nearest level and clipped to "
            "|adv - clean| <= floor(eps) levels",
            "indices": "int64 (n,), row of each image in the full data set",
        },
        "created": created,
        "environment": environment_info(device),
    }
    ctx.on_main(lambda: atomic_write_json(manifest_path, manifest))

    todo, mine = [], range(ctx.rank, n_chunks, ctx.world_size)
    for k in mine:
        if not _chunk_done(out, k):
            todo.append(k)
            continue
        lo, hi = k * config.chunk, min(n, (k + 1) * config.chunk)
        problem = _chunk_problem(out, k, run_key, indices[lo:hi])
        if problem is not None:
            warnings.warn(
                f"chunk {k} of {out} is damaged ({problem}); recomputing it",
                RuntimeWarning,
                stacklevel=2,
            )
            todo.append(k)
    rows = sum(min(config.chunk, n - k * config.chunk) for k in mine)
    bar = tqdm(
        total=rows,
        initial=rows - sum(min(config.chunk, n - k * config.chunk) for k in todo),
        desc=f"PGD-{config.steps} pairs",
        unit="img",
        disable=not progress or not ctx.is_main,
    )
    for k in todo:
        lo, hi = k * config.chunk, min(n, (k + 1) * config.chunk)
        advs, stats = [], _ChunkStats()
        for s in range(lo, hi, config.batch_size):
            e = min(hi, s + config.batch_size)
            x_u8 = images[s:e]
            x = x_u8.permute(0, 3, 1, 2).float().div(255).to(device)
            y = labels[s:e].to(device)
            # One seed per batch, a function of the run seed and the batch's first row only.
            x_adv = _attack_batch(surrogate, x, y, config, seed=config.seed * 1_000_003 + s)
            q = round_to_uint8(x_adv.cpu(), x_u8.permute(0, 3, 1, 2), config.eps)
            x_q = q.float().div(255).to(device)
            stats.add(
                y,
                _predict(surrogate, x),
                _predict(surrogate, x_adv),
                _predict(surrogate, x_q),
                x,
                x_adv,
                x_q,
            )
            advs.append(q.permute(0, 2, 3, 1).contiguous())
            bar.update(e - s)
        save_state(
            _chunk_prefix(out, k),
            {"adv": torch.cat(advs), "indices": indices[lo:hi].clone()},
            {"run_key": run_key, "chunk": k, "rows": [lo, hi], **stats.to_dict()},
        )
    bar.close()
    ctx.barrier()  # every chunk is written

    def finish() -> dict[str, Any]:
        manifest["status"] = "complete"
        manifest["totals"] = summarize_chunks(out, n_chunks)
        manifest["finished"] = _now()
        atomic_write_json(manifest_path, manifest)
        return manifest

    return ctx.on_main(finish)


def prepare_pairs(
    weights: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PairConfig | None = None,
    *,
    surrogate: str | None = None,
    dataset: str = "cifar10",
    split: str = "train",
    data_dir: str | os.PathLike[str] | None = None,
    n: int | None = None,
    subset: str = "random",
    subset_seed: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Load a surrogate and a data set, then :func:`generate_pairs`: ``irad prepare-pairs``.

    Args:
        weights: the surrogate's checkpoint (an irad prefix or an akamaster ``.th`` file).
        out_dir: the pairs folder (checked writable before any work; resumable).
        config: :class:`PairConfig`; its ``seed`` also draws the subset unless ``subset_seed``.
        surrogate: its architecture when the checkpoint does not record one.
        dataset, split, data_dir: as :func:`irad.data.load_dataset`; an image folder's chosen
            images are loaded into memory (size checked, :func:`irad.data.in_memory`).
        n: attack ``n`` images (default: all); more than the data set holds is refused.
        subset, subset_seed: how the ``n`` are picked (:func:`irad.data.select_subset`:
            ``"random"`` (default), ``"stratified"`` or ``"first"``).

    The manifest records a data set given by path relative to the pairs folder, so the pairs
    load from any working directory.

    Returns:
        The manifest, as :func:`generate_pairs`.
    """
    from irad.data import check_classes, in_memory, load_dataset, select_subset
    from irad.models import load_classifier
    from irad.utils.env import resolve_device
    from irad.utils.io import check_writable_folder, sha256_file

    config = config or PairConfig()
    dev = resolve_device(device)
    check_writable_folder(out_dir, "--out")
    data = load_dataset(dataset, split, data_dir)
    if n is not None:
        n = check_count(n, "--n", len(data), f"images in {data.description}")
        seed = config.seed if subset_seed is None else subset_seed
        data = select_subset(data, n, subset, seed)
    model = load_classifier(weights, arch=surrogate)
    max_label = int(data.y.max()) if len(data.y) else -1
    check_classes(model, data.classes, max_label, data.description)
    data = in_memory(data)  # an image folder: only the chosen images, after a size check
    files = [Path(weights), Path(f"{weights}.safetensors")]
    sha = next((sha256_file(f) for f in files if f.is_file()), None)
    return generate_pairs(
        model,
        data.x,
        data.y,
        out_dir,
        config,
        indices=data.source_indices,
        surrogate_info={"name": model.name, "weights": str(weights), "sha256": sha},
        data_info={
            **data_reference(dataset, out_dir),
            "split": split,
            "description": data.description,
            "classes": list(data.classes),
        },
        device=dev,
        progress=progress,
    )


#: ``data.paths`` in a manifest whose data-set path is relative to the pairs folder.
PATHS_RELATIVE_TO_PAIRS = "relative to the pairs folder"


def data_reference(
    dataset: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """How a manifest names its data set: a built-in name as is; a path relative to the pairs
    folder (absolute when there is no relative path, e.g. another drive), so that the pairs
    load from any working directory.

    Example:
        >>> data_reference("cifar10", "pairs/a")
        {'dataset': 'cifar10'}
        >>> data_reference("/data/npz/train.npz", "/data/pairs/a")["dataset"]
        '../../npz/train.npz'
    """
    from irad.data.load import is_named_dataset

    if is_named_dataset(dataset):
        return {"dataset": str(dataset)}
    path = Path(dataset).expanduser().absolute()
    try:
        shown = Path(os.path.relpath(path, Path(out_dir).expanduser().absolute())).as_posix()
    except ValueError:  # no relative path between them (Windows drives)
        shown = str(path)
    return {"dataset": shown, "paths": PATHS_RELATIVE_TO_PAIRS, "dataset_given": str(dataset)}


class _ChunkStats:
    """Counts for one chunk: accuracies on clean / float adv / rounded adv, rounding, L∞."""

    def __init__(self) -> None:
        self.n = 0
        self.clean_correct = 0
        self.adv_correct_float = 0
        self.adv_correct_rounded = 0
        self.flipped_by_rounding = 0
        self.max_linf_float = 0.0
        self.max_linf_rounded = 0.0
        self.max_rounding = 0.0

    def add(
        self,
        y: Tensor,
        p_clean: Tensor,
        p_float: Tensor,
        p_round: Tensor,
        x: Tensor,
        x_adv: Tensor,
        x_q: Tensor,
    ) -> None:
        self.n += int(y.numel())
        self.clean_correct += int((p_clean == y).sum())
        self.adv_correct_float += int((p_float == y).sum())
        self.adv_correct_rounded += int((p_round == y).sum())
        self.flipped_by_rounding += int((p_float != p_round).sum())
        self.max_linf_float = max(self.max_linf_float, float((x_adv - x).abs().max()) * 255)
        self.max_linf_rounded = max(self.max_linf_rounded, float((x_q - x).abs().max()) * 255)
        self.max_rounding = max(self.max_rounding, float((x_q - x_adv).abs().max()) * 255)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def summarize_chunks(out_dir: str | os.PathLike[str], n_chunks: int) -> dict[str, Any]:
    """Totals over the finished chunks: accuracies, attack success rates, rounding, L∞ (/255)."""
    tot: dict[str, float] = {}
    maxima = ("max_linf_float", "max_linf_rounded", "max_rounding")
    done = 0
    for k in range(n_chunks):
        _, cfg = checkpoint_paths(_chunk_prefix(Path(out_dir), k))
        if not cfg.is_file():
            continue
        done += 1
        stats = json.loads(cfg.read_text())
        for key, value in stats.items():
            if key in maxima:
                tot[key] = max(tot.get(key, 0.0), float(value))
            elif key not in ("run_key", "chunk", "rows", "weights"):
                tot[key] = tot.get(key, 0) + value
    n = int(tot.get("n", 0))
    out: dict[str, Any] = {"chunks_done": done, **tot}
    if n:
        clean = tot["clean_correct"]
        out["clean_accuracy"] = clean / n
        out["adv_accuracy_float"] = tot["adv_correct_float"] / n
        out["adv_accuracy_rounded"] = tot["adv_correct_rounded"] / n
        # success rate = share of images the surrogate misclassifies after the attack
        out["success_rate_float"] = 1 - out["adv_accuracy_float"]
        out["success_rate_rounded"] = 1 - out["adv_accuracy_rounded"]
    return out


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a pairs folder, with a clear error when it is not one."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{path} not found: {out_dir} is not a pairs folder (make one with "
            "`irad prepare-pairs --out DIR ...`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}") from err
    if manifest.get("format") != PAIRS_FORMAT:
        raise DataError(f"{path} is not an irad pairs manifest (format {manifest.get('format')!r})")
    if manifest.get("format_version") != PAIRS_VERSION:
        raise DataError(
            f"{path} has pairs format version {manifest.get('format_version')!r}; this irad "
            f"reads version {PAIRS_VERSION}"
        )
    return manifest


class PairDataset:
    """Clean/adversarial pairs from a folder written by :func:`generate_pairs`.

    Args:
        out_dir: the pairs folder.
        clean: the clean images: an ``ImageDataset`` of the *full* data set the pairs were cut
            from (rows are taken by the stored indices), or ``None`` to load the data set named
            in the manifest with :func:`irad.data.load_dataset` (``data_dir`` as there).
        allow_partial: accept an unfinished run (only its finished chunks).

    Attributes:
        x_clean, x_adv: uint8 ``(N, H, W, 3)``; y: int64 ``(N,)``; indices: rows in the full set.

    Shape:
        - ``__getitem__``: ``(clean (3, H, W), adv (3, H, W), label)`` floats in [0, 1].
        - :meth:`take`: ``(clean (B, 3, H, W), adv (B, 3, H, W), y (B,))``.

    Example:
        >>> pairs = PairDataset("pairs/cifar10-r20")  # doctest: +SKIP
        >>> clean, adv, y = pairs.take(range(8))  # doctest: +SKIP
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        clean: Any | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        allow_partial: bool = False,
    ) -> None:
        self.root = Path(out_dir)
        self.manifest = read_manifest(self.root)
        n_chunks = int(self.manifest["chunks"])
        done = [k for k in range(n_chunks) if _chunk_done(self.root, k)]
        if len(done) < n_chunks and not allow_partial:
            raise DataError(
                f"{self.root} holds {len(done)} of {n_chunks} chunks: the run was interrupted. "
                "Run the same `irad prepare-pairs` command again to finish it (finished chunks "
                "are kept), or pass allow_partial=True"
            )
        if not done:
            raise DataError(f"{self.root} holds no finished chunk yet")
        advs, idx = [], []
        for k in done:
            try:
                tensors, cfg = load_state(_chunk_prefix(self.root, k))
            except CheckpointError as err:
                raise DataError(
                    f"chunk {k} of {self.root} is damaged ({err}); run the same `irad "
                    "prepare-pairs` command again: it recomputes damaged chunks"
                ) from err
            if cfg.get("run_key") != self.manifest.get("run_key"):
                raise DataError(
                    f"chunk {k} of {self.root} belongs to another run (run key mismatch); "
                    "delete the folder and generate the pairs again"
                )
            advs.append(tensors["adv"])
            idx.append(tensors["indices"])
        self.x_adv = torch.cat(advs)
        self.indices = torch.cat(idx)
        self.complete = len(done) == n_chunks
        self.row_range: tuple[int, int] | None = None

        data = self.manifest.get("data", {})
        if clean is None:
            from irad.data import load_dataset

            clean = load_dataset(self._data_source(data), data.get("split", "train"), data_dir)
        if not hasattr(clean, "y") or not (hasattr(clean, "x") or hasattr(clean, "to_memory")):
            raise DataError("clean must be an irad data set (an ImageDataset, or an image folder)")
        if int(self.indices.max()) >= len(clean.y):
            raise DataError(
                f"pairs refer to row {int(self.indices.max())} but the clean data set has only "
                f"{len(clean.y)} images: pass the full data set the pairs were made from"
            )
        self.classes: list[str] | None = (
            [str(c) for c in clean.classes] if getattr(clean, "classes", None) else None
        )
        if hasattr(clean, "x"):
            self.x_clean = clean.x.index_select(0, self.indices)
            self.y = clean.y.index_select(0, self.indices)
        else:  # an image folder: read only the paired images (size checked first)
            rows = clean.subset(indices=self.indices).to_memory()
            self.x_clean, self.y = rows.x, rows.y
        self.description = f"pairs {self.root}"
        self.selection: str | None = None
        if self.x_clean.shape != self.x_adv.shape:
            raise DataError(
                f"clean images {tuple(self.x_clean.shape)} and adversarial images "
                f"{tuple(self.x_adv.shape)} differ in shape: wrong data set for these pairs"
            )
        if self.complete:
            expected = data.get("fingerprint")
            got = images_fingerprint(self.x_clean, self.y)
            if expected is not None and got != expected:
                raise DataError(
                    f"the clean images do not match the ones the pairs in {self.root} were made "
                    "from (fingerprint mismatch): wrong data set, split or data directory"
                )

    def _data_source(self, data: dict[str, Any]) -> str:
        """The data set named in the manifest, as a name or a path that exists from here."""
        from irad.data.load import is_named_dataset

        manifest = self.root / MANIFEST
        name = data.get("dataset")
        if not name:
            raise DataError(f"{manifest} does not name its data set; pass clean=...")
        if is_named_dataset(name):
            return str(name)
        path = Path(name).expanduser()
        if path.is_absolute():
            candidates = [path]
        elif data.get("paths") == PATHS_RELATIVE_TO_PAIRS:
            candidates = [self.root / path]
        else:  # manifests before paths were relative to the pairs folder: the cwd of that run
            candidates = [path, self.root / path]
        for candidate in candidates:
            if candidate.exists():
                return str(candidate)
        where = (
            f" (relative to the pairs folder: {candidates[0]})"
            if data.get("paths") == PATHS_RELATIVE_TO_PAIRS
            else " (relative to the folder `irad prepare-pairs` ran in)"
            if not path.is_absolute()
            else ""
        )
        raise DataError(
            f"{candidates[0]}: no such file or folder; {manifest} names it as the data set the "
            f"pairs were made from ({name!r}{where}). Put the data back there, or pass the "
            "data set in Python (PairDataset(folder, clean=load_dataset(...))), or make the "
            "pairs again with `irad prepare-pairs`"
        )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def head(self, n: int) -> PairDataset:
        """The first ``n`` pairs (a view on the same tensors), e.g. a smaller training set.

        Pairs are stored in data-set order: on a data set sorted by class, the first ``n`` can
        miss classes (a :class:`~irad.data.FewClassesWarning` says so; :meth:`subset` picks a
        random or stratified ``n``).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"n must be a positive integer, got {n!r}")
        from irad.data.datasets import warn_if_few_classes

        warn_if_few_classes(self.y, torch.arange(min(n, len(self))), self.description)
        return self.rows(0, n)

    def rows(self, start: int, stop: int | None = None) -> PairDataset:
        """Pairs ``start:stop`` (a view on the same tensors), e.g. held-out evaluation pairs."""
        lo, hi, _ = slice(start, stop).indices(len(self))
        if hi <= lo:
            raise InputError(f"rows {start}:{stop} of {len(self)} pairs are empty")
        base = self.row_range[0] if self.row_range else 0
        out = copy.copy(self)
        out.x_clean, out.x_adv = self.x_clean[lo:hi], self.x_adv[lo:hi]
        out.y, out.indices = self.y[lo:hi], self.indices[lo:hi]
        out._rows = None
        if self.selection is None:
            out.row_range = (base + lo, base + hi)
        else:
            out.selection = f"{self.selection}[rows {lo}:{hi}]"
        return out

    def subset(
        self,
        n: int | None = None,
        *,
        seed: int | None = None,
        indices: Sequence[int] | Tensor | None = None,
        stratify: bool = False,
    ) -> PairDataset:
        """A subset of the pairs, picked as :meth:`irad.data.ImageDataset.subset` picks images
        (first ``n``, seeded random ``n``, stratified by class, or ``indices``); a copy."""
        from irad.data.datasets import subset_rows

        rows, how = subset_rows(self, n, seed=seed, indices=indices, stratify=stratify)
        out = copy.copy(self)
        out.x_clean, out.x_adv = self.x_clean[rows], self.x_adv[rows]
        out.y, out.indices = self.y[rows], self.indices[rows]
        base = self.selection
        if base is None and self.row_range is not None:
            base = f"rows {self.row_range[0]}:{self.row_range[1]}"
        out.selection = f"{base}[{how}]" if base else how
        out.row_range = None
        out.description = f"{self.description}[{how}]"
        out._rows = rows
        return out

    def complement(self, part: PairDataset) -> PairDataset | None:
        """The pairs of ``self`` that a :meth:`subset` of it left out (``None``: none)."""
        rows = getattr(part, "_rows", None)
        if rows is None:
            raise InputError("complement needs a subset made with subset()")
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[rows] = False
        if not bool(keep.any()):
            return None
        return self.subset(indices=keep.nonzero().flatten())

    @property
    def selection_key(self) -> Any:
        """Which of the folder's pairs these are: a row range, a subset's description, or
        ``None`` for all (recorded by the trainers so that a resumed run uses the same)."""
        return self.row_range if self.selection is None else self.selection

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        c = self.x_clean[i].permute(2, 0, 1).float().div(255)
        a = self.x_adv[i].permute(2, 0, 1).float().div(255)
        return c, a, int(self.y[i])

    def take(self, rows: Sequence[int] | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pairs ``rows`` as float batches in [0, 1] plus labels."""
        rows = torch.as_tensor(rows, dtype=torch.int64).reshape(-1)

        def f(x: Tensor) -> Tensor:
            return x.index_select(0, rows).permute(0, 3, 1, 2).float().div_(255)

        return f(self.x_clean), f(self.x_adv), self.y.index_select(0, rows)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        start_batch: int = 0,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """``(clean, adv, y)`` batches; the order is a function of ``generator`` alone."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for s in range(start_batch * batch_size, stop, batch_size):
            yield self.take(order[s : s + batch_size])

    def stats(self) -> dict[str, Any]:
        """Totals over the finished chunks (accuracies, success rates, rounding, L∞ in /255)."""
        return summarize_chunks(self.root, int(self.manifest["chunks"]))

    def __repr__(self) -> str:
        c = self.manifest.get("config", {})
        rows = "" if self.row_range is None else f" (rows {self.row_range[0]}:{self.row_range[1]})"
        if self.selection is not None:
            rows = f" ({self.selection})"
        return (
            f"PairDataset({str(self.root)!r}, {len(self)} pairs{rows}, "
            f"PGD-{c.get('steps')} "
            f"eps={c.get('eps')}/255{'' if self.complete else ', partial'})"
        )


__all__ = [
    "PAIRS_FORMAT",
    "PairConfig",
    "PairDataset",
    "generate_pairs",
    "images_fingerprint",
    "prepare_pairs",
    "read_manifest",
    "round_to_uint8",
    "summarize_chunks",
]
