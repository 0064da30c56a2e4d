"""Pure rendering: job and queue snapshots (``nblaunch.snapshots``) and estimates →
HTML or text.

Nothing here touches the store, a widget or a clock it was not given, so every
function is tested without a frontend. Widgets put the HTML into
``ipywidgets.HTML`` values; the same functions give the ``text/html`` and
``text/plain`` a notebook shows where widgets cannot render (terminal
IPython, nbconvert, GitHub), and the CLI's and ``%launch_jobs``' job table.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from nblaunch.queue.states import ACTIVE, State
from nblaunch.runtime.contract import GPU_METRICS
from nblaunch.snapshots import JobSnapshot, QueueSnapshot

__all__ = [
    "EVAL_LOSS",
    "GPU_METRICS",
    "QUEUE_COLUMNS",
    "STATE_COLORS",
    "TRAIN_LOSS",
    "elapsed_s",
    "fmt_clock",
    "fmt_duration",
    "fmt_number",
    "fmt_usd",
    "gpu_line",
    "job_details_text",
    "jobs_table",
    "job_card_html",
    "job_details_html",
    "job_header_html",
    "job_text",
    "params_label",
    "projected_cost",
    "queue_empty_html",
    "queue_header_html",
    "queue_row_html",
    "queue_table_html",
    "queue_text",
    "sparkline_svg",
    "state_badge",
]

TRAIN_LOSS = ("loss", "train/loss", "train_loss")
EVAL_LOSS = ("eval_loss", "eval/loss", "val_loss", "val/loss")

STATE_COLORS: dict[str, str] = {
    State.QUEUED: "#6c7a89",
    State.STARTING: "#b7791f",
    State.RUNNING: "#1f6feb",
    State.SUCCEEDED: "#1a7f37",
    State.FAILED: "#cf222e",
    State.PREEMPTED: "#d4690b",
    State.LOST: "#8250df",
    State.CANCELLED: "#57606a",
}
#: order of the per-state counts in a queue's header
_COUNT_ORDER = (
    State.RUNNING,
    State.STARTING,
    State.QUEUED,
    State.SUCCEEDED,
    State.FAILED,
    State.PREEMPTED,
    State.LOST,
    State.CANCELLED,
)
#: states before the output notebook is written
_NO_OUTPUT_YET = frozenset({State.QUEUED, State.STARTING})

MUTED = "color:var(--jp-ui-font-color2,#666)"
FONT = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;line-height:1.45"

# -- formatting ---------------------------------------------------------------


def fmt_duration(seconds: float | None) -> str:
    """``45s``, ``3m 12s``, ``2h 05m``, ``3d 4h``; ``—`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h}h"


def fmt_usd(value: float | None) -> str:
    """``$0.42``, ``$1,234.50``, ``<$0.01``; ``—`` when unknown."""
    if value is None or value != value:
        return "—"
    if 0 < value < 0.005:
        return "<$0.01"
    return f"${value:,.2f}"


def fmt_number(value: float | None) -> str:
    """Four significant digits, exponent for the very large or small."""
    if value is None or value != value:
        return "—"
    a = abs(value)
    if a and (a >= 1e5 or a < 1e-3):
        return f"{value:.2e}"
    return f"{value:.4g}"


def fmt_clock(ts: float | None, now: float | None = None) -> str:
    """Local ``14:03:22`` today, ``Nov 28 14:03`` otherwise; ``—`` when unknown."""
    if ts is None:
        return "—"
    now = time.time() if now is None else now
    t, n = time.localtime(ts), time.localtime(now)
    if (t.tm_year, t.tm_yday) == (n.tm_year, n.tm_yday):
        return time.strftime("%H:%M:%S", t)
    return time.strftime("%b %d %H:%M", t)


def elapsed_s(snap: JobSnapshot) -> float | None:
    """Seconds since the first start, up to the end if the job is over."""
    if snap.started_at is None:
        return None
    end = snap.finished_at or snap.taken_at
    return max(0.0, end - snap.started_at)


def projected_cost(snap: JobSnapshot) -> float | None:
    """Cost at completion, extrapolated from the cost so far and the progress."""
    cost = snap.cost.usd if snap.cost else None
    fraction = snap.progress.fraction
    if cost is None or not fraction or snap.state not in ACTIVE:
        return None
    return cost / fraction


def params_label(params: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """``lr=0.0003, bs=32`` — only ``keys`` (the ones a sweep varies) when given."""
    chosen = list(keys) if keys is not None else sorted(params)
    parts = []
    for k in chosen:
        if k in params:
            v = params[k]
            parts.append(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def _first(latest: Mapping[str, float], names: Sequence[str]) -> tuple[str, float] | None:
    for name in names:
        if name in latest:
            return name, latest[name]
    return None


def gpu_line(latest: Mapping[str, float]) -> str:
    """``GPU 87% · 21.3 GB · 64°C · 280 W`` from the newest GPU metrics; empty without."""
    parts = []
    for name, form in zip(
        GPU_METRICS, ("{:.0f}%", "{:.1f} GB", "{:.0f}°C", "{:.0f} W"), strict=True
    ):
        if name in latest:
            parts.append(form.format(latest[name]))
    return "GPU " + " · ".join(parts) if parts else ""


def _error_text(snap: JobSnapshot) -> str:
    return "" if snap.shown_error is None else str(snap.shown_error)


# -- job ----------------------------------------------------------------------


def state_badge(state: str) -> str:
    color = STATE_COLORS.get(state, "#57606a")
    return (
        f'<span class="nbl-badge" data-state="{escape(state)}" style="background:{color};'
        "color:#fff;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;"
        f'white-space:nowrap">{escape(state)}</span>'
    )


def job_header_html(snap: JobSnapshot) -> str:
    """Name, id, state badge, and place in the queue or attempt."""
    state = snap.state.value
    where = snap.where
    gpus = snap.gpus
    meta = f"{snap.queue} · {snap.priority_name} · " + (
        f"{gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "CPU"
    )
    return (
        f'<div class="nbl-job-header" data-job="{escape(snap.id)}" '
        f'data-state="{escape(state)}" style="{FONT};display:flex;gap:10px;align-items:center;'
        'flex-wrap:wrap">'
        f'<b style="font-size:14px">{escape(snap.name)}</b>'
        f'<code style="{MUTED}">{escape(snap.id)}</code>'
        f"{state_badge(state)}"
        f'<span class="nbl-where">{escape(where)}</span>'
        f'<span style="{MUTED};margin-left:auto">{escape(meta)}</span></div>'
    )


def job_details_html(snap: JobSnapshot) -> str:
    """Elapsed and ETA, step, latest losses and GPU, cost, and the error if any."""
    rows: list[str] = []
    progress = snap.progress
    timing = []
    elapsed = elapsed_s(snap)
    if elapsed is not None:
        timing.append(f"elapsed <b>{fmt_duration(elapsed)}</b>")
    if progress.eta_s is not None and snap.state is State.RUNNING:
        timing.append(f"ETA <b>{fmt_duration(progress.eta_s)}</b>")
    step = progress.step
    if step is not None:
        total = progress.max_steps
        frac = progress.fraction
        text = f"step <b>{step}</b>" + (f" / {total}" if total else "")
        if frac is not None:
            text += f" ({frac:.0%})"
        timing.append(text)
    if timing:
        rows.append(" · ".join(timing))
    latest = snap.latest
    values = []
    for group in (TRAIN_LOSS, EVAL_LOSS):
        found = _first(latest, group)
        if found:
            values.append(f"{escape(found[0])} <b>{fmt_number(found[1])}</b>")
    gpu = gpu_line(latest)
    if gpu:
        values.append(escape(gpu))
    if values:
        rows.append(" · ".join(values))
    cost = snap.cost
    money = []
    if cost is not None and cost.usd is not None:
        money.append(f'cost <b class="nbl-cost">{fmt_usd(cost.usd)}</b> so far')
        if cost.gpu_hours:
            money.append(f"{cost.gpu_hours:.2f} GPU-h")
    projected = projected_cost(snap)
    if projected is not None:
        money.append(f"~{fmt_usd(projected)} at completion")
    est = snap.estimate or {}
    if est.get("cost_usd") is not None:
        money.append(
            f"estimate {fmt_usd(est['cost_usd'])} / "
            f"{fmt_duration(float(est.get('hours') or 0) * 3600)}"
        )
    if money:
        rows.append(" · ".join(money))
    body = "".join(f"<div>{r}</div>" for r in rows)
    err = _error_text(snap)
    if err:
        body += (
            '<div class="nbl-error" style="color:#cf222e;background:rgba(207,34,46,.08);'
            f'border-radius:4px;padding:3px 6px;margin-top:3px"><code>{escape(err)}</code></div>'
        )
    return f'<div class="nbl-job-details" style="{FONT}">{body}</div>'


def sparkline_svg(
    xs: Sequence[float], ys: Sequence[float], width: int = 320, height: int = 60
) -> str:
    """A small static SVG line (for ``text/html``, where no widget renders)."""
    pts = [(x, y) for x, y in zip(xs, ys, strict=False) if y == y]
    if len(pts) < 2:
        return ""
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    dx, dy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    coords = " ".join(
        f"{(x - x0) / dx * (width - 4) + 2:.1f},{(1 - (y - y0) / dy) * (height - 4) + 2:.1f}"
        for x, y in pts
    )
    return (
        f'<svg class="nbl-sparkline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><polyline fill="none" stroke="#1f77b4" '
        f'stroke-width="1.5" points="{coords}"/></svg>'
    )


def job_card_html(
    snap: JobSnapshot, curve: tuple[Sequence[float], Sequence[float]] | None = None
) -> str:
    """The whole card as static HTML: header, progress bar, details, loss sparkline."""
    frac = snap.progress.fraction
    bar = ""
    if frac is not None:
        bar = (
            '<div style="background:var(--jp-layout-color3,#ddd);height:6px;border-radius:3px;'
            f'margin:4px 0"><div style="width:{frac * 100:.1f}%;height:6px;border-radius:3px;'
            f'background:{STATE_COLORS.get(snap.state, "#1f6feb")}"></div></div>'
        )
    spark = sparkline_svg(*curve) if curve else ""
    return (
        '<div class="nbl-job-card" style="border:1px solid var(--jp-border-color2,#ddd);'
        'border-radius:6px;padding:8px 10px;max-width:760px">'
        f"{job_header_html(snap)}{bar}{job_details_html(snap)}{spark}</div>"
    )


def job_text(snap: JobSnapshot) -> str:
    """Several lines of plain text for terminals and ``text/plain``."""
    where = snap.where
    lines = [f"job {snap.id} ({snap.name}) {snap.state}" + (f", {where}" if where else "")]
    progress = snap.progress
    parts = []
    if progress.step is not None:
        total = progress.max_steps
        parts.append(f"step {progress.step}" + (f"/{total}" if total else ""))
    elapsed = elapsed_s(snap)
    if elapsed is not None:
        parts.append(f"elapsed {fmt_duration(elapsed)}")
    if progress.eta_s is not None and snap.state is State.RUNNING:
        parts.append(f"ETA {fmt_duration(progress.eta_s)}")
    latest = snap.latest
    for group in (TRAIN_LOSS, EVAL_LOSS):
        found = _first(latest, group)
        if found:
            parts.append(f"{found[0]} {fmt_number(found[1])}")
    if parts:
        lines.append("  " + " · ".join(parts))
    gpu = gpu_line(latest)
    if gpu:
        lines.append("  " + gpu)
    if snap.cost is not None and snap.cost.usd is not None:
        lines.append(f"  cost {fmt_usd(snap.cost.usd)} so far")
    err = _error_text(snap)
    if err:
        lines.append(f"  error: {err}")
    if snap.output_notebook and snap.state not in _NO_OUTPUT_YET:
        lines.append(f"  output: {snap.output_notebook}")
    return "\n".join(lines)


def job_details_text(snap: JobSnapshot) -> str:
    """``nblaunch show``: the job's fields, cost, error, then its events."""
    fields = {
        "id": snap.id,
        "name": snap.name,
        "queue": snap.queue,
        "state": snap.state.value,
        "priority": snap.priority_name,
        "gpus": snap.gpus,
        "attempt": snap.attempt,
        "run_dir": snap.run_dir,
        "output_notebook": snap.output_notebook,
    }
    lines = [f"{key:16} {value}" for key, value in fields.items()]
    cost = snap.cost
    money = (
        "n/a (no price for this queue)" if cost is None or cost.usd is None else fmt_usd(cost.usd)
    )
    hours = "?" if cost is None else f"{cost.gpu_hours:.3f}"
    lines.append(f"{'cost':16} {money}, {hours} GPU-hours")
    if snap.error is not None:
        lines.append(f"{'error':16} {snap.error}")
    policy = snap.retry_policy
    lines.append(
        f"{'retry':16} on {', '.join(policy.retry_on) or 'nothing'}; "
        f"{snap.retries} retried, {snap.preemptions} preempted"
        + (f"; time limit {snap.timeout_s:g}s" if snap.timeout_s else "")
    )
    for a in snap.attempts:
        stamp = time.strftime("%H:%M:%S", time.localtime(a.started_at))
        how = a.state.value if a.failure_class is None else f"{a.state.value} ({a.failure_class})"
        why = f": {a.error}" if a.error is not None else ""
        engine = f" [{snap.runner} job {a.external_id}]" if a.external_id else ""
        lines.append(f"  attempt {a.n:<3} {stamp} {how}{engine}{why}")
    if snap.state is State.QUEUED and snap.not_before > snap.taken_at:
        stamp = time.strftime("%H:%M:%S", time.localtime(snap.not_before))
        lines.append(f"  attempt {snap.attempt + 1:<3} not before {stamp}")
    for event in snap.events:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        lines.append(f"  {stamp} {event.from_state or '-':>9} -> {event.to_state:9} {event.reason}")
    return "\n".join(lines)


# -- queue --------------------------------------------------------------------

QUEUE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "76px"),
    ("name", "minmax(90px,1.6fr)"),
    ("state", "92px"),
    ("priority", "64px"),
    ("GPUs", "44px"),
    ("place", "48px"),
    ("started", "96px"),
    ("runtime", "76px"),
    ("cost", "68px"),
)
_GRID = (
    "display:grid;grid-template-columns:"
    + " ".join(w for _, w in QUEUE_COLUMNS)
    + f";gap:6px;align-items:center;{FONT}"
)


def _runtime(snap: JobSnapshot, now: float | None) -> float | None:
    if snap.started_at is None:
        return None
    end = snap.finished_at or now or snap.taken_at
    return max(0.0, end - snap.started_at)


def _queue_cells(snap: JobSnapshot, now: float | None) -> list[str]:
    runtime = _runtime(snap, now)
    cost = snap.cost.usd if snap.cost else None
    return [
        f"<code>{escape(snap.id)}</code>",
        '<span style="overflow:hidden;text-overflow:ellipsis;white-space:nowrap">'
        f"{escape(snap.name)}</span>",
        state_badge(snap.state.value),
        escape(snap.priority_name),
        str(snap.gpus),
        escape(snap.place),
        fmt_clock(snap.started_at, now),
        fmt_duration(runtime) if runtime is not None else "",
        fmt_usd(cost) if cost is not None and snap.started_at is not None else "",
    ]


def queue_row_html(snap: JobSnapshot, now: float | None = None) -> str:
    """One job of the queue as a grid row (the widget puts its cancel button beside it)."""
    cells = "".join(f"<div>{c}</div>" for c in _queue_cells(snap, now))
    return (
        f'<div class="nbl-queue-row" data-job="{escape(snap.id)}" '
        f'data-state="{escape(snap.state.value)}" style="{_GRID}">{cells}</div>'
    )


def queue_header_html(queue: QueueSnapshot, action_width: int = 0) -> str:
    """Queue name, GPU slots in use, counts per state, and the column titles.

    ``action_width`` leaves room on the right for the widget's per-row buttons.
    """
    slots = queue.gpu_slots
    used = queue.gpus_used
    if slots:
        pct = min(100.0, 100.0 * used / slots)
        gpu = (
            f'<span class="nbl-slots">GPUs <b>{used}/{slots}</b> in use</span>'
            '<span style="display:inline-block;width:90px;height:7px;border-radius:3px;'
            f'background:var(--jp-layout-color3,#ddd)"><span style="display:block;width:{pct:.0f}%;'
            'height:7px;border-radius:3px;background:#1f6feb"></span></span>'
        )
    else:
        gpu = f'<span class="nbl-slots">no GPUs{f" ({used} requested)" if used else ""}</span>'
    order = {s.value: n for n, s in enumerate(_COUNT_ORDER)}
    counts = sorted(queue.counts.items(), key=lambda kv: order.get(kv[0], len(order)))
    count_text = " · ".join(f"{n} {s}" for s, n in counts if n)
    shown, total = len(queue.jobs), queue.total
    more = f" (newest {shown} of {total} shown)" if total and shown < total else ""
    head = "".join(f"<div><b>{escape(c)}</b></div>" for c, _ in QUEUE_COLUMNS)
    return (
        f'<div class="nbl-queue-head" style="{FONT}">'
        '<div style="display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin-bottom:4px">'
        f'<b style="font-size:14px">queue {escape(queue.name)}</b>'
        f'<span style="{MUTED}">{escape(queue.runner)}</span>{gpu}'
        f'<span style="{MUTED}">{escape(count_text)}{escape(more)}</span></div>'
        f'<div style="{_GRID};border-bottom:1px solid var(--jp-border-color2,#ddd);'
        f'margin-right:{action_width}px">{head}</div></div>'
    )


def queue_empty_html(queue: QueueSnapshot) -> str:
    which = queue.filter
    what = "no jobs" if which == "all" else f"no {which} jobs"
    return f'<div class="nbl-queue-empty" style="{MUTED};{FONT};padding:4px 0">{escape(what)}</div>'


def queue_table_html(queue: QueueSnapshot) -> str:
    """The whole queue as static HTML (header, then one row per job)."""
    now = queue.taken_at
    body = "".join(queue_row_html(r, now) for r in queue.jobs)
    if not queue.jobs:
        body = queue_empty_html(queue)
    name = escape(queue.name)
    return f'<div class="nbl-queue" data-queue="{name}">{queue_header_html(queue)}{body}</div>'


def queue_text(queue: QueueSnapshot) -> str:
    head = f"queue {queue.name} ({queue.runner})"
    if queue.gpu_slots:
        head += f", GPUs {queue.gpus_used}/{queue.gpu_slots} in use"
    return head + "\n" + jobs_table(queue.jobs, queue.taken_at)


#: the job table's columns, shared by ``nblaunch jobs``, ``%launch_jobs`` and queue text
_TABLE = ("id", "name", "queue", "state", "priority", "gpus", "attempt", "place", "submitted")


def jobs_table(snaps: Sequence[JobSnapshot], now: float | None = None) -> str:
    """Jobs as a fixed-width table, in the order given; ``no jobs`` when there are none."""
    now = time.time() if now is None else now
    if not snaps:
        return "no jobs"
    table = [_TABLE]
    for s in snaps:
        table.append(
            (
                s.id,
                s.name,
                s.queue,
                s.state.value,
                s.priority_name,
                str(s.gpus),
                str(s.attempt),
                s.place,
                _ago(now - s.submitted_at),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(_TABLE))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _ago(seconds: float) -> str:
    if seconds < 60:
        return f"{max(0, int(seconds))}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return f"{int(seconds // 86400)}d ago"


def manifests_yaml(documents: list[dict[str, Any]]) -> str:
    """What a dry run would create, as YAML documents; a ConfigMap's binary data (the
    bundle's tar.gz in base64) is shown by its size only."""
    import yaml

    shown = []
    for doc in documents:
        binary = doc.get("binaryData")
        if binary:
            sizes = {k: f"<{len(v)} bytes of base64, elided>" for k, v in binary.items()}
            doc = {**doc, "binaryData": sizes}
        shown.append(doc)
    return yaml.safe_dump_all(shown, sort_keys=False, width=100)
