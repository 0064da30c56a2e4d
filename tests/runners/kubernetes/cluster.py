"""A small Kubernetes cluster for tests: kmock's API emulator served over real HTTP from a
background thread, with a Job controller and a one-node kubelet that run pods' commands as
local processes.

The code under test talks to it from any process through ``cluster.kubeconfig`` with the
official client; nothing in the client is patched. kmock stores objects and streams watch
events, but it has no controllers and keeps no API-server bookkeeping, so :class:`Emulator`
adds uid, creationTimestamp, resourceVersion (one cluster-wide counter) and generation;
watches that resume from a resourceVersion and end after ``timeoutSeconds``; equality-based
label and field selectors; and :class:`Cluster` serves pod logs and the Eviction API.

Known gaps, on purpose: no validation and almost no defaulting; PUT (replace) answers 404 and
creating a namespace answers 500 (kmock cannot parse ``/api/v1/namespaces``); patches merge
dicts but replace lists (no strategic merge by key); a deleted object is gone at once (no
graceful deletion; deletion always cascades, in the background); set-based selectors
(``a in (b)``) and watch bookmarks are not served; failed pods are replaced without backoff;
a pod deleted by someone else is replaced without counting as failed; one node, whose GPUs
(``nvidia.com/gpu`` limits) are the only resource scheduled.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import collections
import concurrent.futures
import contextlib
import copy
import dataclasses
import functools
import gzip
import importlib.resources
import json
import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar, cast

import aiohttp.web
import kmock
import urllib3
import yaml
from kubernetes import client, config

NS = "default"
LOCAL = "127.0.0.1"
INDEX = "batch.kubernetes.io/job-completion-index"
UNSCHEDULABLE = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
TERMINAL = ("Succeeded", "Failed")
T = TypeVar("T")
Obj = dict[str, Any]


class Emulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator, taught what a real API server adds to storage."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(RecordingBus)
        # = self.resources.load_bundled(), whose importlib.resources.read_binary warns
        bundled = importlib.resources.files("kmock._internal") / "resources.json.gz"
        self.resources.load_data(gzip.decompress(bundled.read_bytes()))
        self.version = 0  # the last resourceVersion handed out
        self.stored = 0  # a resourceVersion whose changes are all stored, for lists
        self.changes = asyncio.Lock()  # one change at a time: versions in order
        self.on_change: Callable[[], None] = lambda: None

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        changing = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
        if request.resource is None or request.action not in changing:
            return await super()._handle(request)
        async with self.changes:
            self.version += 1
            self._stamp(request, str(self.version))
            try:
                return await super()._handle(request)  # stores, publishes, responds
            finally:
                self.stored = self.version
                self.on_change()

    def _stamp(self, request: kmock.Request, version: str) -> None:
        """Set what the API server owns before kmock stores the change: the stored object,
        the response and the watch event then all carry it."""
        data, resource = request.data, request.resource
        assert resource is not None
        key = (resource, request.namespace, request.name or "")
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                suffix = random.choices("bcdfghjklmnpqrstvwxz2456789", k=5)  # as Kubernetes'
                meta["name"] = meta["generateName"] + "".join(suffix)
            if request.namespace:
                meta["namespace"] = request.namespace
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion=version)
            meta["generation"] = 1
            data.setdefault("apiVersion", api_version(resource))
            data.setdefault("kind", self.resources[resource].kind)
            if resource.plural == "pods":
                data.setdefault("status", {}).setdefault("phase", "Pending")
        elif key in self.objects and not self.objects[key].deleted:
            obj = self.objects[key]
            if request.action == kmock.action.DELETE:  # kmock publishes the stored object
                obj["metadata"] = {**obj.raw["metadata"], "resourceVersion": version}
            elif isinstance(data, dict):
                meta = data.setdefault("metadata", {})
                meta["resourceVersion"] = version
                if "spec" in data and request.subresource is None:
                    meta["generation"] = obj.raw["metadata"].get("generation", 0) + 1
            elif isinstance(data, list):  # a JSON patch
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        version = self.stored  # read first: a watch from it may repeat changes, never miss one
        listed = cast(Obj, await super()._serve_list(request))
        assert request.resource is not None
        return {
            "apiVersion": api_version(request.resource),
            "kind": f"{self.resources[request.resource].kind}List",
            "metadata": {"resourceVersion": str(version)},
            "items": [obj for obj in listed["items"] if selected(obj, request.params)],
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        """From ``resourceVersion``: the changes after it, else every object as ADDED; then
        the changes as they come, until ``timeoutSeconds``. Selectors apply throughout."""
        yield b""  # the headers, now
        assert request.resource is not None
        bus = cast(RecordingBus, self._buses[request.resource])
        since = int(request.params.get("resourceVersion") or 0)
        async with self._lock:  # kmock stores and publishes under it: no change falls between
            mark = await bus.mark()
            if since:
                events = [e for e in bus.history if version_of(e["object"]) > since]
            else:
                events = [
                    {"type": "ADDED", "object": obj.raw}
                    for (resource, _, _), obj in self.objects.items()
                    if resource == request.resource and not obj.deleted
                ]

        def wanted(event: Obj) -> bool:
            meta = event["object"]["metadata"]
            return (
                request.namespace in (None, meta.get("namespace"))
                and request.name in (None, meta.get("name"))
                and selected(event["object"], request.params)
            )

        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(request.params.get("timeoutSeconds") or 1800)
        stream = cast(AsyncGenerator[Obj, None], bus.stream(since=mark))
        try:
            for event in filter(wanted, events):
                yield event
            while (left := deadline - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(anext(stream), left)
                except asyncio.TimeoutError:
                    return
                if wanted(event):
                    yield event
        finally:
            await stream.aclose()
            await bus.unmark(mark)


class RecordingBus(kmock.Bus[Any]):
    """kmock's event bus, also keeping every event: a watch can then resume from a
    resourceVersion (kmock's own watch only streams what comes after it starts)."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[Obj] = []

    async def put(self, *items: Any) -> None:
        self.history.extend(items)
        await super().put(*items)


class Container:
    """A pod's container, run as a local process group. Its output is kept line by line
    with each line's arrival time, which the log endpoint serves as its timestamp."""

    def __init__(
        self,
        pod: Obj,
        run: tuple[list[str], dict[str, str], Path, Path],
        on_exit: Callable[[], None],
    ) -> None:
        argv, env, cwd, self.termination_log = run
        self.on_exit = on_exit
        self.name = pod["metadata"]["name"]
        self.spec = pod["spec"]["containers"][0]
        self.gpus = gpus(pod)
        self.grace_s = float(pod["spec"].get("terminationGracePeriodSeconds", 30))
        self.started = now()
        self.lines: list[tuple[int, bytes]] = []
        self.eof = False
        self.kill_at: float | None = None  # when SIGTERM's grace runs out
        self.swept = False  # killed its group once its main process ended: never signal again
        self.reported = False  # its end is in the pod's status
        self.evicted = False  # to delete once its Job has seen how it ended
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True, name=f"log-{self.name}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        log_file = self.termination_log.parent / "container.log"
        with self.proc.stdout as out, log_file.open("ab") as log:
            for line in iter(out.readline, b""):
                arrived = time.time_ns()
                line = line if line.endswith(b"\n") else line + b"\n"
                self.lines.append((arrived, line))
                log.write(stamp(arrived).encode() + b" " + line)
                log.flush()
        self.eof = True
        self.proc.wait()
        self.on_exit()

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        if not self.swept:  # a container ends with its main process, and so do the others
            self.signal(signal.SIGKILL)
            self.swept = True
        return False

    def signal(self, sig: int) -> None:
        if not self.swept:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def terminate(self, grace_s: float | None = None) -> None:
        """SIGTERM to the main process (as a container runtime does), SIGKILL to them all
        once the grace is over (see :meth:`tick`)."""
        if self.kill_at is None and self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.kill_at = time.monotonic() + (self.grace_s if grace_s is None else grace_s)

    def tick(self) -> None:
        if self.alive() and self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.signal(signal.SIGKILL)

    def close(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait()
        self.reader.join(timeout=5)


class NotReady(Exception):
    """A container cannot start yet: a Secret or ConfigMap it needs is missing."""


class Cluster:
    """The API server (``url``, ``kubeconfig``), a Job controller and a kubelet with ``gpus``
    GPUs, all in this process: see the module's docstring. Tests use ``core`` and ``batch``
    (the official client's APIs) or the shortcuts :meth:`pods` and :meth:`job`."""

    def __init__(self, tmp_path: Path, gpus: int = 0, *, grace_s: float = 30.0) -> None:
        self.root = tmp_path / "cluster"
        self.root.mkdir(parents=True, exist_ok=True)
        self.gpus = gpus
        self.grace_s = grace_s  # for processes of pods deleted by someone else
        self.errors: list[str] = []  # unexpected controller failures, for tests to assert on
        self._containers: dict[str, Container] = {}
        self._dying: list[Container] = []  # of pods deleted by someone else
        self._doomed: set[str] = set()  # pods stopped on purpose, deleted once they ended
        self._counted: set[str] = set()  # ended pods the Job controller has accounted for
        self._jobs: dict[str, JobState] = collections.defaultdict(JobState)  # by uid
        self._job_uids: set[str] = set()
        self._held = False
        self._calls: queue.Queue[tuple[Callable[[], None], concurrent.futures.Future[None]]]
        self._calls = queue.Queue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._loop_thread.start()
        self.handler: Emulator = self._await(self._start_emulator())
        self._server = self._await(self._serve(None))
        self.port = self._server.port
        self.url = f"http://{LOCAL}:{self.port}"
        self.kubeconfig = self.root / "kubeconfig"
        context = {"cluster": "kmock", "user": "kmock", "namespace": NS}
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {}}],
            "contexts": [{"name": "kmock", "context": context}],
            "current-context": "kmock",
        }
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig))
        self.api = config.new_client_from_config(str(self.kubeconfig))
        self.core, self.batch = client.CoreV1Api(self.api), client.BatchV1Api(self.api)
        self._api = config.new_client_from_config(str(self.kubeconfig))  # the controller's
        self._core, self._batch = client.CoreV1Api(self._api), client.BatchV1Api(self._api)
        self._controller = threading.Thread(target=self._control, daemon=True, name="kmock-ctl")
        self._controller.start()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the controller, kill every pod's processes, stop the server and its thread."""
        self._stop.set()
        self._controller.join(timeout=30)
        for container in [*self._containers.values(), *self._dying]:
            container.close()

        async def shutdown() -> None:
            await self._drop()
            await self.handler.__aexit__(None, None, None)

        self._await(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=10)
        self._loop.close()
        self.api.close()
        self._api.close()

    # -- what tests do -------------------------------------------------------------------

    def drop_connections(self) -> None:
        """Close every connection (watches, log follows) as an API server's restart does,
        then serve the same objects again on the same port."""

        async def restart() -> None:
            await self._drop()
            self._server = await self._serve(self.port)

        self._await(restart())

    def requests(self, path_contains: str = "") -> list[Obj]:
        """The requests served so far, oldest first: method, path and query params."""
        return [
            {"method": r.method.value, "path": r.url.path, "params": dict(r.params)}
            for r in list(self.handler)
            if path_contains in r.url.path
        ]

    def hold(self) -> None:
        """Keep every pod not started yet Pending and Unschedulable until :meth:`release`."""
        self._held = True

    def release(self) -> None:
        self._held = False
        self._wake.set()

    def disrupt(self, pod: str, reason: str = "PreemptionByScheduler", grace_s: float = 30) -> None:
        """What a spot reclaim or a preemption does: the pod gets a DisruptionTarget
        condition and its process SIGTERM (SIGKILL after ``grace_s``), and it goes Failed."""
        disrupt = functools.partial(self._disrupt, pod, reason, f"{reason}: disrupted", grace_s)
        self._in_controller(disrupt).result(timeout=30)

    def pods(self, job: str | None = None) -> list[Obj]:
        """The pods (plain dicts), those of Job ``job`` when given, oldest first."""
        selector = f"job-name={job}" if job else None
        pods = self.core.list_namespaced_pod(NS, label_selector=selector, _preload_content=False)
        return cast(list[Obj], raw(pods)["items"])

    def job(self, name: str) -> Obj:
        """The Job (a plain dict)."""
        return cast(Obj, raw(self.batch.read_namespaced_job(name, NS, _preload_content=False)))

    # -- the API server ------------------------------------------------------------------

    def _await(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    async def _start_emulator(self) -> Emulator:
        handler = Emulator()
        handler.on_change = self._wake.set
        pod = r"/api/v1/namespaces/[^/]+/pods/[^/]+"
        handler["get", re.compile(pod + "/log")] << self._serve_log
        handler["post", re.compile(pod + "/eviction")] << self._serve_eviction
        return await handler.__aenter__()

    async def _serve(self, port: int | None) -> kmock.Server:
        return await kmock.Server(self.handler, host=LOCAL, port=port).__aenter__()

    async def _drop(self) -> None:
        """Stop serving. The connections are closed first: aiohttp's graceful shutdown
        would wait a minute for the streaming requests (watches, log follows) to end."""
        runner = self._server.server.runner
        assert runner is not None and runner.server is not None
        for connection in runner.server.connections:
            connection.force_close()
        await asyncio.sleep(0.05)  # their handlers see the connections lost and end
        await self._server.__aexit__(None, None, None)

    def _pod_object(self, name: str | None) -> Obj | None:
        for (resource, namespace, key), obj in self.handler.objects.items():
            if (resource.plural, namespace, key) == ("pods", NS, name) and not obj.deleted:
                return obj.raw
        return None

    def _serve_log(self, request: kmock.Request) -> kmock.Payload:
        """``GET pods/NAME/log``: follow, timestamps, sinceTime, sinceSeconds, tailLines."""
        pod, params = self._pod_object(request.name), request.params
        if pod is None:
            raise kmock.KubernetesError(404, "NotFound", f'pods "{request.name}" not found')
        container = self._containers.get(pod["metadata"]["name"])
        name = pod["spec"]["containers"][0]["name"]
        if params.get("container") not in (None, name):
            message = f"container {params['container']} is not valid for pod {request.name}"
            raise kmock.KubernetesError(400, "BadRequest", message)
        if container is None:
            message = f'container "{name}" in pod "{request.name}" is waiting to start'
            raise kmock.KubernetesError(400, "BadRequest", message)
        since = parse_ns(params["sinceTime"]) if params.get("sinceTime") else 0
        if params.get("sinceSeconds"):
            since = max(since, time.time_ns() - int(params["sinceSeconds"]) * 10**9)
        lines = container.lines
        first = next((i for i, (t, _) in enumerate(lines) if t >= since), len(lines))
        if params.get("tailLines"):
            first = max(first, len(lines) - int(params["tailLines"]))
        stamps = params.get("timestamps") == "true"

        def render(part: list[tuple[int, bytes]]) -> bytes:
            return b"".join((stamp(t).encode() + b" " if stamps else b"") + ln for t, ln in part)

        async def follow(sent: int) -> AsyncIterator[bytes]:
            yield b""  # the headers, now
            while True:
                ended, part = container.eof, container.lines[sent:]
                if part:
                    yield render(part)
                    sent += len(part)
                elif ended:
                    return
                await asyncio.sleep(0.05)

        text = {"Content-Type": "text/plain"}  # the client does not decode other types
        if params.get("follow") != "true":
            return kmock.Response(payload=render(lines[first:]), headers=text)
        return kmock.Response(payload=follow(first), headers=text)

    async def _serve_eviction(self, request: kmock.Request) -> kmock.Payload:
        """The Eviction API (no disruption budgets): DisruptionTarget, then a graceful
        deletion; the pod is deleted once its Job has seen how it ended."""
        name = request.name or ""
        if self._pod_object(name) is None:
            raise kmock.KubernetesError(404, "NotFound", f'pods "{name}" not found')
        message = "Eviction API: evicting"
        evict = functools.partial(self._disrupt, name, "EvictionByEvictionAPI", message, None)
        await asyncio.wrap_future(self._in_controller(functools.partial(evict, evict=True)))
        return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}

    # -- the controller and the kubelet --------------------------------------------------

    def _in_controller(self, action: Callable[[], None]) -> concurrent.futures.Future[None]:
        """Run ``action`` in the controller's thread, the only writer of pods' status
        (patches replace lists: two writers would lose each other's conditions)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._calls.put((action, done))
        self._wake.set()
        return done

    def _control(self) -> None:
        """Move Jobs and pods on when something changed, every 0.2 s while processes are
        being stopped, else every 2 s."""
        last = 0.0
        while not self._stop.is_set():
            woken = self._wake.wait(0.2)
            self._wake.clear()
            containers = [*self._containers.values(), *self._dying]
            stopping = any(c.kill_at and c.alive() for c in containers)
            if not (woken or stopping or time.monotonic() - last > 2):
                continue
            last = time.monotonic()
            try:
                self._tick()
            except (urllib3.exceptions.HTTPError, ConnectionError):
                self._wake.set()  # the API server restarts (drop_connections): again
            except Exception:
                self.errors.append(traceback.format_exc())

    def _tick(self) -> None:
        while not self._calls.empty():
            action, done = self._calls.get()
            try:
                action()
            except Exception as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)
        jobs = raw(self._batch.list_namespaced_job(NS, _preload_content=False))["items"]
        pods = raw(self._core.list_namespaced_pod(NS, _preload_content=False))["items"]
        self._kubelet(pods)
        uids = {job["metadata"]["uid"] for job in jobs}
        for job in jobs:
            self._sync_job(job, [p for p in pods if owner_uid(p) == job["metadata"]["uid"]])
        for pod in pods:  # the garbage collector: pods of deleted Jobs
            if owner_uid(pod) not in (None, *uids):
                self._stop_pod(pod)
        core = self._core
        for uid in self._job_uids - uids:  # and the other objects they owned
            for lister, deleter in (
                (core.list_namespaced_config_map, core.delete_namespaced_config_map),
                (core.list_namespaced_service, core.delete_namespaced_service),
                (core.list_namespaced_secret, core.delete_namespaced_secret),
            ):
                for obj in raw(lister(NS, _preload_content=False))["items"]:
                    if owner_uid(obj) == uid:
                        quiet(deleter, obj["metadata"]["name"], NS)
        self._job_uids = uids

    def _patch_status(self, pod: str, status: Obj) -> None:
        quiet(self._core.patch_namespaced_pod_status, pod, NS, {"status": status})

    def _stop_pod(self, pod: Obj) -> None:
        """Stop a pod on purpose (its Job ended, was suspended or deleted): SIGTERM, then
        delete it once it ended."""
        name = pod["metadata"]["name"]
        self._doomed.add(name)
        if name in self._containers:
            self._containers[name].terminate()
        else:
            quiet(self._core.delete_namespaced_pod, name, NS)

    def _disrupt(
        self, name: str, reason: str, message: str, grace_s: float | None, evict: bool = False
    ) -> None:
        pod = raw(self._core.read_namespaced_pod(name, NS, _preload_content=False))
        disruption = condition("DisruptionTarget", "True", reason, message)
        self._patch_status(name, {"conditions": with_conditions(pod, disruption)})
        if name in self._containers:
            self._containers[name].evicted = evict
            self._containers[name].terminate(grace_s)
        elif evict:
            quiet(self._core.delete_namespaced_pod, name, NS)

    def _kubelet(self, pods: list[Obj]) -> None:
        listed = {p["metadata"]["name"] for p in pods}
        for name in [n for n in self._containers if n not in listed]:  # deleted by others
            self._containers[name].terminate(self.grace_s)
            self._dying.append(self._containers.pop(name))
        for dying in list(self._dying):
            dying.tick()
            if not dying.alive():
                self._dying.remove(dying)
                dying.close()
        running = [*self._containers.values(), *self._dying]
        free = self.gpus - sum(c.gpus for c in running if c.alive())
        for pod in pods:
            name, phase = pod["metadata"]["name"], pod["status"].get("phase")
            container = self._containers.get(name)
            if container is None:
                if phase == "Pending" and name not in self._doomed:
                    free -= self._start(pod, free)
                continue
            container.tick()
            if container.alive() and phase == "Pending":  # the last report was lost
                self._report_running(pod, container)
            if not container.alive() and not container.reported:
                self._report(pod, container)
            seen = name in self._counted or owner_uid(pod) is None
            if container.reported and (name in self._doomed or (container.evicted and seen)):
                quiet(self._core.delete_namespaced_pod, name, NS)
                self._containers.pop(name).close()

    def _start(self, pod: Obj, free: int) -> int:
        """Start the pod's container if its GPUs fit (else mark it Unschedulable); the
        number of GPUs it took."""
        name = pod["metadata"]["name"]
        if self._held or gpus(pod) > free:
            if not has_condition(pod, "PodScheduled", "False"):
                unschedulable = condition("PodScheduled", "False", "Unschedulable", UNSCHEDULABLE)
                self._patch_status(name, {"phase": "Pending", "conditions": [unschedulable]})
            return 0
        spec = pod["spec"]["containers"][0]
        try:
            run = self._prepare(pod)
        except NotReady as exc:
            waiting = {"reason": "CreateContainerConfigError", "message": str(exc)}
            status = {"name": spec["name"], "ready": False, "state": {"waiting": waiting}}
            if pod["status"].get("containerStatuses") != [status]:
                self._patch_status(name, {"containerStatuses": [status]})
            return 0
        container = self._containers[name] = Container(pod, run, on_exit=self._wake.set)
        container.reader.start()
        self._report_running(pod, container)
        return container.gpus

    def _report_running(self, pod: Obj, container: Container) -> None:
        kinds = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        running = {"running": {"startedAt": container.started}}
        self._patch_status(
            container.name,
            {
                "phase": "Running",
                "startTime": container.started,
                "hostIP": LOCAL,
                "podIP": LOCAL,
                "conditions": with_conditions(pod, *(condition(kind, "True") for kind in kinds)),
                "containerStatuses": [container_status(container, running)],
            },
        )

    def _prepare(self, pod: Obj) -> tuple[list[str], dict[str, str], Path, Path]:
        """The container's argv, env, working dir and termination-log file. Every volume
        is a local dir, and env values under a mount path are rewritten to it."""
        name, spec = pod["metadata"]["name"], pod["spec"]
        container, home = spec["containers"][0], self.root / "pods" / name
        volumes: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            path = self.root / "pvc" / claim if claim else home / "volumes" / volume["name"]
            path.mkdir(parents=True, exist_ok=True)
            volumes[volume["name"]] = path
            for kind in ("configMap", "secret"):
                source = volume.get(kind) or {}
                if source:
                    keys = self._keys(kind, source.get("name") or source["secretName"])
                    for item in source.get("items") or [{"key": k, "path": k} for k in keys]:
                        (path / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                        (path / item["path"]).write_bytes(keys[item["key"]])
        termination_log = home / "termination-log"
        termination_log.unlink(missing_ok=True)
        mounts = {container.get("terminationMessagePath", "/dev/termination-log"): termination_log}
        for mount in container.get("volumeMounts") or []:
            if not mount["mountPath"].startswith("/dev/"):  # /dev/shm and the like are here
                mounts[mount["mountPath"]] = volumes[mount["name"]] / mount.get("subPath", "")
        peer = rf"[a-z0-9-]+\.{re.escape(spec.get('subdomain') or '')}(\.[a-z0-9.-]+)?"

        def local(value: str) -> str:
            for path in sorted(mounts, key=len, reverse=True):
                if value == path or value.startswith(path.rstrip("/") + "/"):
                    return str(mounts[path]) + value[len(path) :]
            if spec.get("subdomain") and re.fullmatch(peer, value):
                return LOCAL  # a pod's DNS name under the Job's headless Service
            return value

        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        env = {"PATH": path, "HOME": str(home), "HOSTNAME": spec.get("hostname") or name}

        def expand(text: str) -> str:  # $(VAR), as the kubelet expands it
            return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), text)

        for var in container.get("env") or []:
            ref = var.get("valueFrom") or {}
            if "fieldRef" in ref:
                value = field(pod, ref["fieldRef"]["fieldPath"])
            elif ref:
                kind = "secret" if "secretKeyRef" in ref else "configMap"
                key_ref = ref.get("secretKeyRef") or ref["configMapKeyRef"]
                keys = self._keys(kind, key_ref["name"])
                if key_ref["key"] not in keys:
                    missing = f"couldn't find key {key_ref['key']} in {kind} {key_ref['name']}"
                    raise NotReady(missing)
                value = keys[key_ref["key"]].decode()
            else:
                value = expand(var.get("value", ""))
            env[var["name"]] = local(value)
        argv = [expand(arg) for arg in [*container.get("command", []), *container.get("args", [])]]
        cwd = Path(local(container["workingDir"])) if container.get("workingDir") else home
        cwd.mkdir(parents=True, exist_ok=True)
        return argv, env, cwd, termination_log

    def _keys(self, kind: str, name: str) -> dict[str, bytes]:
        """A ConfigMap's or a Secret's keys and values."""
        core = self._core
        read = core.read_namespaced_secret if kind == "secret" else core.read_namespaced_config_map
        try:
            obj = raw(read(name, NS, _preload_content=False))
        except client.ApiException as exc:
            if exc.status == 404:
                raise NotReady(f'{kind.lower()} "{name}" not found') from None
            raise
        data = obj.get("data") or {}
        keys = {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
        decode = base64.b64decode if kind == "secret" else str.encode
        keys |= {k: decode(v) for k, v in data.items()}
        return keys | {k: v.encode() for k, v in (obj.get("stringData") or {}).items()}

    def _report(self, pod: Obj, container: Container) -> None:
        """The container's end in the pod's status, as the kubelet reports it."""
        container.reader.join(timeout=2)
        code = container.proc.returncode
        code = 128 - code if code < 0 else code  # killed by a signal
        log = container.termination_log
        message = log.read_bytes()[:4096].decode(errors="replace") if log.exists() else ""
        policy = container.spec.get("terminationMessagePolicy")
        if not message and code and policy == "FallbackToLogsOnError":
            tail = b"".join(line for _, line in container.lines[-80:])
            message = tail[-2048:].decode(errors="replace")
        reason = "Completed" if code == 0 else "Error"
        ended: Obj = {"exitCode": code, "reason": reason, "startedAt": container.started}
        ended |= {"finishedAt": now(), **({"message": message} if message else {})}
        why = "PodCompleted" if code == 0 else "PodFailed"
        unready = [condition(kind, "False", why) for kind in ("ContainersReady", "Ready")]
        self._patch_status(
            container.name,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": with_conditions(pod, *unready),
                "containerStatuses": [container_status(container, {"terminated": ended})],
            },
        )
        container.reported = True

    def _sync_job(self, job: Obj, pods: list[Obj]) -> None:
        """batch/v1 for an Indexed Job: a pod per index, podFailurePolicy, successPolicy,
        backoffLimit, suspend, activeDeadlineSeconds and ttlSecondsAfterFinished. What it
        learns from ended pods is kept here, and the status written whole: a status patch
        lost to a dropped connection is made again at the next look."""
        meta, spec, old = job["metadata"], job["spec"], job.get("status") or {}
        state, n = self._jobs[meta["uid"]], int(spec.get("completions") or 1)
        if has_condition(job, "Complete") or has_condition(job, "Failed"):
            ttl, ended = spec.get("ttlSecondsAfterFinished"), old["conditions"][-1]
            if ttl is not None and age_s(ended["lastTransitionTime"]) >= ttl:
                quiet(self._batch.delete_namespaced_job, meta["name"], NS)
            return
        for pod in pods:  # the pods that ended since the last look
            name, phase = pod["metadata"]["name"], pod["status"].get("phase")
            if phase not in TERMINAL or name in self._counted or name in self._doomed:
                continue
            self._counted.add(name)
            if phase == "Succeeded":
                state.succeeded += 1
                state.done.add(int(pod["metadata"]["annotations"][INDEX]))
                continue
            action, message = failure_action(spec, pod)
            if action == "Ignore":
                continue
            state.failed += 1
            if not state.target and action == "FailJob":
                state.target = ("FailureTarget", "PodFailurePolicy", message)
            elif not state.target and state.failed > int(spec.get("backoffLimit", 6)):
                message = "Job has reached the specified backoff limit"
                state.target = ("FailureTarget", "BackoffLimitExceeded", message)
        if not state.target and (success := success_reason(spec, state.done, n)):
            state.target = ("SuccessCriteriaMet", *success)
        suspend, deadline = spec.get("suspend"), spec.get("activeDeadlineSeconds")
        started = old.get("startTime")
        if not state.target and not suspend and deadline and started and age_s(started) > deadline:
            message = "Job was active longer than specified deadline"
            state.target = ("FailureTarget", "DeadlineExceeded", message)

        live = [p for p in pods if p["status"].get("phase") not in TERMINAL]
        if state.target or suspend:
            for pod in live:
                self._stop_pod(pod)
        else:  # a new pod for each index with no pod alive (terminating ones count)
            taken = {int(p["metadata"]["annotations"][INDEX]) for p in live}
            for index in range(n):
                if index not in state.done | taken and len(taken) < int(
                    spec.get("parallelism") or n
                ):
                    quiet(self._core.create_namespaced_pod, NS, pod_for(job, index))
                    taken.add(index)

        status: Obj = {**old, "conditions": list(old.get("conditions") or [])}
        if bool(suspend) != has_condition(job, "Suspended"):
            change = ("True", "JobSuspended", "Job suspended")
            if not suspend:
                change = ("False", "JobResumed", "Job resumed")
            status["conditions"] = with_conditions(job, condition("Suspended", *change))
            status["startTime"] = None if suspend else now()
        if not suspend and not status.get("startTime"):
            status["startTime"] = now()
        if state.target:
            kind, reason, message = state.target
            finals = [(kind, reason, message)]
            if not live:
                finals.append(
                    ("Complete" if kind == "SuccessCriteriaMet" else "Failed", reason, message)
                )
            for final in finals:
                if not has_condition(job, final[0]):
                    status["conditions"].append(condition(final[0], "True", *final[1:]))
            if not live and kind == "SuccessCriteriaMet":
                status.setdefault("completionTime", now())
        active = [p for p in live if p["metadata"]["name"] not in self._doomed]
        status["active"], status["terminating"] = len(active), len(live) - len(active)
        status["ready"] = sum(p["status"].get("phase") == "Running" for p in active)
        status["succeeded"], status["failed"] = state.succeeded or None, state.failed or None
        status["completedIndexes"] = ",".join(map(str, sorted(state.done))) or None
        if {k: v for k, v in status.items() if v is not None} != old:  # None removes a key
            quiet(self._batch.patch_namespaced_job_status, meta["name"], NS, {"status": status})


@dataclasses.dataclass
class JobState:
    """What the Job controller learnt from a Job's ended pods."""

    succeeded: int = 0
    failed: int = 0
    done: set[int] = dataclasses.field(default_factory=set)  # the indexes that succeeded
    target: tuple[str, str, str] | None = None  # SuccessCriteriaMet or FailureTarget, why


