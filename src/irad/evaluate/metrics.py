"""SA, RA, Avg and the per-image worst case, from per-image correctness.

Everything is kept as counts (correct / total) so no figure is rounded before it is reported,
and the worst case can be recomputed from the per-image records.

Correctness tensors are boolean of shape ``(draws, N)``: one row per independent forward pass of
a (random) defense, one column per image. A deterministic defense has one draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from irad.errors import InputError
from irad.evaluate.intervals import count_interval


@dataclass(frozen=True)
class Count:
    """``correct`` out of ``total`` (images x draws), with the percentage.

    Example:
        >>> Count(93, 100).percent
        93.0
    """

    correct: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 0 or not 0 <= self.correct <= max(self.total, 0):
            raise InputError(f"invalid count {self.correct}/{self.total}")

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.total if self.total else float("nan")

    @property
    def stderr(self) -> float:
        """Binomial standard error of :attr:`percent`, in percentage points."""
        if not self.total:
            return float("nan")
        p = self.correct / self.total
        return 100.0 * math.sqrt(p * (1.0 - p) / self.total)

    def ci95(self, draws: int = 1) -> tuple[float, float]:
        """95 % Wilson interval of :attr:`percent` (:func:`irad.evaluate.intervals.count_interval`:
        with ``draws > 1`` the number of images ``total / draws`` is the sample size).

        Example:
            >>> [round(v, 1) for v in Count(50, 100).ci95()]
            [40.4, 59.6]
        """
        return count_interval(self.correct, self.total, draws)

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "total": self.total, "percent": self.percent}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Count:
        return cls(int(data["correct"]), int(data["total"]))

    @classmethod
    def of(cls, correct: Tensor) -> Count:
        """Count the ``True`` entries of a boolean tensor."""
        return cls(int(correct.sum().item()), int(correct.numel()))


def average(sa: Count, ra: Count) -> float:
    """The paper's Avg: ``(SA + RA) / 2`` in percent."""
    return (sa.percent + ra.percent) / 2.0


def worst_case(per_attack: Sequence[Tensor]) -> Tensor:
    """Per-image worst case over attacks: robust only if correct under every attack.

    For random defenses each draw is judged separately (an image is robust in draw ``d`` when
    every attack's draw ``d`` leaves it correctly classified), then the draws are averaged.

    Shape:
        - Input: a non-empty sequence of boolean ``(draws, N)`` tensors of one shape.
        - Output: boolean ``(draws, N)``.

    Example:
        >>> a = torch.tensor([[True, True, False]])
        >>> b = torch.tensor([[True, False, True]])
        >>> worst_case([a, b]).tolist()
        [[True, False, False]]
    """
    if not per_attack:
        raise InputError("worst_case needs at least one attack's results")
    shape = per_attack[0].shape
    for t in per_attack:
        if t.shape != shape or t.dtype != torch.bool:
            raise InputError(
                f"worst_case needs boolean tensors of one shape, got {t.dtype} {tuple(t.shape)} "
                f"and {tuple(shape)}"
            )
    out = per_attack[0].clone()
    for t in per_attack[1:]:
        out &= t
    return out


def encode_bits(correct: Tensor) -> list[str]:
    """Compact JSON form of a ``(draws, N)`` boolean tensor: one '0'/'1' string per draw."""
    return [
        "".join("1" if v else "0" for v in row.tolist())
        for row in correct.reshape(correct.shape[0], -1)
    ]


def decode_bits(rows: Sequence[str]) -> Tensor:
    """Inverse of :func:`encode_bits`."""
    if not rows:
        return torch.zeros(0, 0, dtype=torch.bool)
    return torch.tensor([[c == "1" for c in row] for row in rows], dtype=torch.bool)
