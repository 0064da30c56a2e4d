"""The magics: ``%%launch``, ``%%launch_setup``, ``%launch_notebook`` and the queue views.

Each magic parses its line, builds ``JobSpec``s and calls the same
``submit_spec`` the API and CLI use. ``usage_errors`` is the one place an
``NBLaunchError`` becomes IPython's ``UsageError``: one line, no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.utils.process import arg_split

from nblaunch.errors import JobFailedError, NBLaunchError, SpecError
from nblaunch.extension import capture, cells, display, names, submission, sweep
from nblaunch.extension.options import collect_params, job_arguments, parse_line
from nblaunch.extension.setup_cells import setup_cells
from nblaunch.jobs.spec import JobSpec
from nblaunch.queue.states import State

__all__ = ["LaunchMagics", "register", "usage_errors"]


@contextmanager
def usage_errors() -> Iterator[None]:
    """Turn an ``NBLaunchError`` into a one-line ``UsageError``.

    ``JobFailedError`` passes through: its ``_render_traceback_`` shows the
    failed job's own traceback, which is what ``--wait`` should end with.
    """
    try:
        yield
    except JobFailedError:
        raise
    except NBLaunchError as exc:
        raise UsageError(" ".join(str(exc).split())) from None


@magics_class
class LaunchMagics(Magics):
    """Submit notebook cells and notebooks as queued jobs, and watch the queue."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.setup = setup_cells(shell)
        self.ip: InteractiveShell = shell  # ``Magics.shell`` is typed Optional

    @magic_arguments()
    @job_arguments
    @argument(
        "--force",
        action="store_true",
        help="submit even if the cell uses names only this kernel defines",
    )
    @cell_magic
    def launch(self, line: str, cell: str) -> Any:
        """Run this cell as a queued job and return its ``nblaunch.Job``.

        The job's notebook is a ``parameters`` cell with the -p / --params
        values, the cells recorded with %%launch_setup, then this cell's body;
        it runs top to bottom in a fresh kernel. A cell that uses a name only
        this kernel defines is refused (mark its cell with %%launch_setup).
        """
        with usage_errors():
            args = parse_line(self.launch, line, "%%launch")
            params = collect_params(args, self.ip.user_ns)
            if not cell.strip():
                raise SpecError(
                    "%%launch: the cell is empty; write the code to run under the %%launch line"
                )
            origin = capture.origin(self.ip.user_ns, self.setup.running_cell_id(cell))
            nb = cells.job_notebook(cell, self.setup, params, origin.metadata())
            if not args.force:
                missing = names.kernel_only_names(
                    cells.code_cells(nb),
                    self.ip.user_ns,
                    self.ip.user_ns_hidden,
                    self.ip.transform_cell,
                )
                if missing:
                    raise names.refusal(missing)
            spec = JobSpec.build(
                name=args.name or origin.stem,
                params=params,
                notebook=origin.label,
                submit_dir=str(origin.submit_dir),
                **submission.spec_fields(args),
            )
            if args.dry_run:
                return submission.dry_run([(spec, nb)])[0]
            jobs = submission.submit_all([(spec, nb)])
            return submission.finish(self.ip, jobs, args, single=True)

    @magic_arguments()
    @argument("name", nargs="?", help="key of the setup cell (default: the frontend's cell id)")
    @argument("--list", action="store_true", help="list the recorded setup cells")
    @argument("--clear", action="store_true", help="forget every recorded setup cell")
    @line_cell_magic
    def launch_setup(self, line: str, cell: str | None = None) -> None:
        """Run this cell now and record it for every later %%launch from this kernel.

        Running an edited version again replaces the recorded one (same name,
        or same frontend cell). As a line magic: --list or --clear.
        """
        with usage_errors():
            args = parse_line(self.launch_setup, line, "%launch_setup")
            if args.clear:
                print(f"forgot {self.setup.clear()} setup cell(s)")
            if cell is not None:
                self._record_setup(cell, args.name)
            elif args.name:
                raise SpecError(
                    f"%launch_setup {args.name}: no cell to record; use %%launch_setup (two %) "
                    "as the first line of the cell"
                )
            if args.list or (cell is None and not args.clear):
                print(self._setup_listing())

    def _record_setup(self, cell: str, name: str | None) -> None:
        if not cell.strip():
            raise SpecError("%%launch_setup: the cell is empty; write the setup code under it")
        cell_id = self.setup.running_cell_id(cell)
        result = self.ip.run_cell(cell, store_history=False)
        if not result.success:
            error = result.error_in_exec or result.error_before_exec
            raise SpecError(
                f"%%launch_setup: the cell raised {type(error).__name__}, so it was not "
                "recorded; fix it and run it again"
            )
        self.setup.record(cell, name=name, cell_id=cell_id)

    def _setup_listing(self) -> str:
        recorded = list(self.setup)
        if not recorded:
            return "no setup cells recorded; mark cells with %%launch_setup"
        lines = [f"{len(recorded)} setup cell(s), in the order every %%launch runs them:"]
        for index, cell in enumerate(recorded, 1):
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            count = len(cell.source.splitlines())
            lines.append(f"{index:3}. {cell.label}: {first[:60]} ({count} line(s))")
        return "\n".join(lines)

    @magic_arguments()
    @argument("path", help="the .ipynb to submit")
    @job_arguments
    @argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="a sweep axis, repeatable: one job per point of the grid of all axes",
    )
    @line_magic
    def launch_notebook(self, line: str) -> Any:
        """Submit a whole notebook as a job, or a sweep as one job per grid point.

        Sweep jobs share one sweep id; --name is their pattern ({lr} fields
        are filled from each point, {i} is its index; write {{lr}} when the
        kernel has its own lr) and defaults to the notebook's name.
        """
        from nblaunch.jobs.bundle import read_notebook

        with usage_errors():
            args = parse_line(self.launch_notebook, line, "%launch_notebook")
            path = Path(args.path).expanduser().resolve()
            nb = read_notebook(path)
            params = collect_params(args, self.ip.user_ns)
            axes = [sweep.parse_axis(text) for text in args.sweep]
            points = sweep.grid(params, axes)
            sweep_id = sweep.new_sweep_id() if axes else None
            pattern = args.name or path.stem
            specs = [
                JobSpec.build(
                    name=sweep.point_name(pattern, point, axes, index) if axes else pattern,
                    params=point,
                    notebook=str(path),
                    submit_dir=str(path.parent),
                    sweep_id=sweep_id,
                    **submission.spec_fields(args),
                )
                for index, point in enumerate(points)
            ]
            items = [(spec, nb) for spec in specs]
            if args.dry_run:
                bundles = submission.dry_run(items)
                return bundles[0] if not axes else bundles
            jobs = submission.submit_all(items)
            return submission.finish(self.ip, jobs, args, single=not axes, sweep_id=sweep_id)

    @magic_arguments()
    @argument("--queue", "-q", help="only this queue")
    @argument("--state", "-s", choices=[s.value for s in State], help="only this state")
    @argument("--limit", type=int, default=20, help="newest N jobs (default 20)")
    @line_magic
    def launch_jobs(self, line: str) -> None:
        """List jobs, newest first."""
        from nblaunch.api import jobs
        from nblaunch.widgets.render import jobs_table

        with usage_errors():
            args = parse_line(self.launch_jobs, line, "%launch_jobs")
            print(jobs_table(jobs(queue=args.queue, state=args.state, limit=args.limit)))

    @magic_arguments()
    @argument("ids", nargs="+", metavar="ID", help="job ids")
    @line_magic
    def launch_cancel(self, line: str) -> None:
        """Cancel jobs: a queued job at once, a running one through its agent."""
        from nblaunch.api import Job

        with usage_errors():
            args = parse_line(self.launch_cancel, line, "%launch_cancel")
            jobs = [Job(job_id) for job_id in args.ids]  # every id checked before any cancel
            for job in jobs:
                job.check_cancel()  # and none has ended
            for job in jobs:
                state = job.cancel()
                note = "" if state is State.CANCELLED else ": cancel requested, the agent stops it"
                print(f"job {job.id} ({job.name}) {state}{note}")

    @magic_arguments()
    @argument("id", metavar="ID", help="job id")
    @argument("--attempt", type=int, help="attempt number (default: the latest)")
    @line_magic
    def launch_logs(self, line: str) -> None:
        """Print what a job's attempt wrote to stdout and stderr."""
        from nblaunch.api import Job

        with usage_errors():
            args = parse_line(self.launch_logs, line, "%launch_logs")
            job = Job(args.id)
            text = job.logs(args.attempt)
            print(
                text if text else f"job {job.id} has no output yet ({job.state})",
                end="" if text else "\n",
            )

    @line_magic
    def launch_estimate(self, line: str) -> Any:
        """Estimate time, cost and memory fit of a training run: the options of
        ``nblaunch estimate``; ``--params`` / ``--tokens`` may name a model,
        config or dataset in the kernel. Shows the interactive estimate where
        widgets render, text elsewhere (``--json``: one JSON object)."""
        from nblaunch.jobs.estimate_args import (
            estimate_from_options,
            format_estimate,
            parse_estimate_args,
        )

        with usage_errors():
            options = parse_estimate_args(_split(line), prog="%launch_estimate")
            result = estimate_from_options(options, namespace=self.ip.user_ns)
            if options.get("json"):
                print(json.dumps(result.to_dict(), indent=2))
                return None
            widget = display.widgets_api("estimate_widget_from_options")
            if widget is not None and display.widget_frontend():
                return widget(options, self.ip.user_ns)
            print(format_estimate(result))
            return None

    @magic_arguments()
    @argument("name", nargs="?", default="local", help="queue name (default local)")
    @line_magic
    def launch_queue(self, line: str) -> Any:
        """Show a queue: its live status table where widgets render, text elsewhere."""
        from nblaunch.api import Queue
        from nblaunch.widgets.render import queue_text

        with usage_errors():
            args = parse_line(self.launch_queue, line, "%launch_queue")
            queue = Queue(args.name)
            status = display.widgets_api("queue_status")
            if status is not None and display.widget_frontend():
                return status(args.name)
            print(queue_text(queue.snapshot(limit=20)))
            return None


def _split(line: str) -> list[str]:
    try:
        return arg_split(line, posix=True, strict=True)
    except ValueError as exc:
        raise SpecError(
            f"%launch_estimate: cannot split the line ({exc}); check its quotes"
        ) from None


def register(ipython: InteractiveShell) -> None:
    """Register the magics with ``ipython``; ``%load_ext nblaunch`` calls this."""
    ipython.register_magics(LaunchMagics)
    display.install(ipython)
