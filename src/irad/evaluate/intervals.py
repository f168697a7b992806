"""Confidence intervals of accuracies: the 95 % Wilson score interval of a binomial proportion.

Every SA and RA that irad reports is a proportion of images (``correct / n``); the interval beside
it is Wilson's (Wilson 1927; Brown, Cai & DasGupta 2001 recommend it over the normal
approximation, which gives impossible bounds such as -2 % and collapses to zero width at 0 % and
100 %)::

    >>> [round(v, 1) for v in wilson_interval(50, 100)]
    [40.4, 59.6]
    >>> [round(v, 2) for v in wilson_interval(0, 200)]
    [0.0, 1.88]

A random defense scored over several draws has ``images x draws`` outcomes, but the draws of one
image are not independent of each other: :func:`count_interval` then takes the proportion over
all outcomes and the *number of images* as the sample size, which is conservative (the interval
is at least as wide as the truth).
"""

from __future__ import annotations

import math

from irad.errors import InputError

#: The two-sided 95 % normal quantile.
Z95 = 1.959964

#: Recorded with results and printed under tables: what the interval beside SA and RA is.
INTERVAL_METHOD = (
    "95 % Wilson score interval (binomial over images; for a random defense scored over several "
    "draws, the proportion over all draws with the number of images as n)"
)


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``successes / n``, in percent.

    ``successes`` may be fractional (a mean over draws times ``n``). ``z`` = 1.96 gives 95 %.

    Raises:
        InputError: ``n <= 0`` or ``successes`` outside ``[0, n]``.

    Example:
        >>> [round(v, 1) for v in wilson_interval(50, 100)]
        [40.4, 59.6]
        >>> wilson_interval(0, 10)[0], round(wilson_interval(10, 10)[1], 6)
        (0.0, 100.0)
    """
    if n <= 0:
        raise InputError("a proportion needs n > 0")
    if not 0 <= successes <= n:
        raise InputError(f"successes must be in [0, n], got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, 100 * (centre - half))  # exact at the ends
    high = 100.0 if successes == n else min(100.0, 100 * (centre + half))
    return low, high


def count_interval(correct: int, total: int, draws: int = 1) -> tuple[float, float]:
    """95 % Wilson interval of ``correct / total`` where ``total = images x draws``.

    With one draw this is :func:`wilson_interval`; with several, the sample size is the number
    of images ``total / draws`` (see the module docstring). ``(nan, nan)`` for an empty count.

    Example:
        >>> [round(v, 1) for v in count_interval(150, 300, draws=3)]
        [40.4, 59.6]
    """
    if total <= 0:
        return float("nan"), float("nan")
    draws = max(1, int(draws))
    images = total / draws if total % draws == 0 else total
    return wilson_interval(correct * images / total, images)


def format_interval(low: float, high: float, digits: int = 1) -> str:
    """``[40.4, 59.6]``; ``–`` when undefined."""
    if math.isnan(low) or math.isnan(high):
        return "–"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"
