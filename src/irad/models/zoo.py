"""Classifiers by name: the architectures irad ships, saving, loading and fingerprinting them.

An irad classifier checkpoint is ``prefix.safetensors`` (the network's state dict) plus
``prefix.json`` (``arch``, ``num_classes``, ``mean``, ``std``, ``kwargs`` and the metadata the
writer added; :class:`irad.checkpoint.Pretrained`), so one call rebuilds it without the code
that trained it::

    clf = build_classifier("resnet20")
    save_classifier(clf, "runs/r20/model")
    same = load_classifier("runs/r20/model")

Third-party checkpoints in the akamaster format (``resnet56-4bfd9763.th``: a pickled dict with a
``state_dict`` whose keys carry DataParallel's ``module.`` prefix) load too, through
:func:`irad.checkpoint.read_torch_file` (``weights_only=True``: nothing but tensors is
unpickled).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from irad.checkpoint import load_into, read_torch_file, resolve, tensors_sha256
from irad.errors import CheckpointError, ConfigError, InputError
from irad.models.classifier import (
    CLASSIFIERS,
    CONFIG_KEYS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    build_classifier,
    canonical_name,
)
from irad.models.resnet import ResNet
from irad.models.resnet_cifar import CifarResNet
from irad.models.vgg import VGG
from irad.models.wideresnet import WideResNet

#: The two files of an irad checkpoint; any other existing file is read as a PyTorch file.
IRAD_SUFFIXES = (".safetensors", ".json")


@CLASSIFIERS.register("resnet20")
def resnet20(num_classes: int = 10) -> nn.Module:
    """CIFAR ResNet-20 (0.27 M parameters), He et al. 2016 §4.2, option-A shortcut."""
    return CifarResNet(20, num_classes)


@CLASSIFIERS.register("resnet32")
def resnet32(num_classes: int = 10) -> nn.Module:
    """CIFAR ResNet-32 (0.46 M parameters)."""
    return CifarResNet(32, num_classes)


@CLASSIFIERS.register("resnet44")
def resnet44(num_classes: int = 10) -> nn.Module:
    """CIFAR ResNet-44 (0.66 M parameters)."""
    return CifarResNet(44, num_classes)


@CLASSIFIERS.register("resnet56")
def resnet56(num_classes: int = 10) -> nn.Module:
    """CIFAR ResNet-56 (0.85 M parameters)."""
    return CifarResNet(56, num_classes)


@CLASSIFIERS.register("resnet18")
def resnet18(num_classes: int = 10) -> nn.Module:
    """ResNet-18, CIFAR variant: 3x3 stem, no max-pool (11.2 M parameters)."""
    return ResNet((2, 2, 2, 2), num_classes)


@CLASSIFIERS.register("resnet34")
def resnet34(num_classes: int = 10) -> nn.Module:
    """ResNet-34, CIFAR variant (21.3 M parameters)."""
    return ResNet((3, 4, 6, 3), num_classes)


@CLASSIFIERS.register("wrn-28-10")
def wrn_28_10(num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """WideResNet-28-10 (36.5 M parameters)."""
    return WideResNet(28, 10, num_classes, dropout)


@CLASSIFIERS.register("wrn-70-16")
def wrn_70_16(num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
    """WideResNet-70-16 (267 M parameters)."""
    return WideResNet(70, 16, num_classes, dropout)


@CLASSIFIERS.register("vgg16-bn")
def vgg16_bn(num_classes: int = 10) -> nn.Module:
    """VGG-16 with batch norm, CIFAR variant with a single 512 -> classes head (14.7 M)."""
    return VGG(num_classes=num_classes)


def save_classifier(
    classifier: Classifier,
    prefix: str | Path,
    *,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``prefix.safetensors`` (network weights) and ``prefix.json`` (config), atomically.

    Args:
        classifier: a classifier from :func:`build_classifier` or :func:`load_classifier`
            (its ``config["arch"]`` must name a registered architecture).
        prefix: path without suffix (a ``.safetensors``/``.json`` suffix is accepted too).
        metadata: JSON-ready facts stored under the checkpoint's ``metadata`` (e.g. accuracy,
            epochs, seed); after loading, ``classifier.checkpoint_metadata``.

    Returns:
        The path of the ``.safetensors`` file.

    Example:
        >>> path = save_classifier(build_classifier("resnet20"), "runs/r20/model")
        >>> path.name
        'model.safetensors'
        >>> load_classifier("runs/r20/model").config["arch"]
        'resnet20'
    """
    if not isinstance(classifier, Classifier):
        raise InputError(
            f"save_classifier needs an irad Classifier, got {type(classifier).__name__} "
            "(build it with irad.models.build_classifier)"
        )
    for key in metadata or {}:
        if key in CONFIG_KEYS:
            raise ConfigError(
                f"metadata may not hold the classifier's {key!r}: it is part of the config"
            )
    return classifier.save(prefix, metadata=metadata)


