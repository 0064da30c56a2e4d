"""Pure rendering of a cost estimate (``Estimate.to_dict()``) → HTML or text, for the
estimate widget and its static fallback."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from nblaunch.widgets.render import FONT, MUTED, fmt_duration, fmt_usd

__all__ = ["estimate_error_html", "estimate_html", "estimate_text"]


def _spot_or(est: Mapping[str, Any], key: str, spot: bool) -> Any:
    """``est["spot_<key>"]`` when ``spot`` and known, else the on-demand ``est[key]``."""
    value = est.get(f"spot_{key}") if spot else None
    return value if value is not None else est.get(key)


def estimate_html(
    est: Mapping[str, Any], *, spot: bool = False, gpus: int | None = None, gpu: str | None = None
) -> str:
    """Hours and dollars (spot or on-demand first), MFU, memory verdict and suggestion."""
    hours, cost = _spot_or(est, "hours", spot), _spot_or(est, "cost_usd", spot)
    other_cost = est.get("cost_usd") if spot else est.get("spot_cost_usd")
    kind = "spot" if spot else "on-demand"
    on = f" on {gpus}× {escape(gpu)}" if gpus and gpu else (f" on {gpus} GPU(s)" if gpus else "")
    lines = [
        '<div><span class="nbl-dollars" style="font-size:22px;font-weight:700">'
        f"{fmt_usd(cost)}</span>"
        f' <span style="{MUTED}">{kind}</span> · <b class="nbl-hours">'
        f"{fmt_duration(float(hours) * 3600) if hours is not None else '—'}</b>{on}</div>"
    ]
    if other_cost is not None:
        lines.append(
            f'<div style="{MUTED}">{"on-demand" if spot else "spot"}: {fmt_usd(other_cost)}</div>'
        )
    if est.get("mfu") is not None:
        src = est.get("mfu_source")
        lines.append(
            f'<div style="{MUTED}">at {float(est["mfu"]):.0%} MFU'
            + (f" ({escape(str(src))})" if src else "")
            + "</div>"
        )
    mem = est.get("memory_per_gpu_gb")
    fits = est.get("fits")
    if mem is not None or fits is not None:
        verdict = "fits" if fits else "does not fit"
        color = "#1a7f37" if fits else "#cf222e"
        mem_text = f"{float(mem):.1f} GB per GPU — " if mem is not None else ""
        lines.append(
            f'<div class="nbl-memory" data-fits="{str(bool(fits)).lower()}">memory {mem_text}'
            f'<b style="color:{color}">{verdict}</b></div>'
        )
    if est.get("suggestion"):
        lines.append(f'<div class="nbl-suggestion">{escape(str(est["suggestion"]))}</div>')
    for note in est.get("notes") or ():
        lines.append(
            f'<div class="nbl-note" style="{MUTED};font-size:12px">{escape(str(note))}</div>'
        )
    return f'<div class="nbl-estimate" style="{FONT}">{"".join(lines)}</div>'


def estimate_error_html(message: str) -> str:
    return (
        f'<div class="nbl-estimate nbl-estimate-error" style="{FONT};color:#cf222e">'
        f"{escape(message)}</div>"
    )


def estimate_text(est: Mapping[str, Any], *, spot: bool = False) -> str:
    hours, cost = _spot_or(est, "hours", spot), _spot_or(est, "cost_usd", spot)
    text = f"estimate: {fmt_usd(cost)} ({'spot' if spot else 'on-demand'}), " + (
        f"{fmt_duration(float(hours) * 3600)}" if hours is not None else "—"
    )
    if est.get("mfu") is not None:
        text += f" at {float(est['mfu']):.0%} MFU"
    mem = est.get("memory_per_gpu_gb")
    if mem is not None:
        text += f"; {float(mem):.1f} GB per GPU, {'fits' if est.get('fits') else 'does not fit'}"
    if est.get("suggestion"):
        text += f"\n  {est['suggestion']}"
    return text
