"""Records in the log stream: how an attempt's metrics, output notebook and result
reach an agent that cannot see the attempt's folder (a Kubernetes pod's).

With ``NBLAUNCH_LOG_RECORDS`` set, the runtime copies each line of
``metrics.jsonl`` to stdout as it is written, and at the end the output notebook
(gzip, base64, in chunks) and ``result.json``, each as one line starting with
``MARKER``. The runner follows the pod's log and :class:`RecordReader` writes
them back into the attempt's local folder, where the agent reads them as it
does for local attempts. The result also goes to the container's termination
message (``NBLAUNCH_TERMINATION_LOG``), which the API keeps even when the log
is gone.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import threading
from pathlib import Path

from nblaunch.runtime.contract import Result, RunDir, append_line, replace_private
from nblaunch.runtime.metrics import new_lines

MARKER = "@@nblaunch:"
#: base64 characters per output-notebook line (a log line stays far below 1 MiB)
CHUNK = 64 * 1024
#: Kubernetes keeps at most this many bytes of a termination message
TERMINATION_MESSAGE_BYTES = 4096
#: how often the metrics file is read for new lines
_TEE_INTERVAL_S = 0.5


def _emit(kind: str, payload: str) -> None:
    # One write per line: papermill's cell output on the same stdout never splits it.
    os.write(1, f"{MARKER}{kind} {payload}\n".encode())


class MetricsTee:
    """Copies the attempt's new metric lines to stdout while the notebook runs."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nblaunch-metrics-tee", daemon=True)

    def start(self) -> MetricsTee:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(_TEE_INTERVAL_S):
            self._copy()

    def _copy(self) -> None:
        lines, self._offset = new_lines(self.run.metrics, self._offset)
        for line in lines:
            _emit("metric", line.decode(errors="replace"))

    def finish(self, result: Result) -> None:
        """The last metric lines, then the output notebook and the result."""
        self._stop.set()
        self._thread.join()
        self._copy()
        if self.run.output.exists():
            data = base64.b64encode(gzip.compress(self.run.output.read_bytes(), mtime=0)).decode()
            for start in range(0, len(data), CHUNK):
                _emit("output", data[start : start + CHUNK])
            _emit("output-end", str(len(data)))
        _emit("result", json.dumps(result.to_dict(), separators=(",", ":")))


def write_termination_message(path: Path, result: Result) -> None:
    """The result, shortened to what Kubernetes keeps (the traceback goes first)."""
    data = result.to_dict()
    if data["error"]:
        data["error"] = {k: v for k, v in data["error"].items() if k != "traceback"}
    text = json.dumps(data, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_MESSAGE_BYTES and data["error"]:
        data["error"]["evalue"] = str(data["error"].get("evalue"))[:1000]
        text = json.dumps(data, separators=(",", ":"))
    path.write_text(text)


def result_from_message(message: str | None) -> Result | None:
    """The result a termination message holds, if it holds one."""
    if not message:
        return None
    try:
        return Result.from_dict(json.loads(message))
    except (ValueError, KeyError, TypeError):
        return None


class RecordReader:
    """Turns a followed log back into the attempt's files: plain lines are returned
    for the log, records are written into ``run``."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._output: list[str] = []
        self.result: Result | None = None

    def feed(self, line: str) -> str | None:
        """The plain text of ``line`` (None when it was only a record)."""
        at = line.find(MARKER)
        if at < 0:
            return line
        text, record = line[:at], line[at + len(MARKER) :]
        kind, _, payload = record.partition(" ")
        if kind == "metric":
            append_line(self.run.metrics, payload.strip())
        elif kind == "output":
            self._output.append(payload.strip())
        elif kind == "output-end":
            self._write_output(int(payload))
        elif kind == "result":
            self.result = result_from_message(payload)
            if self.result is not None:
                self.result.write(self.run.result)
        else:
            return line  # not one of ours after all
        return text or None

    def _write_output(self, size: int) -> None:
        data = "".join(self._output)
        self._output = []
        if len(data) != size:  # a chunk was lost (a log rotated away): keep nothing half
            return
        replace_private(self.run.output, gzip.decompress(base64.b64decode(data)))
