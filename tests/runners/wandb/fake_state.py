"""The in-memory model behind the fake W&B server: runs, artifacts, run queues, storage.

Everything here is plain data guarded by one lock (``State.lock``), which the
HTTP handler threads and the test helpers both take before touching it.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_NUMBERS = itertools.count(1)


def md5_storage_key(md5_b64: str) -> str:
    """Artifact file bytes are stored by content: ``files/<md5 hex>``."""
    return "files/" + base64.b64decode(md5_b64).hex()


def global_id(kind: str, number: int) -> str:
    """A GraphQL node id the way W&B spells them: base64 of ``Kind:number``."""
    return base64.b64encode(f"{kind}:{number}".encode()).decode()


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


@dataclass
class Run:
    entity: str
    project: str
    name: str
    id: str
    display_name: str
    state: str = "running"
    config: dict[str, Any] = field(default_factory=dict)  # wandb's {"k": {"value": v}}
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # in arrival order
    history_lines: dict[int, str] = field(default_factory=dict)  # file_stream offset -> line
    events: list[dict[str, Any]] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    job_type: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    sweep: str | None = None
    exitcode: int | None = None
    created_at: str = field(default_factory=now_iso)
    heartbeat_at: str = field(default_factory=now_iso)

    def plain_config(self) -> dict[str, Any]:
        """The config as the user wrote it: wandb wraps each value as {"value": v}."""
        return {
            key: value["value"] if isinstance(value, dict) and "value" in value else value
            for key, value in self.config.items()
            if key != "_wandb"
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "project": self.project,
            "name": self.name,
            "id": self.id,
            "display_name": self.display_name,
            "state": self.state,
            "config": self.plain_config(),
            "raw_config": dict(self.config),
            "summary": dict(self.summary),
            "history": [dict(row) for row in self.history],
            "log_lines": list(self.log_lines),
            "files": dict(self.files),
            "job_type": self.job_type,
            "group": self.group,
            "tags": list(self.tags),
            "exitcode": self.exitcode,
        }


@dataclass
class ArtifactFile:
    name: str
    md5: str  # base64, as the manifest spells it
    storage_key: str


@dataclass
class Artifact:
    number: int
    id: str
    entity: str
    project: str
    collection: str
    type: str
    digest: str
    state: str = "PENDING"
    version_index: int = 0
    aliases: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    client_id: str | None = None
    sequence_client_id: str | None = None
    run: tuple[str, str, str] | None = None  # the run that logged it
    manifest_id: str | None = None
    manifest_key: str | None = None
    files: dict[str, ArtifactFile] = field(default_factory=dict)  # by name
    pending_aliases: list[str] = field(default_factory=list)  # applied on commit
    created_at: str = field(default_factory=now_iso)

    @property
    def version(self) -> str:
        return f"v{self.version_index}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entity": self.entity,
            "project": self.project,
            "name": f"{self.collection}:{self.version}",
            "collection": self.collection,
            "type": self.type,
            "digest": self.digest,
            "state": self.state,
            "version": self.version,
            "aliases": list(self.aliases),
            "metadata": dict(self.metadata),
            "run": self.run,
        }


@dataclass
class QueueItem:
    number: int
    id: str
    queue: str
    run_spec: dict[str, Any]
    priority: int | None
    template_variables: dict[str, Any] | None
    state: str = "PENDING"
    associated_run_id: str | None = None
    error: str | None = None
    created_at: str = field(default_factory=now_iso)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "run_spec": self.run_spec,
            "priority": self.priority,
            "template_variables": self.template_variables,
            "associated_run_id": self.associated_run_id,
            "error": self.error,
        }


@dataclass
class Queue:
    number: int
    id: str
    entity: str
    project: str
    name: str
    items: list[QueueItem] = field(default_factory=list)


class State:
    """All of the fake server's data. Callers hold ``lock`` around any use."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[tuple[str, str, str], Run] = {}
        self.artifacts: dict[str, Artifact] = {}  # by id
        self.storage: dict[str, bytes] = {}  # storage key -> bytes
        self.queues: dict[tuple[str, str], Queue] = {}  # (entity, name)
        self.stop_requested: set[str] = set()
        self.operations: list[tuple[str, dict[str, Any]]] = []
        self.unknown: list[str] = []  # operations (and HTTP requests) not served
        self.errors: list[str] = []  # known operations whose resolver failed
        self.documents: dict[str, str] = {}  # the last query text seen per operation

    def next_number(self) -> int:
        # One count for every server of the process: wandb caches artifacts by id, and a
        # later test's server must not hand out an id an earlier one gave.
        return next(_NUMBERS)

    # -- runs ---------------------------------------------------------------

    def find_run(self, entity: str | None, project: str | None, name: str) -> Run | None:
        if entity is None or project is None:
            return next((r for (_, _, n), r in self.runs.items() if n == name), None)
        return self.runs.get((entity, project, name))

    def run_by_id(self, run_id: str) -> Run | None:
        return next((r for r in self.runs.values() if r.id == run_id), None)

    def ensure_run(self, entity: str, project: str, name: str) -> Run:
        run = self.runs.get((entity, project, name))
        if run is None:
            run = Run(entity, project, name, global_id("Run", self.next_number()), name)
            self.runs[(entity, project, name)] = run
        return run

    # -- file_stream --------------------------------------------------------

    def apply_file_stream(self, run: Run, body: dict[str, Any]) -> None:
        """One file_stream request: ``files`` chunks at line offsets, then flags.

        History rows are kept in arrival order: a line is new unless the very
        same line already arrived at that offset (a retried request), so a run
        synced twice from offset 0 (``wandb sync`` of two offline attempts with
        one run id) keeps both. The other files are overwritten at their offsets.
        """
        for name, chunk in (body.get("files") or {}).items():
            offset = int(chunk.get("offset", 0))
            lines = [str(line) for line in chunk.get("content", [])]
            if name == "wandb-history.jsonl":
                for number, line in enumerate(lines, offset):
                    if run.history_lines.get(number) != line:
                        run.history_lines[number] = line
                        run.history.append(json.loads(line))
            elif name == "wandb-events.jsonl":
                _write_lines(run.events, offset, [json.loads(line) for line in lines])
            elif name == "wandb-summary.json":
                if lines:
                    run.summary = json.loads(lines[-1])
            elif name == "output.log":
                _write_lines(run.log_lines, offset, lines)
            else:
                run.files[name] = "\n".join(lines).encode()
        run.heartbeat_at = now_iso()
        if body.get("preempting"):
            run.state = "preempting"
        if body.get("complete"):
            run.exitcode = int(body.get("exitcode") or 0)
            run.state = "finished" if run.exitcode == 0 else "failed"
        elif body.get("files") and run.state != "preempting":
            run.state = "running"

    # -- storage ------------------------------------------------------------

    def put_storage(self, key: str, data: bytes) -> None:
        """Bytes PUT to a ``/storage/<key>`` URL; run files also land on their run."""
        self.storage[key] = data
        if key.startswith("runs/"):
            _, entity, project, run_name, name = key.split("/", 4)
            run = self.runs.get((entity, project, run_name))
            if run is not None:
                run.files[name] = data

    def get_download(self, path: str) -> bytes | None:
        """A GET: ``/storage/<key>``, or the download paths wandb builds itself
        (``/artifacts/<entity>/<md5 hex>``, ``/artifactsV2/.../<md5 hex>/<name>``)."""
        parts = path.strip("/").split("/")
        if parts[0] == "storage":
            return self.storage.get("/".join(parts[1:]))
        if parts[0] == "artifacts" and len(parts) == 3:
            return self.storage.get(f"files/{parts[2]}")
        if parts[0] == "artifactsV2" and len(parts) >= 3:
            return self.storage.get(f"files/{parts[-2]}")
        return None

    # -- artifacts ----------------------------------------------------------

    def collection_versions(self, entity: str, project: str, collection: str) -> list[Artifact]:
        return sorted(
            (
                a
                for a in self.artifacts.values()
                if (a.entity, a.project, a.collection) == (entity, project, collection)
            ),
            key=lambda a: a.version_index,
        )

    def find_artifact(
        self, entity: str, project: str, collection: str, version_or_alias: str
    ) -> Artifact | None:
        for artifact in self.collection_versions(entity, project, collection):
            if version_or_alias in (artifact.version, *artifact.aliases):
                return artifact
            if artifact.digest == version_or_alias:
                return artifact
        return None

    def artifact_files(self, artifact: Artifact) -> dict[str, bytes]:
        """An artifact's files (path -> bytes), as its uploaded manifest lists them."""
        manifest = json.loads(self.storage.get(artifact.manifest_key or "", b"{}"))
        return {
            path: self.storage.get(md5_storage_key(entry["digest"]), b"")
            for path, entry in manifest.get("contents", {}).items()
        }

    def set_alias(self, artifact: Artifact, alias: str) -> None:
        """An alias names one version of a collection: move it to ``artifact``."""
        for other in self.collection_versions(
            artifact.entity, artifact.project, artifact.collection
        ):
            if alias in other.aliases and other is not artifact:
                other.aliases.remove(alias)
        if alias not in artifact.aliases:
            artifact.aliases.append(alias)

    # -- queues -------------------------------------------------------------

    def ensure_queue(self, entity: str, name: str, project: str = "model-registry") -> Queue:
        queue = self.queues.get((entity, name))
        if queue is None:
            number = self.next_number()
            queue = Queue(number, global_id("RunQueue", number), entity, project, name)
            self.queues[(entity, name)] = queue
        return queue

    def queue_by_id(self, queue_id: str) -> Queue | None:
        return next((q for q in self.queues.values() if q.id == queue_id), None)

    def find_item(self, item_id: str) -> QueueItem | None:
        items = (item for queue in self.queues.values() for item in queue.items)
        return next((item for item in items if item.id == item_id), None)

    def push_item(
        self,
        queue: Queue,
        run_spec: dict[str, Any],
        priority: int | None,
        template_variables: dict[str, Any] | None,
    ) -> QueueItem:
        number = self.next_number()
        item = QueueItem(
            number,
            global_id("RunQueueItem", number),
            queue.name,
            run_spec,
            priority,
            template_variables,
        )
        queue.items.append(item)
        return item


def _write_lines(target: list[Any], offset: int, lines: list[Any]) -> None:
    """Write ``lines`` at line ``offset``, as file_stream's chunks mean: overwrite, then extend."""
    del target[offset:]
    target.extend(lines)
