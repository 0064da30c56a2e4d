"""The fake W&B server's GraphQL operations, one resolver per operation name.

There is no GraphQL engine here: each resolver answers the one document the
installed wandb sends under that name (wandb-core's own, or the Python side's
passed through wandb-core), returning a superset of the fields those documents
select. Clients ignore fields they did not ask for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .fake_state import (
    Artifact,
    ArtifactFile,
    Queue,
    QueueItem,
    Run,
    State,
    global_id,
    md5_storage_key,
)

Vars = dict[str, Any]
Resolver = Callable[["Context", Vars], dict[str, Any]]

RESOLVERS: dict[str, Resolver] = {}

_OPERATION = re.compile(r"\b(query|mutation)\s+([A-Za-z_][A-Za-z0-9_]*)")


class GraphQLError(Exception):
    """Answered as a GraphQL ``errors`` entry (HTTP 200)."""


class Context:
    """What a resolver sees: the state (its lock held) and the server's own URL."""

    def __init__(self, state: State, base_url: str) -> None:
        self.state = state
        self.base_url = base_url

    def storage_url(self, key: str) -> str:
        return f"{self.base_url}/storage/{key}"


def operation_name(body: dict[str, Any]) -> str:
    """The operation's name: ``operationName``, else the first ``query|mutation Name``."""
    if body.get("operationName"):
        return str(body["operationName"])
    match = _OPERATION.search(body.get("query") or "")
    return match.group(2) if match else "<anonymous>"


def resolver(*names: str) -> Callable[[Resolver], Resolver]:
    def register(function: Resolver) -> Resolver:
        for name in names:
            RESOLVERS[name] = function
        return function

    return register


def _json(value: Any) -> str:
    return json.dumps(value)


def _loads(value: Any, default: Any) -> Any:
    if value is None or value == "":
        return default
    return json.loads(value) if isinstance(value, str) else value


def _connection(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "totalCount": len(nodes),
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "edges": [{"node": node, "cursor": str(i)} for i, node in enumerate(nodes)],
    }


# -- viewer and server ---------------------------------------------------------

ENTITY = "team"


@resolver("Viewer", "GetDefaultEntity", "GetViewer")
def _viewer(ctx: Context, v: Vars) -> dict[str, Any]:
    return {
        "viewer": {
            "id": global_id("User", 1),
            "entity": ENTITY,
            "username": "fake-user",
            "email": "fake-user@example.com",
            "admin": False,
            "flags": "{}",
            "teams": {"edges": [{"node": {"name": ENTITY}}]},
        }
    }


@resolver("ServerFeaturesQuery")
def _server_features(ctx: Context, v: Vars) -> dict[str, Any]:
    return {"serverInfo": {"features": []}}


# -- runs ----------------------------------------------------------------------


def _run_node(ctx: Context, run: Run, v: Vars | None = None) -> dict[str, Any]:
    """A run with every field any document selects; ``v`` holds the arguments of
    the argument-taking fields (``history``, ``sampledHistory``), as variables."""
    v = v or {}
    specs = v.get("specs") or ([v["spec"]] if "spec" in v else [])
    limit = v.get("pageSize") or v.get("samples")
    return {
        "__typename": "Run",
        "id": run.id,
        "name": run.name,
        "displayName": run.display_name,
        "description": run.notes,
        "notes": run.notes,
        "tags": run.tags,
        "state": run.state,
        "stopped": run.name in ctx.state.stop_requested,
        "config": _json(run.config),
        "wandbConfig": _json({"t": _wandb_config(run).get("t", {})}),
        "summaryMetrics": _json(run.summary),
        "systemMetrics": "{}",
        "group": run.group,
        "jobType": run.job_type,
        "sweepName": run.sweep,
        "commit": None,
        "readOnly": False,
        "createdAt": run.created_at,
        "heartbeatAt": run.heartbeat_at,
        "projectId": "1",
        "project": _project_node(run.entity, run.project),
        "user": {"name": "fake-user", "username": "fake-user"},
        "historyLineCount": len(run.history),
        "eventsLineCount": len(run.events),
        "logLineCount": len(run.log_lines),
        "historyTail": _json([json.dumps(row) for row in run.history[-10:]]),
        "eventsTail": _json([json.dumps(row) for row in run.events[-10:]]),
        "historyKeys": _history_keys(run),
        "history": [json.dumps(row) for row in _in_steps(run.history, v, limit)],
        "events": [json.dumps(row) for row in run.events[:limit]],
        "sampledHistory": [_sample(run.history, _loads(spec, {})) for spec in specs],
        "parquetHistory": {
            "parquetUrls": [],
            "liveData": [{"_step": row.get("_step", 0)} for row in run.history],
        },
    }


