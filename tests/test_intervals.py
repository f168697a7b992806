"""The 95 % interval beside every SA and RA: Wilson's score interval, on known cases."""

from __future__ import annotations

import math

import pytest

from irad.errors import InputError
from irad.evaluate.intervals import count_interval, format_interval, wilson_interval
from irad.evaluate.metrics import Count


@pytest.mark.parametrize(
    "successes,n,low,high",
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
        # method 3 (Wilson score interval, no continuity correction), as proportions.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # and the textbook case: 50 of 100
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_interval_known_cases(successes: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(successes, n)
    assert lo / 100 == pytest.approx(low, abs=6e-5) and hi / 100 == pytest.approx(high, abs=6e-5)


def test_wilson_interval_properties() -> None:
    for n in (1, 7, 100, 1000):
        for k in range(0, n + 1, max(1, n // 7)):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= 100.0 * k / n <= hi <= 100.0  # contains the estimate, in [0, 100]
            # symmetric: k successes mirror n - k failures
            lo2, hi2 = wilson_interval(n - k, n)
            assert lo == pytest.approx(100 - hi2, abs=1e-9) and hi == pytest.approx(100 - lo2)
    # narrower with more images at the same proportion
    assert wilson_interval(500, 1000)[1] - wilson_interval(500, 1000)[0] < (
        wilson_interval(50, 100)[1] - wilson_interval(50, 100)[0]
    )


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(InputError, match="n > 0"):
        wilson_interval(0, 0)
    with pytest.raises(InputError, match="in \\[0, n\\]"):
        wilson_interval(11, 10)


def test_several_draws_use_the_number_of_images_as_n() -> None:
    # 3 draws of 100 images, 150 of 300 correct: the interval of 50 of 100 images
    assert count_interval(150, 300, draws=3) == pytest.approx(wilson_interval(50, 100))
    assert count_interval(50, 100) == pytest.approx(wilson_interval(50, 100))
    assert all(math.isnan(v) for v in count_interval(0, 0))
    assert Count(50, 100).ci95() == pytest.approx(wilson_interval(50, 100))


def test_format_interval() -> None:
    assert format_interval(40.383, 59.617) == "[40.4, 59.6]"
    assert format_interval(float("nan"), float("nan")) == "–"


def test_the_old_import_still_works() -> None:
    from irad.evaluate.random_defense import wilson_interval as old

    assert old is wilson_interval
