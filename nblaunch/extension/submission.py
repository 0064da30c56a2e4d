"""From parsed magic options to queued jobs: spec fields, dry runs, submit, wait.

Every job goes through ``nblaunch.client.submit_spec``, the same call
``nblaunch.submit()`` and the CLI end in. All specs of one magic call are
built (and so validated) before the first is queued.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nblaunch.client import Job, submit_spec
from nblaunch.extension import display
from nblaunch.jobs.spec import JobSpec, parse_priority, strategy_options
from nblaunch.queue.states import State

__all__ = ["dry_run", "finish", "spec_fields", "submit_all"]

Item = tuple[JobSpec, dict[str, Any]]


def spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``JobSpec`` fields the shared job options set."""
    return {
        "queue": args.queue,
        "gpus": args.gpus,
        "nodes": args.nodes,
        "strategy": args.strategy,
        "priority": parse_priority(args.priority),
        "max_retries": args.max_retries,
        **strategy_options(args.strategy, args.zero, args.offload),
    }


def submit_all(items: Sequence[Item]) -> list[Job]:
    """Queue every ``(spec, notebook)``; the bundle records the current environment."""
    return [submit_spec(spec, nb) for spec, nb in items]


def dry_run(items: Sequence[Item]) -> list[Path]:
    """Write each bundle to a temporary folder, print what it holds, queue nothing."""
    from nblaunch.extension.cells import describe
    from nblaunch.home import home
    from nblaunch.jobs.bundle import check_notebook, write_bundle
    from nblaunch.queue.config import get_queue

    root = home()
    folder = Path(tempfile.mkdtemp(prefix="nblaunch-dry-run-"))
    bundles = []
    for index, (spec, nb) in enumerate(items):
        check_notebook(nb, spec.notebook)
        get_queue(root, spec.queue)
        name = "job" if len(items) == 1 else f"job-{index}"
        bundles.append(write_bundle(folder / name, spec, nb))
    print(f"dry run, nothing queued: {len(bundles)} bundle(s) in {folder}")
    for (spec, nb), bundle in zip(items, bundles, strict=True):
        print(
            f"\n{bundle}: {spec.name!r} on queue {spec.queue}, gpus={spec.gpus}, "
            f"nodes={spec.nodes}, strategy={spec.strategy}, params={spec.params}"
        )
        if len(items) == 1:
            print(describe(nb))
    return bundles


def finish(
    shell: Any,
    jobs: list[Job],
    args: argparse.Namespace,
    *,
    single: bool,
    sweep_id: str | None = None,
) -> Job | list[Job]:
    """Bind ``--out``, show the jobs, ``--wait`` for them; return what the magic returns.

    Under ``--wait`` a job that does not succeed raises its ``JobFailedError``,
    whose traceback is the job's own.
    """
    result: Job | list[Job] = jobs[0] if single else jobs
    if args.out:
        shell.user_ns[args.out] = result
    live = not args.no_widget and display.widget_frontend()
    if args.no_widget:
        for job in jobs:
            display.show_as_text(job)
    elif live and (args.wait or sweep_id):
        display.show_live(jobs, sweep_id)
        for job in jobs:  # the live view is up; the returned value adds one status line
            display.show_as_text(job)
    if not args.wait:
        return result
    if not live:
        what = f"job {jobs[0].id}" if single else f"{len(jobs)} jobs"
        print(f"waiting for {what}; interrupting stops the wait, not the job")
    try:
        for job in jobs:
            job.wait()
    except KeyboardInterrupt:
        ids = " ".join(job.id for job in jobs)
        print(f"stopped waiting; the job(s) keep running (%launch_cancel {ids} stops them)")
        return result
    for job in jobs:
        if job.state is not State.SUCCEEDED:
            job.result()  # raises the job's JobFailedError
    return result
