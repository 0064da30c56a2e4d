"""The Kubernetes API as the runner uses it: the official client, a watched cache of
the queue's Jobs and pods, and a follower of one pod's log.

State comes from watches, not from polling: one watch on the queue's Jobs and
one on its pods (by label) keep an in-memory copy that ``poll`` reads. A watch
that drops is resumed from the last ``resourceVersion`` it saw; one the server
no longer remembers (410 Gone) is replaced by a fresh list.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from nblaunch.errors import EngineError, MissingDependencyError
from nblaunch.runners.kubernetes.options import KubernetesOptions
from nblaunch.runners.kubernetes.state import epoch_seconds

log = logging.getLogger(__name__)

#: a watch with no event for this long is reconnected (a silent drop reads the same)
WATCH_IDLE_S = 60.0
#: a log follow with no line for this long is resumed (a quiet job costs one request)
LOG_IDLE_S = 300.0
#: the server ends each watch after about this long; it is then resumed
WATCH_SPAN_S = 300
#: pause before reconnecting a watch or a log that failed
RECONNECT_S = 0.5
#: reads of an ended pod's log that may fail before it is given up (its result is also
#: in the pod's termination message)
LOG_ATTEMPTS = 20
#: a resumed log starts this much earlier than its last line (the server's clock may differ)
RESUME_MARGIN_S = 60


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise MissingDependencyError(
            "the kubernetes runner needs the official client: pip install 'nblaunch[kubernetes]'"
        ) from None
    return kubernetes


def api_client(options: KubernetesOptions) -> Any:
    """An ``ApiClient`` for the queue's cluster: its kubeconfig and context, else the
    default kubeconfig, else the pod's service account (an agent running in-cluster)."""
    k8s = _kubernetes()
    config = k8s.config
    path = str(options.kubeconfig) if options.kubeconfig else None
    try:
        return config.new_client_from_config(config_file=path, context=options.context)
    except (config.ConfigException, OSError) as exc:
        if path is None and options.context is None:
            try:
                config.load_incluster_config()
                return k8s.client.ApiClient()
            except config.ConfigException:
                pass
        raise EngineError(
            f"queue {options.name!r} cannot reach Kubernetes: {exc}; set kubeconfig (and "
            f"context) in [queues.{options.name}] of queues.toml, or KUBECONFIG"
        ) from None


def api_error(exc: Exception, what: str) -> EngineError:
    """One line for a failed API call: the status and the server's own message."""
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if body:
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(body).get("message") or message
    code = f" ({status})" if status else ""
    return EngineError(f"Kubernetes refused to {what}{code}: {message}")


