"""What a defense does to the victim's representation (Appendix A.8: Tables 18, 19 and Fig. 5).

Three measurements, each a pure function on tensors, and :func:`semantic_analysis`, which runs
them over a set of images, their adversarial versions and the defended adversarial versions.

* **Feature distance (Table 18).** Features: the victim's *penultimate* features, the input of
  its classification head (:meth:`irad.models.Classifier.features`; for the CIFAR ResNets the
  global average pool of the last stage's post-ReLU map, 64 values). Normalisation: none by
  default (the raw features the head reads); ``normalize="l2"`` puts every feature vector on
  the unit sphere first. The centre is the mean clean feature; each set's figure is the mean
  Euclidean distance of its features to that centre. The clean set's own figure (its spread)
  is the baseline a defense can at best reach.
* **Decision path (Table 19).** :func:`decision_path`: for every residual block of the victim,
  the *channel-wise* mean of its post-ReLU output map (one value per channel, how strongly the
  block routes the image through that channel), L2-normalised per block, all blocks
  concatenated. This is the channel-level path of Wang et al. (2018, "critical data routing
  paths": per-channel gates on each layer's output) and of Khakzar et al. (2021), read directly
  from the activations instead of learned gates, so it needs no optimisation per image and is
  defined for any network whose blocks irad can list. Channel means rather than per-pixel ReLU
  on/off patterns: a resampling defense moves content by fractions of a pixel, which flips
  many per-pixel patterns without changing what the network computes; channel means are
  invariant to such moves. The per-block normalisation gives every block the same weight, so
  the cosine similarity of two paths (:func:`path_similarity`) is the mean over blocks of the
  per-block cosine similarities. Identical images give 1.
* **PCA (Fig. 5).** :func:`pca_2d`: the first two principal axes of all sets' features
  together (centred on their joint mean).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from irad.checks import check_choice, check_images
from irad.errors import InputError
from irad.models.classifier import Classifier

#: How feature vectors are normalised before distances: none (raw) or onto the unit sphere.
FEATURE_NORMS = ("none", "l2")
#: The paper's Table 18 (Euclidean distance to the clean centre) and Table 19 (decision-path
#: cosine similarity with clean), CIFAR-10; the paper does not say which layer or normalisation.
PAPER_DISTANCE = {"Adv": 2.91, "RECONS(Adv)": 1.21, "IRAD(Adv)": 0.75}
PAPER_SIMILARITY = {"Adv": 0.5482, "RECONS(Adv)": 0.9915, "IRAD(Adv)": 0.9987}


def _check_matrix(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] == 0 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{name} must be a non-empty float tensor (N, D), got {shape}")
    return x


def normalize_features(features: Tensor, normalize: str = "none") -> Tensor:
    """``features`` as they enter the distance: unchanged (``"none"``) or unit rows (``"l2"``)."""
    _check_matrix(features, "features")
    if check_choice(normalize, "normalize", FEATURE_NORMS) == "l2":
        return F.normalize(features, dim=1)
    return features


def feature_distance(clean: Tensor, other: Tensor, *, normalize: str = "none") -> Tensor:
    """Euclidean distance of each row of ``other`` to the mean row of ``clean`` (Table 18).

    Shape:
        - clean: ``(N, D)``; other: ``(M, D)``; output ``(M,)``.

    Example:
        >>> clean = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
        >>> feature_distance(clean, torch.tensor([[1.0, 0.0], [1.0, 3.0]]))
        tensor([0., 3.])
    """
    clean = normalize_features(clean, normalize)
    other = normalize_features(_check_matrix(other, "other features"), normalize)
    if other.shape[1] != clean.shape[1]:
        raise InputError(f"feature sizes differ: clean {clean.shape[1]}, other {other.shape[1]}")
    centre = clean.double().mean(dim=0, keepdim=True)
    return (other.double() - centre).norm(dim=1).to(other.dtype)


def decision_path(activations: list[Tensor]) -> Tensor:
    """A decision path from block outputs: per block the channel means, L2-normalised per block,
    concatenated (see the module docstring for why this definition).

    Shape:
        - activations: one ``(B, C_k, H_k, W_k)`` (or ``(B, C_k)``) per block; output
          ``(B, sum C_k)``.

    Example:
        >>> maps = [torch.ones(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)]
        >>> decision_path(maps)
        tensor([[0.7071, 0.7071, 0.0000, 0.0000, 0.0000]])
    """
    if not activations:
        raise InputError("decision_path needs the output of at least one block")
    parts = []
    for k, act in enumerate(activations):
        if not isinstance(act, Tensor) or act.ndim < 2:
            raise InputError(f"block {k}: expected a (B, C, ...) tensor, got {type(act).__name__}")
        channel = act.flatten(2).mean(dim=2) if act.ndim > 2 else act
        parts.append(F.normalize(channel.float(), dim=1))
    return torch.cat(parts, dim=1)


def classifier_decision_path(classifier: Classifier, x: Tensor) -> tuple[Tensor, Tensor]:
    """Logits and :func:`decision_path` of ``classifier`` on images ``x`` (one forward pass).

    Shape:
        - x: ``(B, 3, H, W)`` in [0, 1]; output ``((B, num_classes), (B, sum C_k))``.
    """
    logits, acts = classifier.activations(x, classifier.blocks())
    return logits, decision_path(acts)


def path_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of paired decision paths, row by row (Table 19); 1 for identical rows.

    Shape:
        - a, b: ``(N, D)``; output ``(N,)``.

    Example:
        >>> p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
        >>> path_similarity(p, p)
        tensor([1., 1.])
    """
    _check_matrix(a, "decision paths")
    _check_matrix(b, "decision paths")
    if a.shape != b.shape:
        raise InputError(
            f"paired decision paths differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}"
        )
    return F.cosine_similarity(a.double(), b.double(), dim=1).clamp(-1.0, 1.0).to(a.dtype)


