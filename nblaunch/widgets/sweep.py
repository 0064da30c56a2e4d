"""SweepBoard: a sweep's loss curves overlaid, parameters in the legend, best so far marked.

One ``LiveChart`` curve per job and metric (``<job id>/<metric>``); the metric
on show defaults to the eval loss when any job logs one, else the training
loss. The legend names each job by the parameters the sweep varies; the best
value so far (lowest, or highest with ``mode="max"``) is circled and named.
"""

from __future__ import annotations

import threading
from html import escape
from pathlib import Path
from typing import Any

import ipywidgets as w

from nblaunch.api import Job, sweep_jobs
from nblaunch.queue.states import FINAL
from nblaunch.runtime.contract import GPU_PREFIX, MAX_STEPS_METRIC
from nblaunch.widgets import render
from nblaunch.widgets.chart import PALETTE, LiveChart
from nblaunch.widgets.fallback import StaticFallback
from nblaunch.widgets.poller import ViewTracking, poller

__all__ = ["SweepBoard"]

_DISCOVER_EVERY = 5  # look for new jobs of the sweep every 5th tick


class SweepBoard(ViewTracking, StaticFallback, w.VBox):
    """Live overlay of a sweep's curves.

    Parameters
    ----------
    sweep_id
        The ``sweep_id`` its jobs were submitted with.
    metric
        Metric to overlay; default: eval loss if logged, else training loss.
    mode
        ``min`` (losses) or ``max`` (accuracies): which value is best.
    """

    def __init__(
        self,
        sweep_id: str,
        *,
        metric: str | None = None,
        mode: str = "min",
        live: bool = True,
        root: Path | None = None,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError("mode must be 'min' or 'max'")
        self.sweep_id = sweep_id
        self.mode = mode
        self.root = root
        self.jobs: dict[str, Job] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self.states: dict[str, str] = {}
        self.names: set[str] = set()
        self.best: dict[str, Any] | None = None
        self._cursors: dict[str, int] = {}
        self._extremes: dict[str, list[tuple[float, float]]] = {}  # key -> [(x, min), (x, max)]
        self._metric_fixed = metric is not None
        self._lock = threading.RLock()
        self._tick = 0
        self.chart = LiveChart(height=280)
        self.header = w.HTML()
        self.metric = w.Dropdown(
            options=[metric] if metric else [], value=metric, description="metric"
        )
        self.metric.observe(self._on_metric, names="value")
        super().__init__([self.header, self.metric, self.chart])
        self.add_class("nbl-sweep-board")
        self.refresh(force=True)
        self._track_views(register=live)

    def __repr__(self) -> str:
        return f"SweepBoard({self.sweep_id!r})"

    def refresh(self, force: bool = False) -> bool:
        with self._lock:
            self._tick += 1
            if force or self._tick % _DISCOVER_EVERY == 0:
                for job in sweep_jobs(self.sweep_id, self.root):
                    if job.id in self.jobs:
                        continue
                    self.jobs[job.id] = job
                    self.params[job.id] = dict(job.snapshot(metrics=False).params)
                    self._cursors[job.id] = 0
            active = [j for j in self.jobs if self.states.get(j) not in FINAL]
            if not force and not active and self._tick % _DISCOVER_EVERY:
                return True
            for job_id in active or list(self.jobs):
                job = self.jobs[job_id]
                self.states[job_id] = job.state.value
                rows, self._cursors[job_id] = job.metrics_since(self._cursors[job_id])
                for attempt, step, name, value, _t in rows:
                    if name == MAX_STEPS_METRIC:
                        continue
                    self.names.add(name)
                    key = f"{job_id}/{name}"
                    self.chart.append(key, step, value, attempt)
                    self._track_extremes(key, step, value)
            self._render()
            return True

    def _track_extremes(self, key: str, step: int | None, value: float) -> None:
        if value != value:
            return
        x = float(step if step is not None else self.chart.count(key) - 1)
        found = self._extremes.get(key)
        if found is None:
            self._extremes[key] = [(x, value), (x, value)]
            return
        if value < found[0][1]:
            found[0] = (x, value)
        if value > found[1][1]:
            found[1] = (x, value)

    def _choose_metric(self) -> str | None:
        if self._metric_fixed and self.metric.value:
            return str(self.metric.value)
        for group in (render.EVAL_LOSS, render.TRAIN_LOSS):
            for name in group:
                if name in self.names:
                    return name
        others = sorted(n for n in self.names if not n.startswith(GPU_PREFIX))
        return others[0] if others else None

    def _render(self) -> None:
        metric = self._choose_metric()
        options = sorted(self.names)
        if metric and list(self.metric.options) != options:
            with self.metric.hold_sync():
                self.metric.options = options
                self.metric.value = metric
        varying = _varying_keys(self.params.values())
        best: dict[str, Any] | None = None
        keys = []
        for n, (job_id, _job) in enumerate(self.jobs.items()):
            if metric is None:
                break
            key = f"{job_id}/{metric}"
            label = render.params_label(self.params[job_id], varying) or job_id
            self.chart.add_curve(
                key,
                label=f"{label} ({self.states.get(job_id, '?')})",
                color=PALETTE[n % len(PALETTE)],
            )
            keys.append(key)
            found = self._extremes.get(key)
            if found is not None:
                x, y = found[0] if self.mode == "min" else found[1]
                if best is None or (y < best["y"] if self.mode == "min" else y > best["y"]):
                    best = {
                        "job": job_id,
                        "label": label,
                        "x": x,
                        "y": y,
                        "color": PALETTE[n % len(PALETTE)],
                    }
        self.best = best
        self.chart.show(keys)
        with self.chart.hold_sync():
            self.chart.title = f"{metric or 'no metrics yet'} by job"
            self.chart.marks = (
                [
                    {
                        "x": best["x"],
                        "y": best["y"],
                        "label": f"best {render.fmt_number(best['y'])}",
                        "color": best["color"],
                    }
                ]
                if best
                else []
            )
            self.chart.flush()
        self.header.value = _header_html(self.sweep_id, self.states, best, metric)

    def _on_metric(self, change: dict[str, Any]) -> None:
        if change["new"] and change["new"] != self._choose_metric():
            self._metric_fixed = True
            with self._lock:
                self._render()

    def text(self) -> str:
        states = ", ".join(f"{j} {s}" for j, s in self.states.items())
        line = f"sweep {self.sweep_id}: {len(self.jobs)} jobs ({states})"
        if self.best:
            best = self.best
            line += f"\n  best {render.fmt_number(best['y'])}: {best['job']} {best['label']}"
        return line

    def html(self) -> str:
        return str(self.header.value)

    def close(self) -> None:
        poller().unregister(self)
        for name in ("chart", "header", "metric"):
            widget = getattr(self, name, None)
            if widget is not None:
                widget.close()
        super().close()


def _varying_keys(params: Any) -> list[str]:
    """Parameter names whose values differ between the sweep's jobs."""
    all_params = list(params)
    keys = sorted({k for p in all_params for k in p})
    return [k for k in keys if len({repr(p.get(k)) for p in all_params}) > 1] or keys


def _header_html(
    sweep_id: str, states: dict[str, str], best: dict[str, Any] | None, metric: str | None
) -> str:
    counts: dict[str, int] = {}
    for s in states.values():
        counts[s] = counts.get(s, 0) + 1
    badges = " ".join(f"{render.state_badge(s)} {n}" for s, n in sorted(counts.items()))
    text = (
        f'<div class="nbl-sweep-header" style="font-family:var(--jp-ui-font-family,sans-serif)">'
        f"<b>sweep {escape(sweep_id)}</b> · {len(states)} jobs {badges}"
    )
    if best and metric:
        text += (
            f'<div class="nbl-best">best {escape(metric)} <b>{render.fmt_number(best["y"])}</b> '
            f"at step {best['x']:.0f}: <code>{escape(best['job'])}</code> "
            f"{escape(best['label'])}</div>"
        )
    return text + "</div>"
