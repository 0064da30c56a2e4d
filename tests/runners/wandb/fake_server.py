"""A fake W&B backend served over real HTTP on 127.0.0.1, for the W&B runner's tests.

This fake sits at the HTTP process boundary (W&B's server cannot be reached from
this machine); no wandb function may be patched anywhere. The real installed
wandb, whose network calls go through its Go ``wandb-core`` service process, is
pointed at it with ``WANDB_BASE_URL=http://127.0.0.1:PORT`` and any 40-character
``WANDB_API_KEY``, and does real work against it: GraphQL at ``/graphql``,
``file_stream`` at ``/files/<entity>/<project>/<run>/file_stream``, and file
bytes at the ``/storage/<key>`` URLs the GraphQL answers hand out (and at the
``/artifacts`` and ``/artifactsV2`` download paths the Python side builds).

GraphQL operations are dispatched by name (see ``fake_graphql``); one that is
not known is answered with a GraphQL error and recorded in ``FakeWandb.unknown``
(as is an HTTP request to a path it does not serve, answered 404), and one whose
resolver fails on what it was sent is answered with an error and recorded in
``FakeWandb.errors``.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from . import fake_graphql
from .fake_state import QueueItem, State

API_KEY = "fake" + "0" * 36

_FILE_STREAM = re.compile(r"^/files/([^/]+)/([^/]+)/([^/]+)/file_stream$")


class FakeWandb:
    """The fake backend: start it, point wandb at ``url``, inspect what arrived."""

    def __init__(self) -> None:
        self.state = State()
        self.api_key = API_KEY
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url = ""

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> FakeWandb:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        httpd.daemon_threads = True
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        self._url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="fake-wandb", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeWandb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._url, "the fake W&B server is not started"
        return self._url

    # -- what arrived ---------------------------------------------------------

    @property
    def operations(self) -> list[tuple[str, dict[str, Any]]]:
        with self.state.lock:
            return list(self.state.operations)

    @property
    def unknown(self) -> list[str]:
        with self.state.lock:
            return list(self.state.unknown)

    @property
    def errors(self) -> list[str]:
        """Known operations whose resolver raised (answered as GraphQL errors)."""
        with self.state.lock:
            return list(self.state.errors)

    @property
    def stop_requested(self) -> set[str]:
        with self.state.lock:
            return set(self.state.stop_requested)

    @property
    def runs(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        with self.state.lock:
            return {key: run.as_dict() for key, run in self.state.runs.items()}

    def run(self, entity: str, project: str, run_id: str) -> dict[str, Any]:
        with self.state.lock:
            run = self.state.find_run(entity, project, run_id)
            if run is None:
                raise KeyError(f"no run {entity}/{project}/{run_id}")
            return run.as_dict()

    def history(self, entity: str, project: str, run_id: str) -> list[dict[str, Any]]:
        return self.run(entity, project, run_id)["history"]

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [a.as_dict() for a in self.state.artifacts.values()]

    def artifact(self, entity: str, project: str, name: str) -> dict[str, Any]:
        """``name`` is ``collection:version-or-alias``; adds ``files`` (path -> bytes)."""
        collection, _, version = name.partition(":")
        with self.state.lock:
            found = self.state.find_artifact(entity, project, collection, version or "latest")
            if found is None:
                raise KeyError(f"no artifact {entity}/{project}/{name}")
            return {**found.as_dict(), "files": self.state.artifact_files(found)}

    # -- playing the Launch agent and the remote job --------------------------

    def add_queue(self, entity: str, name: str) -> str:
        with self.state.lock:
            return self.state.ensure_queue(entity, name).id

    def queue_items(self, entity: str, queue: str) -> list[dict[str, Any]]:
        with self.state.lock:
            found = self.state.queues.get((entity, queue))
            return [item.as_dict() for item in found.items] if found else []

    def claim(self, item_id: str, run_id: str) -> None:
        """What the agent's ack does: the item is ``CLAIMED`` by run ``run_id``."""
        with self.state.lock:
            item = self._item(item_id)
            item.state, item.associated_run_id = "CLAIMED", run_id

    def fail_item(self, item_id: str, message: str = "failed") -> None:
        with self.state.lock:
            item = self._item(item_id)
            item.state, item.error = "FAILED", message

    def _item(self, item_id: str) -> QueueItem:
        item = self.state.find_item(item_id)
        if item is None:
            raise KeyError(f"no run queue item {item_id}")
        return item

    def set_run_state(self, entity: str, project: str, run_id: str, state: str) -> None:
        with self.state.lock:
            self.state.ensure_run(entity, project, run_id).state = state

    def log_rows(self, entity: str, project: str, run_id: str, rows: list[dict[str, Any]]) -> None:
        """Append history rows as if the run had streamed them (``_step`` filled in)."""
        with self.state.lock:
            run = self.state.ensure_run(entity, project, run_id)
            for row in rows:
                step = run.history[-1].get("_step", -1) + 1 if run.history else 0
                run.history.append({"_step": step, **row})
                run.summary.update(run.history[-1])


def _handler_for(server: FakeWandb) -> type[BaseHTTPRequestHandler]:
    state = server.state

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read server.operations instead

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while size := int(self.rfile.readline().split(b";")[0], 16):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
            if self.headers.get("Content-Encoding") == "gzip":
                data = gzip.decompress(data)
            return data

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, value: Any, status: int = 200) -> None:
            self._reply(status, json.dumps(value).encode())

        def _not_served(self, path: str) -> None:
            with state.lock:
                state.unknown.append(f"{self.command} {path}")
            self._json({"error": f"fake W&B server: no {self.command} {path}"}, 404)

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            body = self._body()
            if path == "/graphql":
                self._json(_graphql(server, json.loads(body)))
            elif match := _FILE_STREAM.match(path):
                entity, project, name = (unquote(part) for part in match.groups())
                with state.lock:
                    run = state.ensure_run(entity, project, name)
                    state.apply_file_stream(run, json.loads(body or b"{}"))
                self._json({})
            elif path.startswith("/sdk/otel/"):
                self._reply(200, b"", "application/x-protobuf")  # wandb's own telemetry
            else:
                self._not_served(path)

        def do_PUT(self) -> None:
            path = urlsplit(self.path).path
            body = self._body()
            if not path.startswith("/storage/"):
                self._not_served(path)
                return
            with state.lock:
                state.put_storage(unquote(path.removeprefix("/storage/")), body)
            self._reply(200, b"", "text/plain")

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            with state.lock:
                data = state.get_download(path)
            if data is None:
                self._not_served(path)
            else:
                self._reply(200, data, "application/octet-stream")

    return Handler


def _graphql(server: FakeWandb, body: dict[str, Any]) -> dict[str, Any]:
    name = fake_graphql.operation_name(body)
    variables = body.get("variables") or {}
    state = server.state
    with state.lock:
        state.operations.append((name, variables))
        state.documents[name] = body.get("query") or ""
        resolve = fake_graphql.RESOLVERS.get(name)
        if resolve is None:
            state.unknown.append(name)
            return {"errors": [{"message": f"fake W&B server: unknown operation {name}"}]}
        try:
            data = resolve(fake_graphql.Context(state, server.url), variables)
        except fake_graphql.GraphQLError as error:
            return {"data": None, "errors": [{"message": str(error)}]}
        except Exception as error:  # a document this fake does not answer right: visible
            state.errors.append(f"{name}: {error!r}")
            return {"data": None, "errors": [{"message": f"fake W&B server: {name}: {error!r}"}]}
    return {"data": data}
