"""Classifiers (and, in their own modules, the networks of the defenses).

Every classifier takes images in [0, 1], NCHW, and holds its own input normalisation:

    >>> from irad.models import as_classifier, build_classifier, load_classifier
    >>> clf = build_classifier("resnet20")                       # fresh, CIFAR-10 statistics
    >>> clf = load_classifier("cifar10")                         # the bundled ResNet-20
    >>> clf = load_classifier("resnet56-4bfd9763.th")            # doctest: +SKIP
    >>> my_net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    >>> clf = as_classifier(my_net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    >>> clf(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])

Architectures are built by name from :data:`CLASSIFIERS`; :func:`save_classifier` writes a
safetensors + JSON checkpoint that :func:`load_classifier` rebuilds.
"""

from irad.models.classifier import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CLASSIFIERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    Normalize,
    as_classifier,
    build_classifier,
    canonical_name,
)
from irad.models.edsr import EDSR, EDSRConfig
from irad.models.implicit_presets import IMPLICIT_PRESETS, ImplicitPreset, get_preset
from irad.models.liif import ImplicitConfig, ImplicitRepresentation
from irad.models.resnet import ResNet
from irad.models.resnet_cifar import CifarResNet
from irad.models.samplenet import SampleNet, SampleNetConfig
from irad.models.vgg import VGG
from irad.models.wideresnet import WideResNet
from irad.models.zoo import (
    infer_arch,
    load_classifier,
    model_fingerprint,
    save_classifier,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CLASSIFIERS",
    "EDSR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMPLICIT_PRESETS",
    "VGG",
    "CifarResNet",
    "Classifier",
    "EDSRConfig",
    "ImplicitConfig",
    "ImplicitPreset",
    "ImplicitRepresentation",
    "Normalize",
    "ResNet",
    "SampleNet",
    "SampleNetConfig",
    "WideResNet",
    "as_classifier",
    "build_classifier",
    "canonical_name",
    "get_preset",
    "infer_arch",
    "load_classifier",
    "model_fingerprint",
    "save_classifier",
]