def _wandb_config(run: Run) -> dict[str, Any]:
    """The ``_wandb`` entry of a run's config (wandb's own telemetry, key ``t``)."""
    value = run.config.get("_wandb", {})
    value = value.get("value", value) if isinstance(value, dict) else {}
    return value if isinstance(value, dict) else {}


def _project_node(entity: str, project: str) -> dict[str, Any]:
    return {
        "__typename": "Project",
        "id": global_id("Project", 1),
        "internalId": "1",
        "name": project,
        "entityName": entity,
        "entity": {"id": global_id("Entity", 1), "name": entity},
    }


def _history_keys(run: Run) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for row in run.history:
        for key, value in row.items():
            keys.setdefault(key, {"typeCounts": [{"type": type(value).__name__, "count": 0}]})
            keys[key]["typeCounts"][0]["count"] += 1
    last = run.history[-1].get("_step", len(run.history) - 1) if run.history else -1
    return {"keys": keys, "lastStep": last}


@resolver("UpsertBucket")
def _upsert_bucket(ctx: Context, v: Vars) -> dict[str, Any]:
    state = ctx.state
    run = state.run_by_id(v["id"]) if v.get("id") else None
    inserted = False
    if run is None:
        entity = v.get("entity") or ENTITY
        project = v.get("project") or "uncategorized"
        name = v.get("name") or v.get("id")
        if not name:
            raise GraphQLError("upsertBucket: no run name")
        inserted = (entity, project, name) not in state.runs
        run = state.ensure_run(entity, project, name)
    if v.get("config") is not None:
        run.config = _loads(v["config"], {})
    if v.get("summaryMetrics") is not None:
        run.summary = _loads(v["summaryMetrics"], {})
    for key, attr in (("displayName", "display_name"), ("display_name", "display_name")):
        if v.get(key):
            setattr(run, attr, v[key])
    for key, attr in (
        ("groupName", "group"),
        ("jobType", "job_type"),
        ("notes", "notes"),
        ("sweep", "sweep"),
    ):
        if v.get(key) is not None:
            setattr(run, attr, v[key])
    if v.get("tags") is not None:
        run.tags = list(v["tags"])
    if v.get("state"):
        run.state = v["state"]
    elif inserted:
        run.state = "running"
    return {"upsertBucket": {"bucket": _run_node(ctx, run), "inserted": inserted}}


@resolver("RunResumeStatus")
def _run_resume_status(ctx: Context, v: Vars) -> dict[str, Any]:
    entity = v.get("entity") or ENTITY
    project = v.get("project") or "uncategorized"
    run = ctx.state.find_run(entity, project, v["name"])
    return {
        "model": {
            **_project_node(entity, project),
            "bucket": _run_node(ctx, run) if run else None,
        }
    }


@resolver(
    "Run",
    "RunState",
    "QueryRunInfo",
    "RunStoppedStatus",
    "RunHistoryKeys",
    "RunParquetHistory",
    "HistoryPage",
    "RunFullHistory",
    "SampledHistoryPage",
    "RunSampledHistory",
)
def _run(ctx: Context, v: Vars) -> dict[str, Any]:
    """``project(...) { run(name) { ... } }``: the Python side's and wandb-core's."""
    name = next(v[k] for k in ("name", "run", "runId", "runName") if k in v)
    project = v.get("project") or v.get("projectName") or ""
    entity = v.get("entity") or v.get("entityName") or ENTITY
    run = ctx.state.find_run(entity, project, name)
    node = _run_node(ctx, run, v) if run else None
    return {"project": {**_project_node(entity, project), "run": node}}