def pod_for(job: Obj, index: int) -> Obj:
    """The pod the Job controller makes for an index of an Indexed Job."""
    meta, template = job["metadata"], job["spec"]["template"]
    name, uid, labels = meta["name"], meta["uid"], (template.get("metadata") or {}).get("labels")
    annotations = (template.get("metadata") or {}).get("annotations")
    spec = copy.deepcopy(template["spec"])
    spec["hostname"] = f"{name}-{index}"
    ref = {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX}']"}}
    for container in spec["containers"]:
        container["env"] = [
            *(container.get("env") or []),
            {"name": "JOB_COMPLETION_INDEX", "valueFrom": ref},
        ]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"{name}-{index}-",
            "labels": {
                **(labels or {}),
                "batch.kubernetes.io/controller-uid": uid,
                "controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
                INDEX: str(index),
            },
            "annotations": {**(annotations or {}), INDEX: str(index)},
            "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }


def failure_action(spec: Obj, pod: Obj) -> tuple[str, str]:
    """The action of the first podFailurePolicy rule a failed pod matches, and why."""
    name, status = pod["metadata"]["name"], pod["status"]
    for i, rule in enumerate((spec.get("podFailurePolicy") or {}).get("rules") or []):
        codes, action = rule.get("onExitCodes"), rule["action"]
        for ended in status.get("containerStatuses") or [] if codes else []:
            code = (ended["state"].get("terminated") or {}).get("exitCode")
            named = codes.get("containerName") in (None, ended["name"])
            if code and named and (code in codes["values"]) == (codes["operator"] == "In"):
                return action, (
                    f"Container {ended['name']} for pod {NS}/{name} failed with exit code "
                    f"{code} matching {action} rule at index {i}"
                )
        for want in rule.get("onPodConditions") or []:
            if has_condition(pod, want["type"], want.get("status", "True")):
                return action, (
                    f"Pod {NS}/{name} has condition {want['type']} matching {action} rule "
                    f"at index {i}"
                )
    return "Count", ""


