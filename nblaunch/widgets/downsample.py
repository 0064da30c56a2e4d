"""Min/max downsampling of long curves, in Python, before they reach the browser.

A curve keeps its shape (every spike and dip stays) when each bucket of
consecutive points is drawn as its minimum and its maximum, in the order they
came. ``MinMaxSeries`` does this *incrementally*: points are appended one
bucket at a time, and when there are too many buckets neighbours merge and the
bucket width doubles, so an append costs O(1) amortized whatever the history,
and the drawn curve never has more than ``max_points`` points. The first and
the newest point are always kept (a live loss curve must end at the latest
value).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

__all__ = ["DEFAULT_MAX_POINTS", "MinMaxSeries", "minmax"]

DEFAULT_MAX_POINTS = 2000


class _Bucket:
    """Consecutive points summarized by their extremes (with arrival index)."""

    __slots__ = ("count", "lo_i", "lo_x", "lo_y", "hi_i", "hi_x", "hi_y")

    def __init__(self, i: int, x: float, y: float) -> None:
        self.count = 1
        self.lo_i = self.hi_i = i
        self.lo_x = self.hi_x = x
        self.lo_y = self.hi_y = y

    def add(self, i: int, x: float, y: float) -> None:
        self.count += 1
        if y < self.lo_y:
            self.lo_i, self.lo_x, self.lo_y = i, x, y
        if y > self.hi_y:
            self.hi_i, self.hi_x, self.hi_y = i, x, y

    def merge(self, other: _Bucket) -> None:
        self.count += other.count
        if other.lo_y < self.lo_y:
            self.lo_i, self.lo_x, self.lo_y = other.lo_i, other.lo_x, other.lo_y
        if other.hi_y > self.hi_y:
            self.hi_i, self.hi_x, self.hi_y = other.hi_i, other.hi_x, other.hi_y


class MinMaxSeries:
    """An append-only curve that keeps at most ``max_points`` points to draw.

    Parameters
    ----------
    max_points
        Bound on ``len(points())``; at least 4.
    """

    def __init__(self, max_points: int = DEFAULT_MAX_POINTS) -> None:
        if max_points < 4:
            raise ValueError("max_points must be at least 4")
        self.max_points = max_points
        self._width = 1
        self._buckets: list[_Bucket] = []
        # drawn points of the closed buckets (all but the newest), rebuilt after a merge
        self._cxs: array[float] = array("d")
        self._cys: array[float] = array("d")
        self._closed = 0
        self._n = 0
        self._first: tuple[float, float] | None = None
        self._last: tuple[float, float] | None = None

    def __len__(self) -> int:
        """How many points were appended (not how many are drawn)."""
        return self._n

    @property
    def last(self) -> tuple[float, float] | None:
        return self._last

    def append(self, x: float, y: float) -> None:
        if y != y:  # NaN: nothing to draw, and it would poison min/max
            return
        i = self._n
        self._n += 1
        if self._first is None:
            self._first = (x, y)
        self._last = (x, y)
        buckets = self._buckets
        if buckets and buckets[-1].count < self._width:
            buckets[-1].add(i, x, y)
            return
        buckets.append(_Bucket(i, x, y))
        # one point per bucket while width is 1; then two (min, max) per bucket;
        # plus the first and the newest point
        limit = self.max_points - 2 if self._width == 1 else (self.max_points - 2) // 2
        if len(buckets) > limit:
            self._halve()

    def extend(self, xs: Iterable[float], ys: Iterable[float]) -> None:
        for x, y in zip(xs, ys, strict=False):
            self.append(x, y)

    def _halve(self) -> None:
        old = self._buckets
        merged: list[_Bucket] = []
        for k in range(0, len(old) - 1, 2):
            a = old[k]
            a.merge(old[k + 1])
            merged.append(a)
        if len(old) % 2:
            merged.append(old[-1])
        self._buckets = merged
        self._width *= 2
        self._cxs, self._cys, self._closed = array("d"), array("d"), 0

    def points(self) -> tuple[array[float], array[float]]:
        """The points to draw, in order: ``(xs, ys)`` as ``array('d')``."""
        if self._first is None or self._last is None:
            return array("d"), array("d")
        buckets = self._buckets
        closed = len(buckets) - 1
        for b in buckets[self._closed : closed]:
            self._emit(b, self._cxs, self._cys)
        self._closed = closed
        xs = array("d", (self._first[0],))
        ys = array("d", (self._first[1],))
        xs.extend(self._cxs)
        ys.extend(self._cys)
        self._emit(buckets[-1], xs, ys)
        if self._n > 1:
            xs.append(self._last[0])
            ys.append(self._last[1])
        return xs, ys

    def _emit(self, b: _Bucket, xs: array[float], ys: array[float]) -> None:
        """Append a bucket's extremes in arrival order, except the first and newest point."""
        if b.lo_i == b.hi_i:
            pairs: tuple[tuple[int, float, float], ...] = ((b.lo_i, b.lo_x, b.lo_y),)
        elif b.lo_i < b.hi_i:
            pairs = ((b.lo_i, b.lo_x, b.lo_y), (b.hi_i, b.hi_x, b.hi_y))
        else:
            pairs = ((b.hi_i, b.hi_x, b.hi_y), (b.lo_i, b.lo_x, b.lo_y))
        for i, x, y in pairs:
            if i != 0 and i != self._n - 1:
                xs.append(x)
                ys.append(y)


def minmax(
    xs: Iterable[float], ys: Iterable[float], max_points: int = DEFAULT_MAX_POINTS
) -> tuple[array[float], array[float]]:
    """Downsample a whole curve at once (see ``MinMaxSeries``)."""
    series = MinMaxSeries(max_points)
    series.extend(xs, ys)
    return series.points()
