"""The classifier interface: images in [0, 1], NCHW in; logits out. Normalisation lives inside.

Also the classifier registry :data:`CLASSIFIERS` (the architectures register themselves in
:mod:`irad.models.zoo`), :func:`build_classifier`, and the classifier's checkpoint: a
:class:`Classifier` built by name saves and loads like every irad model
(:class:`irad.checkpoint.Pretrained`; the checkpoint holds the network's state dict and the
``arch``, ``num_classes``, ``mean``, ``std``, ``classes`` and ``kwargs`` that rebuild it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from irad.checkpoint import Pretrained, config_field
from irad.checks import check_images, check_logits
from irad.errors import ConfigError
from irad.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: Network factories by name. Each takes ``num_classes`` (and optional architecture keywords)
#: and returns the bare network, which expects *normalised* input; :func:`build_classifier`
#: wraps it with its normalisation. The architectures irad ships register in
#: :mod:`irad.models.zoo`; register your own with ``@CLASSIFIERS.register("name")``.
CLASSIFIERS: Registry[nn.Module] = Registry("classifier")

#: The config entries that rebuild a classifier (saved in its checkpoint).
CONFIG_KEYS = ("arch", "name", "num_classes", "mean", "std", "classes", "kwargs")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with the statistics stored as buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class Classifier(Pretrained, nn.Module):
    """Wrap any ``nn.Module`` into an irad classifier.

    The wrapper checks the input (float, NCHW, 3 channels, [0, 1]), applies the network's own
    normalisation, and checks that the network returns ``(B, num_classes)`` logits. Like a
    defense (:mod:`irad.defenses.base`), it takes images of any floating dtype, computes in its
    network's dtype and returns logits in the input's dtype. A
    classifier built by name (:func:`build_classifier`) has a checkpoint:
    ``save_pretrained`` / ``from_pretrained`` (or ``irad.models.save_classifier`` /
    ``load_classifier``, which also read third-party files).

    Args:
        net: the network, taking *normalised* images.
        mean, std: per-channel normalisation the network was trained with (``None``: none).
        num_classes: expected number of logits, checked on every call.
        name: a label recorded with results.
        config: how to rebuild the network (registry name and arguments), saved with weights.
        classes: the class name of each output, in output order (``None``: not known); data
            whose class names differ are refused (:func:`irad.data.check_classes`).

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1].
        - Output: ``(B, num_classes)`` logits.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
        >>> clf = Classifier(net, mean=None, std=None, num_classes=10)
        >>> clf(torch.rand(2, 3, 4, 4)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        num_classes: int | None = None,
        name: str = "custom",
        config: dict[str, Any] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.normalize = Normalize(mean, std) if mean is not None and std is not None else None
        self.num_classes = num_classes
        self.name = name
        self.config = dict(config or {"name": name})
        if mean is not None:
            self.config.setdefault("mean", list(mean))
            self.config.setdefault("std", list(std) if std is not None else None)
        if classes is None and self.config.get("classes") is not None:
            classes = self.config["classes"]
        self.classes = _class_names(classes, num_classes)
        if self.classes is not None:
            self.config["classes"] = list(self.classes)

    checkpoint_kind = "classifier"
    checkpoint_hint = "irad.models.load_classifier"

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, "classifier input")
        dtype = next((p.dtype for p in self.net.parameters() if p.is_floating_point()), x.dtype)
        h = x if x.dtype == dtype else x.to(dtype)
        if self.normalize is not None:
            h = self.normalize(h)
        logits = check_logits(self.net(h), x.shape[0], self.num_classes)
        return logits if h is x else logits.to(x.dtype)

    # -- internal activations (irad.analysis) ----------------------------------------------
    def head(self) -> nn.Linear:
        """The classification head: the network's last ``nn.Linear`` (in module order)."""
        linears = [m for m in self.net.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(
                f"classifier {self.name!r} has no nn.Linear head, so it has no penultimate "
                "features; irad.analysis needs a network that ends in a linear layer"
            )
        return linears[-1]

    def blocks(self) -> list[nn.Module]:
        """The blocks whose outputs make a decision path: ``net.blocks()`` when the network
        defines it (the CIFAR ResNets do), else every residual ``BasicBlock`` of
        :mod:`irad.models.resnet_cifar` in it (ResNet-18/34 too)."""
        own = getattr(self.net, "blocks", None)
        found = list(own()) if callable(own) else []
        if not found:
            from irad.models.resnet_cifar import BasicBlock

            found = [m for m in self.net.modules() if isinstance(m, BasicBlock)]
        if not found:
            raise ConfigError(
                f"classifier {self.name!r}: its network neither defines blocks() nor holds "
                "irad's residual blocks; add a blocks() method returning the modules whose "
                "outputs form the decision path"
            )
        return found

    def activations(
        self, x: Tensor, modules: Sequence[nn.Module], *, inputs: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Logits and what each of ``modules`` (parts of the network) saw in one forward pass.

        ``inputs=False``: each module's output; ``inputs=True``: its first positional input.
        A module that runs more than once keeps its last call. Forward hooks, removed on return.

        Shape:
            - x: ``(B, 3, H, W)`` in [0, 1]; logits ``(B, num_classes)``; each capture ``(B, ...)``.
        """
        captured: dict[int, Tensor] = {}

        def hook(i: int) -> Any:
            if inputs:
                return lambda _m, args: captured.__setitem__(i, args[0])
            return lambda _m, _args, out: captured.__setitem__(i, out)

        handles = [
            (m.register_forward_pre_hook(hook(i)) if inputs else m.register_forward_hook(hook(i)))
            for i, m in enumerate(modules)
        ]
        try:
            logits = self(x)
        finally:
            for handle in handles:
                handle.remove()
        missing = [i for i in range(len(modules)) if i not in captured]
        if missing:
            raise ConfigError(
                f"modules {missing} of the {len(modules)} given did not run in the forward pass "
                f"of classifier {self.name!r}: pass parts of this classifier's network"
            )
        return logits, [captured[i] for i in range(len(modules))]

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features: the input of the classification head (:meth:`head`).

        For the CIFAR ResNets, the global average pool of the last stage's post-ReLU map
        (64 values for ResNet-20/56); for WideResNets the pooled post-BN-ReLU map. Raw values:
        the classifier's input normalisation applies to the pixels, nothing to the features.

        Shape:
            - x: ``(B, 3, H, W)`` in [0, 1]; output ``(B, D)``, ``D`` the head's in-features.

        Example:
            >>> clf = build_classifier("resnet20").eval()
            >>> clf.features(torch.rand(2, 3, 32, 32)).shape
            torch.Size([2, 64])
        """
        _, (feats,) = self.activations(x, [self.head()], inputs=True)
        return feats.flatten(1)

    # -- checkpoints -----------------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        """``arch``, ``name``, ``num_classes``, ``mean``, ``std``, ``kwargs``: what rebuilds it."""
        arch = self.config.get("arch")
        if not isinstance(arch, str) or arch not in CLASSIFIERS:
            raise ConfigError(
                f"classifier {self.name!r} has no registered architecture in config['arch'] "
                f"(got {arch!r}); register the network with @CLASSIFIERS.register(name) and "
                "build it with build_classifier so that the checkpoint can be rebuilt"
            )
        config = {k: self.config.get(k) for k in CONFIG_KEYS}
        config["kwargs"] = dict(config["kwargs"] or {})
        if config["classes"] is None:
            del config["classes"]  # unknown: the checkpoint stays as before classes were kept
        return config

    def checkpoint_module(self) -> nn.Module:
        return self.net

    @classmethod
    def from_checkpoint_config(cls, config: dict[str, Any]) -> Classifier:
        stats = (list, type(None))
        return build_classifier(
            config_field(config, "arch", str),
            config_field(config, "num_classes", int),
            mean=config_field(config, "mean", stats, items=float, default=None),
            std=config_field(config, "std", stats, items=float, default=None),
            classes=config_field(config, "classes", stats, items=str, default=None),
            **config_field(config, "kwargs", dict, default={}),
        )

    @classmethod
    def legacy_checkpoint_config(
        cls, flat: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Older classifier checkpoints keep their metadata beside the config entries."""
        config = {k: flat[k] for k in CONFIG_KEYS if k in flat}
        skip = (*CONFIG_KEYS, "format", "format_version")
        return config, {k: v for k, v in flat.items() if k not in skip}


def canonical_name(name: str) -> str:
    """The registry's spelling of an architecture name (``"WRN_28_10"`` -> ``"wrn-28-10"``).

    Raises :class:`irad.errors.ConfigError`, listing the known names, for an unknown one.
    """
    CLASSIFIERS.get(name)
    return name.strip().lower().replace("_", "-")


def build_classifier(
    name: str,
    num_classes: int = 10,
    *,
    mean: Sequence[float] | None = CIFAR10_MEAN,
    std: Sequence[float] | None = CIFAR10_STD,
    classes: Sequence[str] | None = None,
    **kwargs: Any,
) -> Classifier:
    """Build a freshly initialised classifier by registry name.

    Args:
        name: one of ``CLASSIFIERS.names()``, e.g. ``"resnet20"`` or ``"wrn-28-10"``.
        num_classes: number of logits.
        mean, std: the input normalisation the network is trained with (default: the CIFAR-10
            statistics; ``None`` for none). ``irad train-classifier`` computes them from the
            training data of an image folder or ``.npz`` (or takes ``--mean`` / ``--std``).
        classes: the class name of each output (``num_classes`` of them), e.g. an image
            folder's sorted sub-folder names; recorded in the checkpoint (``None``: unknown).
        **kwargs: architecture options of that factory (e.g. ``dropout`` for WideResNets).

    Returns:
        A :class:`Classifier` (training mode) whose ``config`` records ``arch``, ``name``,
        ``num_classes``, ``mean``, ``std``, ``classes`` (when given) and ``kwargs``: everything
        needed to rebuild it.

    Shape:
        - Input: ``(B, 3, H, W)`` in [0, 1] (32x32 for the CIFAR architectures).
        - Output: ``(B, num_classes)`` logits.

    Example:
        >>> clf = build_classifier("resnet20")
        >>> clf(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    arch = canonical_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if (mean is None) != (std is None):
        raise ConfigError("give both mean and std for the input normalisation, or neither")
    if mean is not None and std is not None:
        mean, std = _stats(mean, "mean"), _stats(std, "std")
        if any(s <= 0 for s in std):
            raise ConfigError(f"std must be positive, got {std}")
    net = CLASSIFIERS.build(arch, num_classes=num_classes, **kwargs)
    config = {
        "arch": arch,
        "name": arch,
        "num_classes": num_classes,
        "mean": mean,
        "std": std,
        "kwargs": dict(kwargs),
    }
    if classes is not None:
        config["classes"] = _class_names(classes, num_classes)
    return Classifier(net, mean=mean, std=std, num_classes=num_classes, name=arch, config=config)


def _class_names(classes: Sequence[str] | None, num_classes: int | None) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        raise ConfigError(f"classes must be a list of names, got the string {classes!r}")
    names = [str(c) for c in classes]
    if num_classes is not None and len(names) != num_classes:
        raise ConfigError(
            f"classes names {len(names)} classes but the classifier has {num_classes} outputs; "
            "give one name per output, in output order"
        )
    return names


def _stats(values: Sequence[float], what: str) -> list[float]:
    out = [float(v) for v in values]
    if len(out) != 3:
        raise ConfigError(f"{what} needs one value per RGB channel (3), got {len(out)}: {out}")
    return out


def as_classifier(
    module: nn.Module,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_classes: int | None = None,
    name: str = "custom",
    classes: Sequence[str] | None = None,
) -> Classifier:
    """Return ``module`` if it already is a :class:`Classifier`, else wrap it.

    ``classes`` (the class name of each output, in order) lets irad refuse data whose classes
    differ (an image folder's classes are its sorted sub-folder names).
    """
    if isinstance(module, Classifier):
        return module
    return Classifier(
        module, mean=mean, std=std, num_classes=num_classes, name=name, classes=classes
    )
