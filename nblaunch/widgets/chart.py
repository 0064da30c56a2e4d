"""The one live chart: an anywidget that draws downsampled curves as SVG.

The kernel keeps every logged point (``array('d')``) and a ``MinMaxSeries``
per curve; what crosses the wire is only the drawn points of the curves on
show, packed as float32 in one ``Bytes`` trait (``series`` says how many
points each curve has). A 100k-point history therefore costs at most
``2000 * 2 * 4`` bytes per curve per update, and an update costs the new
points, not the history. The JavaScript is inline (no CDN, no npm build), so
the chart renders wherever anywidget does and its saved state renders
statically.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

import anywidget
import traitlets

from nblaunch.widgets.downsample import DEFAULT_MAX_POINTS, MinMaxSeries

__all__ = ["PALETTE", "LiveChart"]

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)

_ESM = r"""
const NS = "http://www.w3.org/2000/svg";

function floats(v) {
  if (!v) return new Float32Array(0);
  if (v instanceof ArrayBuffer) return new Float32Array(v.slice(0));
  if (ArrayBuffer.isView(v)) {
    return new Float32Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  }
  return new Float32Array(0);
}

function esc(s) {
  const map = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"};
  return String(s).replace(/[&<>"]/g, (c) => map[c]);
}

function fmt(v) {
  if (!isFinite(v)) return "";
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return String(+v.toPrecision(4));
}

function draw(model, root) {
  const series = model.get("series") || [];
  const all = floats(model.get("data"));
  const logY = model.get("log_y");
  const H = model.get("height") || 240;
  const W = Math.max(320, root.clientWidth || 640);
  const m = {l: 58, r: 14, t: 10, b: 30};
  const curves = [];
  let off = 0, drawn = 0, logged = 0;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  const ty = (y) => (logY ? (y > 0 ? Math.log10(y) : NaN) : y);
  for (const s of series) {
    const n = s.n || 0;
    const xs = all.subarray(off, off + n), ys = all.subarray(off + n, off + 2 * n);
    off += 2 * n; drawn += n; logged += s.count || 0;
    curves.push({s, xs, ys});
    for (let i = 0; i < n; i++) {
      const y = ty(ys[i]);
      if (!isFinite(y)) continue;
      if (xs[i] < x0) x0 = xs[i];
      if (xs[i] > x1) x1 = xs[i];
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  for (const mk of model.get("marks") || []) {
    const y = ty(mk.y);
    if (isFinite(y)) { y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  }
  root.dataset.points = String(drawn);
  root.dataset.logged = String(logged);
  root.dataset.series = String(series.length);
  const title = model.get("title");
  let html = title ? `<div class="nbl-chart-title">${esc(title)}</div>` : "";
  if (drawn === 0) {
    root.innerHTML = html + `<div class="nbl-chart-empty">waiting for metrics…</div>`;
    return;
  }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.05 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const pw = W - m.l - m.r, ph = H - m.t - m.b;
  const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y) => m.t + (1 - (ty(y) - y0) / (y1 - y0)) * ph;
  let svg = `<svg xmlns="${NS}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`;
  svg += `<rect class="nbl-frame" x="${m.l}" y="${m.t}" width="${pw}" height="${ph}"/>`;
  for (let k = 0; k <= 4; k++) {
    const v = y0 + ((y1 - y0) * k) / 4, py = m.t + (1 - k / 4) * ph;
    const label = logY ? fmt(Math.pow(10, v)) : fmt(v);
    svg += `<line class="nbl-grid" x1="${m.l}" x2="${m.l + pw}" y1="${py}" y2="${py}"/>`;
    svg += `<text class="nbl-tick" x="${m.l - 6}" y="${py + 4}" text-anchor="end">${label}</text>`;
  }
  for (let k = 0; k <= 4; k++) {
    const v = x0 + ((x1 - x0) * k) / 4, px = m.l + (k / 4) * pw;
    svg += `<text class="nbl-tick" x="${px}" y="${m.t + ph + 16}" text-anchor="middle">`
      + `${fmt(Math.round(v))}</text>`;
  }
  svg += `<text class="nbl-tick" x="${m.l + pw}" y="${H - 2}" text-anchor="end">`
    + `${esc(model.get("x_label"))}</text>`;
  for (const {s, xs, ys} of curves) {
    const pts = [];
    for (let i = 0; i < xs.length; i++) {
      const py = sy(ys[i]);
      if (isFinite(py)) pts.push(`${sx(xs[i]).toFixed(1)},${py.toFixed(1)}`);
    }
    const dash = s.dash ? ` stroke-dasharray="5 3"` : "";
    svg += `<polyline class="nbl-line" data-key="${esc(s.key)}" fill="none"`
      + ` stroke="${esc(s.color)}"${dash} points="${pts.join(" ")}"/>`;
    if (pts.length === 1) {
      const [px, py] = pts[0].split(",");
      svg += `<circle cx="${px}" cy="${py}" r="2.5" fill="${esc(s.color)}"/>`;
    }
  }
  for (const mk of model.get("marks") || []) {
    const px = sx(mk.x), py = sy(mk.y);
    if (!isFinite(px) || !isFinite(py)) continue;
    svg += `<circle class="nbl-mark" cx="${px}" cy="${py}" r="5" fill="none"`
      + ` stroke="${esc(mk.color || "#000")}" stroke-width="2"/>`;
    svg += `<text class="nbl-mark-label" x="${px + 8}" y="${py - 8}">${esc(mk.label || "")}</text>`;
  }
  svg += `</svg>`;
  let legend = `<div class="nbl-legend">`;
  for (const {s} of curves) {
    const last = s.last === null || s.last === undefined ? "" : ` ${fmt(s.last)}`;
    legend += `<span class="nbl-key"><i style="background:${esc(s.color)}"></i>`
      + `${esc(s.label)}<b>${last}</b></span>`;
  }
  legend += `<span class="nbl-count">${drawn} of ${logged} points</span></div>`;
  root.innerHTML = html + svg + legend;
}

function render({model, el}) {
  const root = document.createElement("div");
  root.className = "nbl-chart";
  el.appendChild(root);
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(model, root); });
  };
  draw(model, root);
  const keys = ["data", "series", "marks", "log_y", "title", "height"].map((k) => `change:${k}`);
  for (const k of keys) model.on(k, redraw);
  let ro = null;
  if (typeof ResizeObserver !== "undefined") { ro = new ResizeObserver(redraw); ro.observe(root); }
  return () => { for (const k of keys) model.off(k, redraw); if (ro) ro.disconnect(); };
}

export default { render };
"""

_CSS = """
.nbl-chart {
  font: 11px var(--jp-ui-font-family, sans-serif);
  color: var(--jp-ui-font-color1, #333);
  min-width: 320px;
}
.nbl-chart-title { font-weight: 600; margin: 2px 0 4px; }
.nbl-chart-empty { color: var(--jp-ui-font-color2, #777); padding: 16px 4px; }
.nbl-chart .nbl-frame { fill: none; stroke: var(--jp-border-color1, #bbb); }
.nbl-chart .nbl-grid { stroke: var(--jp-border-color2, #e3e3e3); }
.nbl-chart .nbl-tick,
.nbl-chart .nbl-mark-label { fill: var(--jp-ui-font-color2, #666); font-size: 10px; }
.nbl-chart .nbl-line { stroke-width: 1.6; }
.nbl-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin-top: 2px; }
.nbl-key i { display: inline-block; width: 10px; height: 3px; margin: 0 4px 3px 0; }
.nbl-key b { font-weight: 500; margin-left: 4px; }
.nbl-count { color: var(--jp-ui-font-color2, #777); margin-left: auto; }
"""


class _Curve:
    """Every logged point of one metric, plus its downsampled view."""

    __slots__ = ("key", "label", "color", "dash", "xs", "ys", "view", "attempt", "max_points")

    def __init__(self, key: str, label: str, color: str, dash: bool, max_points: int) -> None:
        self.key, self.label, self.color, self.dash = key, label, color, dash
        self.max_points = max_points
        self.xs: array[float] = array("d")
        self.ys: array[float] = array("d")
        self.view = MinMaxSeries(max_points)
        self.attempt = 0

    def append(self, x: float | None, y: float, attempt: int) -> None:
        if x is None:
            x = float(len(self.xs))
        if attempt > self.attempt:
            # A resumed attempt restarts from its checkpoint's step: what the
            # earlier attempt logged from there on is superseded.
            if self.attempt and self.xs and x <= self.xs[-1]:
                keep = next((i for i, old in enumerate(self.xs) if old >= x), len(self.xs))
                del self.xs[keep:]
                del self.ys[keep:]
                self.view = MinMaxSeries(self.max_points)
                self.view.extend(self.xs, self.ys)
            self.attempt = attempt
        self.xs.append(x)
        self.ys.append(y)
        self.view.append(x, y)


class LiveChart(anywidget.AnyWidget):
    """Curves keyed by name, drawn live; only the curves in ``shown`` are sent.

    Add points with ``append``/``extend`` (cheap, kernel-side only) and push
    them to the browser with ``flush()`` (one message for the whole batch).
    """

    _esm = _ESM
    _css = _CSS

    title = traitlets.Unicode("").tag(sync=True)
    x_label = traitlets.Unicode("step").tag(sync=True)
    log_y = traitlets.Bool(False).tag(sync=True)
    height = traitlets.Int(240).tag(sync=True)
    #: ``[{key, label, color, dash, n, count, last}]`` for the curves on show, in order
    series = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: float32: for each entry of ``series``, its ``n`` x values then its ``n`` y values
    data = traitlets.Bytes(b"").tag(sync=True)
    #: ``[{x, y, label, color}]``: points to circle (e.g. the best so far)
    marks = traitlets.List(traitlets.Dict()).tag(sync=True)

    def __init__(self, max_points: int = DEFAULT_MAX_POINTS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_points = max_points
        self._curves: dict[str, _Curve] = {}
        self._shown: list[str] = []
        self._dirty = False

    # -- kernel-side data -------------------------------------------------

    @property
    def curve_keys(self) -> list[str]:
        """Every curve the chart holds, shown or not, in the order they were added."""
        return list(self._curves)

    @property
    def shown(self) -> list[str]:
        return list(self._shown)

    def add_curve(
        self, key: str, label: str | None = None, color: str | None = None, dash: bool = False
    ) -> None:
        """Declare a curve (``append`` does it on first use with defaults)."""
        curve = self._curves.get(key)
        if curve is None:
            color = color or PALETTE[len(self._curves) % len(PALETTE)]
            self._curves[key] = _Curve(key, label or key, color, dash, self.max_points)
        else:
            curve.label = label or curve.label
            curve.color = color or curve.color
            curve.dash = dash
        if key in self._shown:
            self._dirty = True

    def append(self, key: str, x: float | None, y: float, attempt: int = 1) -> None:
        if not math.isfinite(y):
            return
        if key not in self._curves:
            self.add_curve(key)
        self._curves[key].append(x, y, attempt)
        if key in self._shown:
            self._dirty = True

    def extend(self, key: str, xs: Iterable[float | None], ys: Iterable[float]) -> None:
        for x, y in zip(xs, ys, strict=False):
            self.append(key, x, y)

    def count(self, key: str) -> int:
        curve = self._curves.get(key)
        return len(curve.xs) if curve else 0

    def last(self, key: str) -> float | None:
        curve = self._curves.get(key)
        return curve.ys[-1] if curve and curve.ys else None

    def values(self, key: str) -> tuple[array[float], array[float]]:
        """Every logged ``(xs, ys)`` of a curve (not downsampled)."""
        curve = self._curves.get(key)
        return (array("d", curve.xs), array("d", curve.ys)) if curve else (array("d"), array("d"))

    def show(self, keys: Sequence[str]) -> None:
        """Choose the curves on show (unknown keys are kept for when they arrive)."""
        if list(keys) != self._shown:
            self._shown = list(keys)
            self._dirty = True

    # -- the wire ----------------------------------------------------------

    def flush(self) -> bool:
        """Send what changed since the last flush in one message; True if anything was sent."""
        if not self._dirty:
            return False
        meta: list[dict[str, Any]] = []
        payload = bytearray()
        for key in self._shown:
            curve = self._curves.get(key)
            if curve is None:
                continue
            xs, ys = curve.view.points()
            payload += array("f", xs).tobytes()
            payload += array("f", ys).tobytes()
            meta.append(
                {
                    "key": key,
                    "label": curve.label,
                    "color": curve.color,
                    "dash": curve.dash,
                    "n": len(xs),
                    "count": len(curve.xs),
                    "last": curve.ys[-1] if curve.ys else None,
                }
            )
        with self.hold_sync():
            self.series = meta
            self.data = bytes(payload)
        self._dirty = False
        return True

    def points_shown(self) -> int:
        """How many points the browser draws now (the sum of ``series[*].n``)."""
        return sum(int(s["n"]) for s in self.series)