def block_similarity(a: Tensor, b: Tensor, sizes: Sequence[int]) -> Tensor:
    """Per-block cosine similarity of paired decision paths (blocks of ``sizes`` channels).

    :func:`path_similarity` of two paths is the mean of these over the blocks.

    Shape:
        - a, b: ``(N, sum(sizes))``; output ``(N, len(sizes))``.

    Example:
        >>> a = decision_path([torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])])
        >>> b = decision_path([torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])])
        >>> block_similarity(a, b, [2, 2])
        tensor([[1., 0.]])
    """
    _check_matrix(a, "decision paths")
    _check_matrix(b, "decision paths")
    if a.shape != b.shape or sum(sizes) != a.shape[1]:
        raise InputError(
            f"paths {tuple(a.shape)} and {tuple(b.shape)} do not split into blocks of {list(sizes)}"
        )
    parts = zip(a.split(list(sizes), dim=1), b.split(list(sizes), dim=1), strict=True)
    sims = [F.cosine_similarity(x.double(), y.double(), dim=1) for x, y in parts]
    return torch.stack(sims, dim=1).clamp(-1.0, 1.0).to(a.dtype)


def pca_2d(features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Project every set onto the first two principal axes of all sets together (Fig. 5).

    Shape:
        - each value ``(N_k, D)`` with ``D >= 2``; each output ``(N_k, 2)``.
    """
    if not features:
        raise InputError("pca_2d needs at least one set of features")
    mats = {k: _check_matrix(v, f"features {k!r}").double() for k, v in features.items()}
    joint = torch.cat(list(mats.values()))
    if joint.shape[1] < 2:
        raise InputError(
            f"PCA to 2-D needs features of at least 2 dimensions, got {joint.shape[1]}"
        )
    mean = joint.mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(joint - mean, full_matrices=False)
    axes = vh[:2].T
    # Fix each axis's sign (the first non-zero loading positive) so figures are reproducible.
    signs = torch.sign(axes[axes.abs().argmax(dim=0), torch.arange(2)])
    axes = axes * torch.where(signs == 0, torch.ones_like(signs), signs)
    return {k: ((v - mean) @ axes).float() for k, v in mats.items()}


@dataclass
class SetMeasures:
    """The measurements of one set of images (clean, adversarial or defended adversarial)."""

    name: str
    features: Tensor
    paths: Tensor
    predictions: Tensor

    def accuracy(self, labels: Tensor) -> float:
        return float((self.predictions == labels).double().mean() * 100)


@dataclass
class SemanticAnalysis:
    """Tables 18 and 19 and the PCA of Fig. 5, for one class of images.

    ``sets`` holds "Clean", "Adv" and one entry per defense, in that order.
    """

    sets: list[SetMeasures]
    labels: Tensor
    normalize: str = "none"
    settings: dict[str, Any] = field(default_factory=dict)
    #: Channels of each block in the decision path (for per-block similarities).
    block_sizes: list[int] = field(default_factory=list)

    @property
    def clean(self) -> SetMeasures:
        return self.sets[0]

    def distances(self) -> dict[str, Tensor]:
        """Per image, each set's feature distance to the mean clean feature."""
        return {
            s.name: feature_distance(self.clean.features, s.features, normalize=self.normalize)
            for s in self.sets
        }

    def similarities(self) -> dict[str, Tensor]:
        """Per image, the cosine similarity of each set's decision path with the clean one."""
        return {s.name: path_similarity(self.clean.paths, s.paths) for s in self.sets}

    def block_similarities(self) -> dict[str, Tensor]:
        """Per image and block, each set's path similarity with the clean one: ``(N, K)``."""
        if not self.block_sizes:
            return {}
        return {
            s.name: block_similarity(self.clean.paths, s.paths, self.block_sizes) for s in self.sets
        }

    def pca(self) -> dict[str, Tensor]:
        feats = {s.name: normalize_features(s.features, self.normalize) for s in self.sets}
        return pca_2d(feats)

    def rows(self) -> list[dict[str, Any]]:
        """One row per set: name, n, mean (and std) distance, mean (and std) similarity, acc."""
        dist, sim, by_block = self.distances(), self.similarities(), self.block_similarities()
        out = []
        for s in self.sets:
            d, c = dist[s.name].double(), sim[s.name].double()
            blocks = by_block[s.name].double().mean(dim=0).tolist() if by_block else []
            out.append(
                {
                    "set": s.name,
                    "n": int(d.numel()),
                    "distance": float(d.mean()),
                    "distance_std": float(d.std()) if d.numel() > 1 else 0.0,
                    "similarity": float(c.mean()),
                    "similarity_std": float(c.std()) if c.numel() > 1 else 0.0,
                    "accuracy": s.accuracy(self.labels),
                    "last_block_similarity": blocks[-1] if blocks else None,
                    "block_similarity": blocks,
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"settings": dict(self.settings), "normalize": self.normalize, "rows": self.rows()}


def _measure(classifier: Classifier, x: Tensor, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    feats, paths, preds = [], [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            batch = x[i : i + batch_size]
            logits, path = classifier_decision_path(classifier, batch)
            feats.append(classifier.features(batch).float())
            paths.append(path)
            preds.append(logits.argmax(dim=1))
    return torch.cat(feats), torch.cat(paths), torch.cat(preds)


def _block_sizes(classifier: Classifier, like: Tensor) -> list[int]:
    with torch.no_grad():
        _, acts = classifier.activations(like[:1], classifier.blocks())
    return [int(a.shape[1]) for a in acts]


def semantic_analysis(
    classifier: Classifier,
    clean: Tensor,
    adversarial: Tensor,
    defenses: Mapping[str, Callable[[Tensor], Tensor]],
    labels: Tensor,
    *,
    normalize: str = "none",
    batch_size: int = 100,
    settings: Mapping[str, Any] | None = None,
) -> SemanticAnalysis:
    """Measure clean, adversarial and each defense applied to the adversarial images.

    Args:
        classifier: the victim (eval mode is set here).
        clean, adversarial: paired images, ``adversarial[i]`` made from ``clean[i]``.
        defenses: name -> defense, e.g. ``{"RECONS(Adv)": recons, "IRAD(Adv)": irad}``; each is
            applied to the adversarial images in batches of ``batch_size``.
        labels: the true classes (the paper uses 100 images of one class).
        normalize: ``"none"`` (default) or ``"l2"``, see :data:`FEATURE_NORMS`.

    Shape:
        - clean, adversarial: ``(N, 3, H, W)`` in [0, 1]; labels ``(N,)``.

    Example:
        >>> from irad.models import build_classifier
        >>> clf = build_classifier("resnet20")
        >>> x = torch.rand(4, 3, 32, 32)
        >>> res = semantic_analysis(clf, x, x, {"same": lambda t: t}, torch.zeros(4).long())
        >>> [(r["set"], round(r["similarity"], 4)) for r in res.rows()][-1]
        ('same', 1.0)
    """
    check_images(clean, "clean images")
    check_images(adversarial, "adversarial images")
    if clean.shape != adversarial.shape:
        raise InputError(
            f"clean and adversarial images differ in shape: {tuple(clean.shape)} vs "
            f"{tuple(adversarial.shape)}"
        )
    check_choice(normalize, "normalize", FEATURE_NORMS)
    classifier.eval()
    images = {"Clean": clean, "Adv": adversarial}
    with torch.no_grad():
        for name, defense in defenses.items():
            if name in images:
                raise InputError(f"defense name {name!r} clashes with a built-in set name")
            starts = range(0, len(adversarial), batch_size)
            images[name] = torch.cat([defense(adversarial[i : i + batch_size]) for i in starts])
    sets = [SetMeasures(name, *_measure(classifier, x, batch_size)) for name, x in images.items()]
    sizes = _block_sizes(classifier, clean)
    return SemanticAnalysis(sets, labels.cpu(), normalize, dict(settings or {}), sizes)


def format_semantic_tables(analysis: SemanticAnalysis, paper: bool = True) -> str:
    """Tables 18 and 19 as one markdown table, the paper's figures beside ours."""
    paper_dist, paper_sim = PAPER_DISTANCE, PAPER_SIMILARITY
    head = (
        "| images | n | accuracy (%) | feature distance to clean centre "
        "| decision-path similarity | last block only |"
    )
    rule = "|---|---:|---:|---:|---:|---:|"
    if paper:
        head += " paper distance (Table 18) | paper similarity (Table 19) |"
        rule += "---:|---:|"
    lines = [head, rule]
    for row in analysis.rows():
        cells = [
            row["set"],
            str(row["n"]),
            f"{row['accuracy']:.1f}",
            f"{row['distance']:.3f} ± {row['distance_std']:.3f}",
            f"{row['similarity']:.4f} ± {row['similarity_std']:.4f}",
            "–" if row["last_block_similarity"] is None else f"{row['last_block_similarity']:.4f}",
        ]
        if paper:
            cells += [
                f"{paper_dist[row['set']]:.2f}" if row["set"] in paper_dist else "–",
                f"{paper_sim[row['set']]:.4f}" if row["set"] in paper_sim else "–",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    norm = "raw" if analysis.normalize == "none" else "L2-normalised"
    lines.append("")
    lines.append(
        f"Mean ± std over the images. Features: the victim's penultimate features ({norm}); "
        "distance: Euclidean, to the mean clean feature (the Clean row is the clean set's own "
        "spread). Decision path: per-block channel means of the residual blocks' outputs, "
        "L2-normalised per block; similarity: cosine with the same image's clean path (the mean "
        "of the per-block cosines); last block only: the cosine of the last block's channel means."
    )
    return "\n".join(lines)