def success_reason(spec: Obj, done: set[int], n: int) -> tuple[str, str] | None:
    """(reason, message) once the successPolicy, or else every index, has succeeded."""
    for i, rule in enumerate((spec.get("successPolicy") or {}).get("rules") or []):
        indexes = set(range(n))
        if rule.get("succeededIndexes"):
            indexes = set()
            for part in rule["succeededIndexes"].split(","):
                first, _, last = part.partition("-")
                indexes.update(range(int(first), int(last or first) + 1))
        count = rule.get("succeededCount")
        if (len(indexes & done) >= count) if count else indexes <= done:
            return "SuccessPolicy", f"Matched rules at index {i}"
    if len(done) >= n:
        return "CompletionsReached", "Reached expected number of succeeded pods"
    return None


def container_status(container: Container, state: Obj) -> Obj:
    running = "running" in state
    return {
        "name": container.spec["name"],
        "image": container.spec.get("image", ""),
        "imageID": "",
        "containerID": f"local://{container.proc.pid}",
        "restartCount": 0,
        "ready": running,
        "started": running,
        "state": state,
    }


def gpus(pod: Obj) -> int:
    limits = (pod["spec"]["containers"][0].get("resources") or {}).get("limits") or {}
    return int(limits.get("nvidia.com/gpu", 0))


