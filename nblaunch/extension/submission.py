"""From parsed magic options to queued jobs: spec fields, dry runs, submit, wait.

Every job goes through ``nblaunch.api.submit_spec``, the same call
``nblaunch.submit()`` and the CLI end in. All specs of one magic call are
built (and so validated) before the first is queued.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nblaunch.api import Job, submit_spec
from nblaunch.extension import display
from nblaunch.home import home
from nblaunch.jobs.spec import JobSpec
from nblaunch.options import job_fields
from nblaunch.queue.states import State

__all__ = ["dry_run", "finish", "spec_fields", "submit_all"]

Item = tuple[JobSpec, dict[str, Any]]


def spec_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``JobSpec`` fields the shared job options set."""
    return job_fields(vars(args))


def submit_all(items: Sequence[Item]) -> list[Job]:
    """Queue every ``(spec, notebook)``; the bundle records the current environment."""
    return [submit_spec(spec, nb) for spec, nb in items]


def dry_run(items: Sequence[Item]) -> list[Path]:
    """Write each bundle to a temporary folder and print what it holds and what its
    first attempt would create on its queue's engine; queue nothing."""
    from nblaunch.api import dry_run as plan
    from nblaunch.extension.cells import describe
    from nblaunch.widgets.render import manifests_yaml

    folder = Path(tempfile.mkdtemp(prefix="nblaunch-dry-run-"))
    runs = plan(items, folder, home())
    print(f"dry run, nothing queued: {len(runs)} bundle(s) in {folder}")
    for (spec, nb), run in zip(items, runs, strict=True):
        print(
            f"\n{run.bundle}: {spec.name!r} on queue {spec.queue}, gpus={spec.gpus}, "
            f"nodes={spec.nodes}, strategy={spec.strategy}, params={spec.params}"
        )
        if len(items) == 1:
            print(describe(nb))
        if run.documents:
            print(f"\n# what the first attempt creates on queue {spec.queue!r}:")
            print(manifests_yaml(run.documents), end="")
    return [run.bundle for run in runs]


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