def load_classifier(
    spec: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Classifier:
    """Load a classifier from an irad checkpoint or an akamaster-format ``.th`` file.

    Args:
        spec: an irad checkpoint (``x``, ``x.safetensors`` or ``x.json``; a folder holding
            ``model.safetensors``, as the trainer writes, also works), or any other file: a
            third-party PyTorch file (``.th``, ``.pt``, ``.pth``, ...) holding a state dict,
            possibly under ``"state_dict"`` and with ``module.`` prefixes.
        arch: architecture name. irad checkpoints record it (a different value here is an
            error); third-party files need it unless the file name starts with it, as in
            ``resnet56-4bfd9763.th``.
        num_classes: expected number of classes (``None``: whatever the checkpoint has); a
            checkpoint with another number is an error.
        mean, std: override the input normalisation. Default: the checkpoint's for irad
            checkpoints, the ImageNet statistics for third-party files (as akamaster trained).

    Returns:
        The :class:`Classifier` in eval mode, on the CPU.

    Raises:
        CheckpointError: the file is missing, unreadable or corrupt, or its tensors do not fit
            the architecture (the message lists missing, unexpected and mismatched keys).
        ConfigError: an unknown architecture name (the message lists the known ones).

    Example:
        >>> clf = load_classifier("cifar10")  # the ResNet-20 bundled with irad
        >>> clf.config["arch"], clf.training
        ('resnet20', False)
        >>> clf = load_classifier("weights/resnet56-4bfd9763.th")  # doctest: +SKIP
        >>> clf.config["arch"]  # doctest: +SKIP
        'resnet56'
    """
    try:
        path = resolve(spec, "classifier", torch_files=True)
    except CheckpointError:
        if isinstance(spec, str) and spec in CLASSIFIERS:
            raise CheckpointError(
                f"checkpoint not found: {spec} ({spec!r} is an architecture name: pass a weights "
                "file, or build an untrained model with irad.models.build_classifier)"
            ) from None
        raise
    if path.is_file() and path.suffix not in IRAD_SUFFIXES:
        clf = _load_torch_file(path, arch, num_classes, mean, std)
    else:
        clf = _load_irad(path, arch, num_classes, mean, std)
    return clf.eval()


def _load_irad(
    path: Path,
    arch: str | None,
    num_classes: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> Classifier:
    ckpt = Classifier.read_checkpoint(path)
    config = dict(ckpt.config)
    saved_arch = config.get("arch")
    if isinstance(saved_arch, str) and saved_arch in CLASSIFIERS:
        saved_arch = canonical_name(saved_arch)
        if arch is not None and canonical_name(arch) != saved_arch:
            raise CheckpointError(
                f"{ckpt.weights_path} holds a {saved_arch}, not a {canonical_name(arch)} "
                f"(drop the architecture argument, or pass the {arch} checkpoint)"
            )
    saved_classes = config.get("num_classes")
    if isinstance(saved_classes, int) and not isinstance(saved_classes, bool):
        _check_classes(saved_classes, num_classes, ckpt.weights_path)
    if mean is not None:
        config["mean"] = list(mean)
    if std is not None:
        config["std"] = list(std)
    ckpt.config = config
    clf = ckpt.build(Classifier)
    ckpt.load_into(clf.net)
    clf.checkpoint_metadata = ckpt.metadata
    return clf


def _load_torch_file(
    path: Path,
    arch: str | None,
    num_classes: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> Classifier:
    if arch is None:
        arch = infer_arch(path)
        if arch is None:
            raise CheckpointError(
                f"cannot tell the architecture of {path.name} from its name; pass it "
                f"(arch=... in Python, --model on the command line). "
                f"Known: {', '.join(CLASSIFIERS.names())}"
            )
    arch = canonical_name(arch)
    obj = read_torch_file(
        path,
        "classifier weights",
        resave="torch.save(obj['state_dict'], 'clean.th') with the code that wrote it",
    )
    state = _state_dict_of(obj, path)
    mean = IMAGENET_MEAN if mean is None else mean
    std = IMAGENET_STD if std is None else std
    clf = build_classifier(arch, num_classes or 10, mean=mean, std=std)
    own = clf.net.state_dict()
    head = _head_key(own)
    if head in state:
        found = int(state[head].shape[0])
        _check_classes(found, num_classes, path)
        if found != clf.num_classes:  # num_classes was left open: follow the checkpoint
            clf = build_classifier(arch, found, mean=mean, std=std)
            own = clf.net.state_dict()
    # Checkpoints from PyTorch < 0.4.1 have no BatchNorm step counters; they do not affect
    # inference (momentum is fixed), so take the fresh model's.
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    try:
        load_into(clf.net, state, str(path))
    except CheckpointError as err:
        named = infer_arch(path)
        if named is not None and named != arch:
            raise CheckpointError(f"{err}; its file name suggests {named}, not {arch}") from None
        raise
    return clf


def _state_dict_of(obj: object, path: Path) -> dict[str, Tensor]:
    """The state dict inside a loaded third-party file, without DataParallel's prefix."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path} holds no state dict (got {type(obj).__name__}); expected a dict of tensors, "
            "possibly under 'state_dict'"
        )
    bad = [str(k) for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{path} is not a state dict: entries {', '.join(bad[:5])} are not tensors"
            f" (top-level keys: {', '.join(map(str, list(obj)[:8]))})"
        )
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def _head_key(state: Mapping[str, Tensor]) -> str:
    """The name of the classification head's weight: the last matrix in the state dict."""
    return [k for k, v in state.items() if v.ndim == 2][-1]


def _check_classes(found: int, wanted: int | None, source: object) -> None:
    if wanted is not None and found != wanted:
        raise CheckpointError(
            f"checkpoint {source} has {found} classes, but num_classes={wanted} was asked for "
            f"(pass num_classes={found}, or the checkpoint trained for {wanted} classes)"
        )


def infer_arch(path: str | Path) -> str | None:
    """The architecture a file name starts with (``resnet56-4bfd9763.th`` -> ``resnet56``).

    Returns ``None`` when no registered name is a prefix of the name.
    """
    stem = Path(path).name.split(".")[0].lower()
    parts = re.split(r"[-_]", stem)
    for k in range(len(parts), 0, -1):
        candidate = "-".join(parts[:k])
        if candidate in CLASSIFIERS:
            return candidate
    return None


def model_fingerprint(module: nn.Module) -> str:
    """Hex sha256 over a module's state dict (names, dtypes, shapes and values), for cache keys.

    Two modules with equal weights and buffers have the same fingerprint, whatever device they
    are on; changing any value changes it.

    Example:
        >>> import copy
        >>> net = nn.Linear(2, 2)
        >>> model_fingerprint(net) == model_fingerprint(copy.deepcopy(net))
        True
    """
    return tensors_sha256(module.state_dict())