def _matches(obj: dict[str, Any], selector: dict[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


class WatchedObjects:
    """The queue's objects of one kind (Jobs or pods), kept current by a watch.

    Objects deleted since are kept (``deleted`` names them) until their Job is gone
    too, so a pod that vanished still tells how it ended.
    """

    def __init__(self, lister: Callable[..., Any], namespace: str, selector: str) -> None:
        self._lister = lister
        self._namespace = namespace
        self._selector = selector
        self._labels = dict(part.split("=", 1) for part in selector.split(","))
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.synced = threading.Event()
        self.resource_version: str | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="nblaunch-k8s-watch")

    def start(self) -> WatchedObjects:
        self._thread.start()
        return self

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(name)

    def gone(self, obj: dict[str, Any]) -> bool:
        """Whether ``obj`` has been deleted since it was seen."""
        return obj["metadata"]["name"] in self.deleted

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._objects.values())

    def forget(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Drop deleted objects ``keep`` no longer wants."""
        with self._lock:
            for name in [n for n in self.deleted if not keep(self._objects[n])]:
                self.deleted.discard(name)
                del self._objects[name]

    def _run(self) -> None:
        k8s = _kubernetes()
        while True:
            try:
                if self.resource_version is None:
                    self._list()
                self._watch(k8s)
            except k8s.client.ApiException as exc:
                if exc.status == 410:  # too old to resume: start again from a list
                    self.resource_version = None
                    continue
                self._failed(exc)
            except Exception as exc:  # a dropped connection: resume where it stopped
                self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        log.info("watch of %s dropped (%s); resuming", self._selector, self.error)
        time.sleep(RECONNECT_S)

    def _list(self) -> None:
        resp = self._lister(
            self._namespace,
            label_selector=self._selector,
            _preload_content=False,
            _request_timeout=(10, 60),
        )
        data = json.loads(resp.data)
        with self._lock:
            seen = {}
            for obj in data.get("items") or []:
                if _matches(obj, self._labels):
                    seen[obj["metadata"]["name"]] = obj
            gone = set(self._objects) - set(seen)
            self._objects.update(seen)
            self.deleted = (self.deleted | gone) - set(seen)
        self.resource_version = (data.get("metadata") or {}).get("resourceVersion")
        self.error = None
        self.synced.set()

    def _watch(self, k8s: Any) -> None:
        # Read the stream's lines here: the client's Watch drops an ERROR event it was
        # asked not to deserialize (a 410 would then repeat forever).
        resp = self._lister(
            self._namespace,
            label_selector=self._selector,
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SPAN_S,
            _preload_content=False,
            _request_timeout=(10, WATCH_IDLE_S),
        )
        try:
            for line in k8s.watch.watch.iter_resp_lines(resp):
                self._take(json.loads(line), k8s)
        finally:
            resp.close()
            resp.release_conn()

    def _take(self, event: dict[str, Any], k8s: Any) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            raise k8s.client.ApiException(status=obj.get("code"), reason=obj.get("message"))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK" or not _matches(obj, self._labels):
            return
        name = obj["metadata"]["name"]
        with self._lock:
            self._objects[name] = obj
            if kind == "DELETED":
                self.deleted.add(name)
            else:
                self.deleted.discard(name)
        self.error = None

    def put(self, obj: dict[str, Any]) -> None:
        """An object this process just created, until its watch event arrives."""
        with self._lock:
            self._objects.setdefault(obj["metadata"]["name"], obj)


class LogFollower:
    """Follows one pod's log into ``sink(timestamp, line)`` until the pod has ended.

    Lines carry the server's timestamps; after a dropped stream (or from
    ``start_after``) the follow resumes a little before the last line it had and
    skips what it already had.
    """

    def __init__(
        self,
        core: Any,
        namespace: str,
        pod: str,
        container: str,
        sink: Callable[[str, str], None],
        ended: Callable[[], bool],
        start_after: str | None = None,
    ) -> None:
        self._core = core
        self._namespace = namespace
        self._pod = pod
        self._container = container
        self._sink = sink
        self._ended = ended
        self._last = start_after
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"nblaunch-log-{pod}")

    def start(self) -> LogFollower:
        self._thread.start()
        return self

    def _run(self) -> None:
        k8s = _kubernetes()
        failures = 0
        try:
            while failures < LOG_ATTEMPTS:
                ended_before = self._ended()
                try:
                    for line in self._lines(k8s):
                        self._take(line)
                except k8s.client.ApiException as exc:
                    if exc.status == 404:  # the pod is gone, and its log with it
                        return
                    failures += ended_before
                    log.info("log of %s: %s", self._pod, exc)
                except Exception as exc:  # dropped: resume from the last line's time
                    failures += ended_before
                    log.info("log of %s dropped (%s); resuming", self._pod, exc)
                else:
                    if ended_before:
                        return  # that was the whole log of an ended pod
                time.sleep(RECONNECT_S)
        finally:
            self.done.set()

    def _lines(self, k8s: Any) -> Iterator[str]:
        kwargs: dict[str, Any] = {"container": self._container, "timestamps": True}
        if self._last is not None:
            # The client has no sinceTime: ask for a little more (clocks differ) and skip
            # what was seen by its timestamp.
            behind = math.ceil(time.time() - epoch_seconds(self._last))
            kwargs["since_seconds"] = max(1, behind) + RESUME_MARGIN_S
        return iter(
            k8s.watch.Watch().stream(
                self._core.read_namespaced_pod_log,
                self._pod,
                self._namespace,
                _request_timeout=(10, LOG_IDLE_S),
                **kwargs,
            )
        )

    def _take(self, line: str) -> None:
        stamp, _, text = line.partition(" ")
        if not stamp[:4].isdigit():  # no timestamp (an older server): take it as it is
            self._sink("", line)
            return
        if self._last is not None and _instant(stamp) <= _instant(self._last):
            return  # seen before the stream dropped
        self._last = stamp
        self._sink(stamp, text)


def _instant(stamp: str) -> str:
    """An RFC 3339 timestamp that sorts as text (the server trims trailing zeros)."""
    head, _, fraction = stamp.rstrip("Z").partition(".")
    return f"{head}.{fraction:0<9}"