def field(pod: Obj, path: str) -> str:
    """A ``fieldRef``'s value: ``metadata.name``, ``metadata.annotations['key']``..."""
    if path in ("status.podIP", "status.hostIP"):
        return LOCAL
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    value = (pod["metadata"].get(keyed[1]) or {}).get(keyed[2]) if keyed else dig(pod, path)
    return "" if value is None else str(value)


def dig(obj: Any, path: str) -> Any:
    for key in path.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def selected(obj: Obj, params: Any) -> bool:
    """Whether an object passes a request's labelSelector and fieldSelector."""
    labels = (obj.get("metadata") or {}).get("labels") or {}

    def by_field(path: str) -> str | None:
        value = dig(obj, path)
        return None if value is None else str(value)

    by_label = labels.get
    return passes(params.get("labelSelector"), by_label) and passes(
        params.get("fieldSelector"), by_field
    )


def passes(selector: str | None, get: Callable[[str], Any]) -> bool:
    """Whether values pass an equality-based selector (``a=b,c!=d,e,!f``)."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        match = re.fullmatch(r"(!?)([^=!\s]+)\s*(?:(!=|==?)\s*(\S*))?", term)
        if match is None:
            raise kmock.KubernetesError(400, "BadRequest", f"unable to parse requirement {term!r}")
        negated, key, op, value = match.groups()
        actual = get(key)
        ok = (actual is None) == bool(negated) if op is None else (actual == value) != (op == "!=")
        if not ok:
            return False
    return True


def condition(kind: str, status: str, reason: str = "", message: str = "") -> Obj:
    when = now()
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": when,
        "lastTransitionTime": when,
    }


def with_conditions(obj: Obj, *new: Obj) -> list[Obj]:
    """``obj``'s conditions with those of ``new``'s types replaced. Patches replace lists,
    so a change of conditions sends them all."""
    kinds = {c["type"] for c in new}
    old = (obj.get("status") or {}).get("conditions") or []
    return [c for c in old if c["type"] not in kinds] + list(new)


def has_condition(obj: Obj, kind: str, status: str = "True") -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == status for c in conditions)


def owner_uid(obj: Obj) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return next((r["uid"] for r in refs if r.get("kind") == "Job"), None)


def version_of(obj: Obj) -> int:
    return int(obj["metadata"]["resourceVersion"])


def api_version(resource: Any) -> str:
    return f"{resource.group}/{resource.version}" if resource.group else resource.version


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stamp(ns: int) -> str:
    """RFC 3339 with 9 fraction digits, as the kubelet writes log timestamps."""
    seconds, fraction = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def parse_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction digits, any zone)."""
    match = re.fullmatch(r"(.{19})(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise kmock.KubernetesError(400, "BadRequest", f"not an RFC 3339 time: {text!r}")
    head, fraction, zone = match.groups()
    seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    if zone != "Z":
        seconds -= int(zone[0] + "1") * (int(zone[1:3]) * 3600 + int(zone[4:]) * 60)
    return seconds * 10**9 + int((fraction or "0")[:9].ljust(9, "0"))


def age_s(text: str) -> float:
    return time.time() - parse_ns(text) / 10**9


def raw(response: Any) -> Any:
    """The JSON of a ``_preload_content=False`` response: plain dicts, camelCase keys."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def quiet(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """An API call whose object may be gone or there already: races are part of the game."""
    try:
        raw(call(*args, _preload_content=False, **kwargs))
    except client.ApiException as exc:
        if exc.status not in (404, 409):
            raise
