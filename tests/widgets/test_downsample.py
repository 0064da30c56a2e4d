"""Downsampling bounds: never more than max_points, shape (extremes, ends) kept."""

from __future__ import annotations

import math
import random

import pytest

from nblaunch.widgets.downsample import MinMaxSeries, minmax


@pytest.mark.parametrize("n", [0, 1, 2, 3, 1999, 2000, 2001, 4003, 100_000])
def test_never_more_than_max_points_and_ends_kept(n: int) -> None:
    ys = [math.sin(i / 40) for i in range(n)]
    xs, out = minmax(range(n), ys, max_points=2000)
    assert len(xs) == len(out) <= 2000
    assert list(xs) == sorted(set(xs))  # in order, no point twice
    if n:
        assert (xs[0], xs[-1]) == (0, n - 1)
        assert out[-1] == ys[-1]


def test_short_curves_are_untouched() -> None:
    ys = [random.random() for _ in range(2000)]
    xs, out = minmax(range(2000), ys)
    assert list(xs) == list(range(2000)) and list(out) == ys


def test_spikes_and_dips_survive() -> None:
    ys = [1.0] * 100_000
    ys[31_337], ys[77_777] = 50.0, -50.0
    _, out = minmax(range(len(ys)), ys, max_points=500)
    assert max(out) == 50.0 and min(out) == -50.0


def test_incremental_equals_batch_at_every_size() -> None:
    rng = random.Random(7)
    series, ys = MinMaxSeries(64), []
    for i in range(3000):
        ys.append(rng.gauss(0, 1))
        series.append(i, ys[-1])
        if i % 97 == 0 or i == 2999:
            assert series.points() == minmax(range(i + 1), ys, max_points=64)
            assert len(series.points()[0]) <= 64
    assert len(series) == 3000


def test_nan_is_skipped_and_bound_is_validated() -> None:
    s = MinMaxSeries(10)
    s.append(0, float("nan"))
    s.append(1, 2.0)
    assert list(s.points()[1]) == [2.0] and len(s) == 1
    with pytest.raises(ValueError):
        MinMaxSeries(3)