def _in_steps(rows: list[dict[str, Any]], args: Vars, limit: int | None) -> list[dict[str, Any]]:
    """The rows with ``minStep <= _step < maxStep`` (where given), at most ``limit``."""
    low, high = args.get("minStep", float("-inf")), args.get("maxStep", float("inf"))
    kept = [row for row in rows if low <= row.get("_step", 0) < high]
    return kept[:limit] if limit else kept


def _sample(history: list[dict[str, Any]], spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``sampledHistory`` spec: the rows with all of ``keys``, only those keys."""
    keys = spec.get("keys") or []
    rows = [{k: row[k] for k in keys} for row in history if all(k in row for k in keys)]
    return _in_steps(rows, spec, spec.get("samples"))


@resolver("StopRun")
def _stop_run(ctx: Context, v: Vars) -> dict[str, Any]:
    run = ctx.state.run_by_id(v["id"])
    if run is None:
        raise GraphQLError(f"stopRun: no run {v['id']}")
    ctx.state.stop_requested.add(run.name)
    return {"stopRun": {"success": True, "clientMutationId": None}}


@resolver("DeleteRun")
def _delete_run(ctx: Context, v: Vars) -> dict[str, Any]:
    runs = ctx.state.runs
    for key in [k for k, run in runs.items() if run.id == v["id"]]:
        del runs[key]
    return {"deleteRun": {"clientMutationId": None}}


@resolver("CreateRunFiles")
def _create_run_files(ctx: Context, v: Vars) -> dict[str, Any]:
    run = ctx.state.find_run(v["entity"], v["project"], v["run"])
    if run is None:
        return {"createRunFiles": {"runID": None, "uploadHeaders": [], "files": []}}
    files = [
        {
            "name": name,
            "uploadUrl": ctx.storage_url(f"runs/{run.entity}/{run.project}/{run.name}/{name}"),
        }
        for name in v["files"]
    ]
    return {"createRunFiles": {"runID": run.id, "uploadHeaders": [], "files": files}}


@resolver("MarkRunFilesUploaded")
def _mark_run_files_uploaded(ctx: Context, v: Vars) -> dict[str, Any]:
    return {"markRunFilesUploaded": {"success": True}}


# -- artifacts: logging (wandb-core's ArtifactSaver) ---------------------------


@resolver("OrganizationCoreWeaveOrganizationID", "FetchOrgEntityFromEntity")
def _organization(ctx: Context, v: Vars) -> dict[str, Any]:
    return {
        "entity": {
            "organization": {
                "name": ENTITY,
                "coreWeaveOrganizationId": None,
                "orgEntity": {"name": ENTITY},
            }
        }
    }


@resolver("XXHashDigestsEnabled")
def _xxhash_enabled(ctx: Context, v: Vars) -> dict[str, Any]:
    return {"entity": {"xxhashDigestsEnabled": False}}


@resolver("FetchArtifactDigestAlgorithm")
def _digest_algorithm(ctx: Context, v: Vars) -> dict[str, Any]:
    versions = ctx.state.collection_versions(
        v["entityName"], v["projectName"], v["artifactCollectionName"]
    )
    collection = (
        {"__typename": "ArtifactSequence", "digestAlgorithm": "MANIFEST_MD5"} if versions else None
    )
    return {"project": {"artifactType": {"artifactCollection": collection}}}


@resolver("CreateArtifact")
def _create_artifact(ctx: Context, v: Vars) -> dict[str, Any]:
    # wandb-core sends an ``input`` object; wandb's Python side (``wandb job create``)
    # the same fields as variables, with a list of collection names.
    state, given = ctx.state, v.get("input") or v
    entity, project = given["entityName"], given["projectName"]
    collection = given.get("artifactCollectionName") or given["artifactCollectionNames"][0]
    versions = state.collection_versions(entity, project, collection)
    same = next((a for a in versions if a.digest == given["digest"]), None)
    if same is not None and given.get("enableDigestDeduplication", True):
        artifact = same
    else:
        number = state.next_number()
        artifact = Artifact(
            number,
            global_id("Artifact", number),
            entity,
            project,
            collection,
            given["artifactTypeName"],
            given["digest"],
            version_index=len(versions),
            metadata=_loads(given.get("metadata"), {}),
            description=given.get("description"),
            client_id=given.get("clientID"),
            sequence_client_id=given.get("sequenceClientID"),
        )
        if given.get("runName"):
            artifact.run = (entity, project, given["runName"])
        state.artifacts[artifact.id] = artifact
    artifact.pending_aliases = [a["alias"] for a in given.get("aliases") or []]
    if artifact.state == "COMMITTED":
        _apply_aliases(state, artifact)
    latest = state.find_artifact(entity, project, collection, "latest")
    return {
        "createArtifact": {
            "artifact": {
                **_artifact_node(ctx, artifact),
                "artifactSequence": {
                    **_sequence_node(artifact),
                    "latestArtifact": {"id": latest.id} if latest else None,
                },
            }
        }
    }


def _apply_aliases(state: State, artifact: Artifact) -> None:
    for alias in ["latest", *artifact.pending_aliases]:
        state.set_alias(artifact, alias)
    artifact.pending_aliases = []


def _artifact_by_id(ctx: Context, artifact_id: str) -> Artifact:
    artifact = ctx.state.artifacts.get(artifact_id)
    if artifact is None:
        raise GraphQLError(f"no artifact {artifact_id}")
    return artifact


@resolver("CreateArtifactManifest")
def _create_artifact_manifest(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = _artifact_by_id(ctx, v["artifactID"])
    artifact.manifest_id = global_id("ArtifactManifest", artifact.number)
    artifact.manifest_key = f"manifests/{artifact.number}/{v.get('name') or 'wandb_manifest.json'}"
    return {"createArtifactManifest": {"artifactManifest": _manifest_node(ctx, artifact)}}


@resolver("UpdateArtifactManifest")
def _update_artifact_manifest(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = next(
        (a for a in ctx.state.artifacts.values() if a.manifest_id == v["artifactManifestID"]),
        None,
    )
    if artifact is None:
        raise GraphQLError(f"no artifact manifest {v['artifactManifestID']}")
    if v.get("digest"):
        artifact.digest = v["digest"]
    return {"updateArtifactManifest": {"artifactManifest": _manifest_node(ctx, artifact)}}


def _manifest_node(ctx: Context, artifact: Artifact) -> dict[str, Any]:
    key = artifact.manifest_key or ""
    return {
        "id": artifact.manifest_id,
        "file": {
            "id": global_id("File", artifact.number),
            "uploadUrl": ctx.storage_url(key),
            "uploadHeaders": [],
            "directUrl": ctx.storage_url(key),
        },
    }


@resolver("CreateArtifactFiles")
def _create_artifact_files(ctx: Context, v: Vars) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for given in v["input"]["artifactFiles"]:
        artifact = _artifact_by_id(ctx, given["artifactID"])
        key = md5_storage_key(given["md5"])
        storage_path = f"{artifact.entity}/{artifact.project}/{key}"
        artifact.files[given["name"]] = ArtifactFile(given["name"], given["md5"], key)
        nodes.append(
            {
                "storagePath": storage_path,
                "uploadUrl": None if key in ctx.state.storage else ctx.storage_url(key),
                "uploadHeaders": [],
                "uploadMultipartUrls": None,
                "artifact": {"id": artifact.id},
            }
        )
    return {"createArtifactFiles": {"files": _connection(nodes)}}


@resolver("CommitArtifact")
def _commit_artifact(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = _artifact_by_id(ctx, v["artifactID"])
    artifact.state = "COMMITTED"
    _apply_aliases(ctx.state, artifact)
    return {"commitArtifact": {"artifact": _artifact_node(ctx, artifact)}}


@resolver("UpdateArtifact")
def _update_artifact(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = _artifact_by_id(ctx, v.get("artifactID") or v["input"]["artifactID"])
    given = v.get("input") or v
    if given.get("metadata") is not None:
        artifact.metadata = _loads(given["metadata"], {})
    if given.get("description") is not None:
        artifact.description = given["description"]
    return {"updateArtifact": {"artifact": _artifact_node(ctx, artifact)}}


@resolver("UseArtifact")
def _use_artifact(ctx: Context, v: Vars) -> dict[str, Any]:
    # wandb's Python side sends the fields as variables; wandb-core as an ``input`` object.
    fields = v.get("input") or v
    artifact = _artifact_by_id(ctx, fields["artifactID"])
    node = {
        "id": artifact.id,
        "digest": artifact.digest,
        "description": None,
        "state": artifact.state,
        "createdAt": "2026-01-01T00:00:00Z",
        "metadata": "{}",
    }
    return {"useArtifact": {"artifact": node}}


@resolver("ClientIDMapping")
def _client_id_mapping(ctx: Context, v: Vars) -> dict[str, Any]:
    found = next(
        (a for a in ctx.state.artifacts.values() if v["clientID"] in (a.client_id, a.id)), None
    )
    return {"clientIDMapping": {"serverID": found.id} if found else None}


# -- artifacts: reading ----------------------------------------------------------


def _sequence_node(artifact: Artifact) -> dict[str, Any]:
    return {
        "__typename": "ArtifactSequence",
        "id": global_id("ArtifactSequence", artifact.number),
        "name": artifact.collection,
        "project": _project_node(artifact.entity, artifact.project),
    }


def _artifact_node(ctx: Context, artifact: Artifact) -> dict[str, Any]:
    return {
        "__typename": "Artifact",
        "id": artifact.id,
        "digest": artifact.digest,
        "state": artifact.state,
        "versionIndex": artifact.version_index,
        "commitHash": artifact.digest[:20],
        "description": artifact.description,
        "metadata": _json(artifact.metadata),
        "createdAt": artifact.created_at,
        "updatedAt": artifact.created_at,
        "fileCount": len(artifact.files),
        "size": sum(
            len(ctx.state.storage.get(f.storage_key, b"")) for f in artifact.files.values()
        ),
        "ttlDurationSeconds": -2,
        "ttlIsInherited": True,
        "digestAlgorithm": "MANIFEST_MD5",
        "aliases": _alias_nodes(artifact),
        "tags": [],
        "historyStep": None,
        "artifactType": {"name": artifact.type, "id": global_id("ArtifactType", 1)},
        "artifactSequence": _sequence_node(artifact),
        "currentManifest": {"file": {"directUrl": ctx.storage_url(artifact.manifest_key or "")}},
    }


def _alias_nodes(artifact: Artifact) -> list[dict[str, Any]]:
    return [
        {
            "__typename": "ArtifactAlias",
            "id": global_id("ArtifactAlias", artifact.number * 1000 + i),
            "alias": alias,
            "artifactCollection": _sequence_node(artifact),
        }
        for i, alias in enumerate(artifact.aliases)
    ]


def _named_artifact(ctx: Context, v: Vars) -> Artifact | None:
    """``project(entity, project).artifact(name: "collection:version-or-alias")``."""
    collection, _, alias = v["name"].partition(":")
    return ctx.state.find_artifact(
        v.get("entity") or v.get("entityName") or ENTITY,
        v.get("project") or v.get("projectName") or "",
        collection,
        alias or "latest",
    )


@resolver("ArtifactByID")
def _artifact_by_id_query(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = ctx.state.artifacts.get(v["id"])
    return {"artifact": _artifact_node(ctx, artifact) if artifact else None}


@resolver("ArtifactType")
def _artifact_type(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = _named_artifact(ctx, v)
    node = _artifact_node(ctx, artifact) if artifact else None
    return {"project": {**_project_node(v.get("entity") or ENTITY, v["project"]), "artifact": node}}


@resolver("ArtifactMembershipByName")
def _artifact_membership_by_name(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = _named_artifact(ctx, v)
    membership = None
    if artifact is not None:
        membership = {
            "__typename": "ArtifactCollectionMembership",
            "id": global_id("ArtifactCollectionMembership", artifact.number),
            "versionIndex": artifact.version_index,
            "createdAt": artifact.created_at,
            "aliases": _alias_nodes(artifact),
            "artifactCollection": _sequence_node(artifact),
            "artifact": _artifact_node(ctx, artifact),
        }
    project = _project_node(v["entity"], v["project"])
    return {"project": {**project, "artifactCollectionMembership": membership}}


@resolver("FetchArtifactManifest", "ArtifactManifest")
def _fetch_artifact_manifest(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = _artifact_by_id(ctx, v.get("id") or v["artifact_id"])
    return {"artifact": {"currentManifest": _manifest_node(ctx, artifact)}}


def _file_nodes(ctx: Context, artifact: Artifact, names: list[str] | None) -> list[dict[str, Any]]:
    return [
        {
            "__typename": "File",
            "id": global_id("File", artifact.number * 100000 + i),
            "name": file.name,
            "displayName": file.name,
            "url": ctx.storage_url(file.storage_key),
            "directUrl": ctx.storage_url(file.storage_key),
            "sizeBytes": len(ctx.state.storage.get(file.storage_key, b"")),
            "storagePath": file.storage_key,
            "mimetype": None,
            "updatedAt": artifact.created_at,
            "digest": file.md5,
            "md5": file.md5,
        }
        for i, file in enumerate(artifact.files.values())
        if names is None or file.name in names
    ]


@resolver("ArtifactMembershipFiles", "GetArtifactMembershipFileUrls")
def _artifact_membership_files(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = ctx.state.find_artifact(v["entity"], v["project"], v["collection"], v["alias"])
    membership = (
        {"files": _connection(_file_nodes(ctx, artifact, v.get("fileNames")))} if artifact else None
    )
    collection = {"__typename": "ArtifactSequence", "artifactMembership": membership}
    return {
        "project": {**_project_node(v["entity"], v["project"]), "artifactCollection": collection}
    }


@resolver("ArtifactFileURLsByManifestEntries")
def _artifact_file_urls(ctx: Context, v: Vars) -> dict[str, Any]:
    artifact = _artifact_by_id(ctx, v["id"])
    nodes = [
        {"name": entry["name"], "directUrl": ctx.storage_url(md5_storage_key(entry["digest"]))}
        for entry in v.get("entries") or []
    ]
    return {"artifact": {"filesByManifestEntries": _connection(nodes), "id": artifact.id}}


# -- run queues (Launch) ------------------------------------------------------------


def _queue_node(queue: Queue) -> dict[str, Any]:
    return {
        "id": queue.id,
        "name": queue.name,
        "createdBy": ENTITY,
        "access": "PROJECT",
        "defaultResourceConfigID": None,
        "prioritizationMode": "V0",
        "externalLinks": "{}",
        "runQueueItems": _connection([_item_node(item) for item in queue.items]),
    }


def _item_node(item: QueueItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "state": item.state,
        "associatedRunId": item.associated_run_id,
        "runSpec": _json(item.run_spec),
        "priority": item.priority,
        "templateVariableValues": _json(item.template_variables),
        "createdAt": item.created_at,
        "error": {"message": item.error} if item.error else None,
    }


def _push(ctx: Context, queue: Queue, v: Vars) -> dict[str, Any]:
    item = ctx.state.push_item(
        queue,
        _loads(v["runSpec"], {}),
        v.get("priority"),
        _loads(v.get("templateVariableValues"), None),
    )
    return {"runQueueItemId": item.id, "runSpec": _json(item.run_spec)}


@resolver("pushToRunQueueByName")
def _push_to_run_queue_by_name(ctx: Context, v: Vars) -> dict[str, Any]:
    queue = ctx.state.ensure_queue(v["entityName"], v["queueName"], v["projectName"])
    return {"pushToRunQueueByName": _push(ctx, queue, v)}


@resolver("pushToRunQueue")
def _push_to_run_queue(ctx: Context, v: Vars) -> dict[str, Any]:
    queue = ctx.state.queue_by_id(v["queueID"])
    if queue is None:
        raise GraphQLError(f"no run queue {v['queueID']}")
    return {"pushToRunQueue": _push(ctx, queue, v)}


@resolver("ProjectRunQueues")
def _project_run_queues(ctx: Context, v: Vars) -> dict[str, Any]:
    queues = [_queue_node(q) for q in ctx.state.queues.values() if q.entity == v["entity"]]
    return {"project": {**_project_node(v["entity"], v["projectName"]), "runQueues": queues}}


@resolver("GetRunQueueItem", "GetRunQueueItems", "GetRunQueueMetadata", "fetchRunQueuesFromProject")
def _run_queue(ctx: Context, v: Vars) -> dict[str, Any]:
    name = v.get("runQueue") or v["runQueueName"]
    queue = ctx.state.queues.get((v["entityName"], name))
    node = None
    if queue is not None:
        node = _queue_node(queue)
        item = next((i for i in queue.items if i.id == v.get("itemId")), None)
        node["runQueueItem"] = _item_node(item) if item else None
    return {"project": {**_project_node(v["entityName"], v["projectName"]), "runQueue": node}}


@resolver("DeleteFromRunQueue")
def _delete_from_run_queue(ctx: Context, v: Vars) -> dict[str, Any]:
    queue = ctx.state.queue_by_id(v["queueID"])
    before = len(queue.items) if queue else 0
    if queue is not None:
        queue.items = [i for i in queue.items if i.id != v["runQueueItemId"]]
    success = queue is not None and len(queue.items) < before
    return {"deleteFromRunQueue": {"success": success, "clientMutationId": None}}


@resolver("CreateRunQueue", "UpsertRunQueue")
def _create_run_queue(ctx: Context, v: Vars) -> dict[str, Any]:
    entity = v.get("entity") or v.get("entityName") or ENTITY
    name = v.get("queueName") or v["name"]
    project = v.get("project") or v.get("projectName") or "model-registry"
    queue = ctx.state.ensure_queue(entity, name, project)
    payload = {"success": True, "queueID": queue.id, "configSchemaValidationErrors": None}
    return {"createRunQueue": payload, "upsertRunQueue": payload}


@resolver("popFromRunQueue")
def _pop_from_run_queue(ctx: Context, v: Vars) -> dict[str, Any]:
    queue = ctx.state.queues.get((v["entity"], v["queueName"]))
    pending = [i for i in queue.items if i.state == "PENDING"] if queue else []
    if not pending:
        return {"popFromRunQueue": None}
    item = min(pending, key=lambda i: (i.priority if i.priority is not None else 2, i.number))
    item.state = "LEASED"
    return {"popFromRunQueue": {"runQueueItemId": item.id, "runSpec": _json(item.run_spec)}}


def _queue_item(ctx: Context, item_id: str) -> QueueItem:
    item = ctx.state.find_item(item_id)
    if item is None:
        raise GraphQLError(f"no run queue item {item_id}")
    return item


@resolver("ackRunQueueItem")
def _ack_run_queue_item(ctx: Context, v: Vars) -> dict[str, Any]:
    item = _queue_item(ctx, v["itemId"])
    success = item.state in ("PENDING", "LEASED")
    if success:
        item.state, item.associated_run_id = "CLAIMED", v["runId"]
    return {"ackRunQueueItem": {"success": success}}


@resolver("failRunQueueItem")
def _fail_run_queue_item(ctx: Context, v: Vars) -> dict[str, Any]:
    item = _queue_item(ctx, v["runQueueItemId"])
    item.state, item.error = "FAILED", v["message"]
    return {"failRunQueueItem": {"success": True}}
