"""The end of an attempt's output, for the card's log panel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def log_tail(files: Sequence[Path], max_bytes: int = 12_000, max_lines: int = 60) -> str:
    """The last lines of ``files`` (stdout first), without reading whole files."""
    parts: list[str] = []
    for path in files:
        if not path.exists():
            continue
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode(errors="replace")
        if size > max_bytes:
            text = text.split("\n", 1)[-1]
        if text.strip():
            parts.append(text if not parts else f"--- {path.name} ---\n{text}")
    lines = "".join(parts).splitlines()
    return "\n".join(lines[-max_lines:])
