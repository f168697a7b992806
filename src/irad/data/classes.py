"""Whether a data set's labels mean what a classifier's outputs mean: one check for every
command that puts a classifier in front of data (classify, evaluate, prepare-pairs,
train-classifier's evaluation set, train-samplenet).

Label ``k`` is scored (or trained, or attacked) as the classifier's output ``k``, so the data
set's classes must be the classifier's, in the same order. An image folder's classes are its
sorted sub-folder names, empty ones included; a classifier trained by irad records the class
names of its training data in its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from irad.errors import ConfigError, InputError


class ClassMismatchError(InputError, ConfigError):
    """A data set's labels do not mean the classifier's outputs (another class list or count).

    Both an :class:`~irad.errors.InputError` and a :class:`~irad.errors.ConfigError`, as the
    commands that raised either before this one check existed.
    """


def classifier_classes(classifier: nn.Module) -> list[str] | None:
    """The classifier's class names in output order, where known.

    From a ``classes`` attribute, a ``classes`` entry in its config (irad classifiers trained on
    a data set record them), or the CIFAR data set its checkpoint says it was trained on.
    """
    names = getattr(classifier, "classes", None)
    config = getattr(classifier, "config", None)
    if names is None and isinstance(config, dict):
        names = config.get("classes")
    if names is None:
        from irad.data.cifar import CIFAR10_CLASSES, CIFAR100_CLASSES

        sources = [config] if isinstance(config, dict) else []
        sources.append(getattr(classifier, "checkpoint_metadata", None))
        for source in sources:
            if not isinstance(source, dict):
                continue
            train_set = (source.get("training") or {}).get("train_set") or {}
            name = str(train_set.get("name", "")).split("/")[0].lower()
            names = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}.get(name)
            if names is not None:
                break
    return [str(c) for c in names] if names is not None else None


def _declared(classes: Sequence[str] | None) -> bool:
    """Whether class names were given (not the default "0", "1", ... made from the labels)."""
    return classes is not None and list(classes) != [str(k) for k in range(len(classes))]


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _outputs(classifier: nn.Module, sample: Callable[[], Tensor] | None) -> int | None:
    outputs = getattr(classifier, "num_classes", None)
    if isinstance(outputs, int) and not isinstance(outputs, bool):
        return outputs
    if sample is None:
        return None
    x = sample()
    device = next((p.device for p in classifier.parameters()), torch.device("cpu"))
    with torch.no_grad():
        return int(classifier(x[:1].to(device)).shape[-1])


def check_classes(
    classifier: nn.Module,
    classes: Sequence[str] | None,
    max_label: int,
    name: str,
    *,
    sample: Callable[[], Tensor] | None = None,
) -> None:
    """Refuse data whose labels do not mean the classifier's outputs.

    Refused: a label beyond the classifier's outputs; class names that differ from the
    classifier's (where both are known); a data set that names its classes but has another
    number of them (a folder with only ``cat/`` and ``dog/`` in front of a 10-class classifier
    would be scored as classes 0 and 1).

    Args:
        classifier: the model (``num_classes`` and ``classes`` read where it has them).
        classes: the data set's class names (``None``: unknown).
        max_label: its largest label (-1: no images).
        name: the data set, for messages.
        sample: gives a batch ``(B, 3, H, W)`` to count the classifier's outputs with, for a
            classifier without ``num_classes``.

    Raises:
        ClassMismatchError: naming both class lists and the fix.

    Example:
        >>> clf = nn.Linear(4, 10)
        >>> clf.num_classes = 10
        >>> check_classes(clf, ["cat", "dog"], 1, "pets")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        irad.data.classes.ClassMismatchError: pets has 2 classes (cat, dog) but ...
    """
    outputs = _outputs(classifier, sample)
    if outputs is None:
        return
    if max_label >= outputs:
        raise ClassMismatchError(
            f"the labels of {name} go up to {max_label} but the classifier has "
            f"{outputs} outputs ({outputs} classes, 0 to {outputs - 1}): this data set was not "
            "made for this classifier"
        )
    if not _declared(classes):
        return
    assert classes is not None
    known = classifier_classes(classifier)
    fix = (
        "Use a data set with the classifier's classes in its label order; an image "
        "folder takes its classes from its sub-folders, sorted, empty ones included, so give it "
        "one sub-folder per class of the classifier"
    )
    if known is not None and list(known) != list(classes):
        raise ClassMismatchError(
            f"the classes of {name} ({_listing(classes)}) are not the classifier's "
            f"({_listing(known)}): label k would be taken as the classifier's class k. {fix}"
        )
    if known is None and len(classes) != outputs:
        raise ClassMismatchError(
            f"{name} has {len(classes)} classes ({_listing(classes)}) but the classifier has "
            f"{outputs} outputs: label k would be taken as output k, whatever class that is. "
            f"{fix}{_cifar10_hint(outputs)}"
        )


def check_dataset_classes(classifier: nn.Module, dataset: object, name: str | None = None) -> None:
    """:func:`check_classes` for an irad data set (``.classes`` and ``.y``) or pairs."""
    labels = getattr(dataset, "y", None)
    max_label = int(labels.max()) if isinstance(labels, Tensor) and labels.numel() else -1
    what = name or str(getattr(dataset, "description", getattr(dataset, "name", "the data")))

    def sample() -> Tensor:
        return dataset.take([0])[0]  # type: ignore[attr-defined]

    check_classes(
        classifier,
        getattr(dataset, "classes", None),
        max_label,
        what,
        sample=sample if hasattr(dataset, "take") and max_label >= 0 else None,
    )


def _cifar10_hint(outputs: int) -> str:
    if outputs != 10:
        return ""
    from irad.data.cifar import CIFAR10_CLASSES

    return f" (CIFAR-10: {', '.join(CIFAR10_CLASSES)})"
