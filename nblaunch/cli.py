"""The terminal face: ``nblaunch submit|jobs|show|logs|cancel|agent|queues|export|sync``.

Errors a user can cause become one line on stderr and exit code 2, here and
nowhere else; a job that ends other than ``succeeded`` under ``--wait`` exits 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from nblaunch.errors import NBLaunchError
from nblaunch.options import click_job_options, job_fields
from nblaunch.queue.states import ACTIVE, FINAL, State

if TYPE_CHECKING:
    from nblaunch.api import Job

EXIT_USAGE = 2
EXIT_JOB_FAILED = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nblaunch")
def cli() -> None:
    """Run notebooks as queued, retryable jobs and watch them."""


@cli.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option(
    "-p",
    "--parameters",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Parameter (papermill's rules: int, float, bool, None, else string).",
)
@click.option(
    "-r",
    "--parameters-raw",
    "raw",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Parameter passed as a raw string.",
)
@click.option(
    "-f",
    "--parameters-file",
    "params_file",
    type=click.Path(path_type=Path),
    help="YAML file of parameters.",
)
@click_job_options
@click.option("--wait", is_flag=True, help="Wait for the job; exit 0 only if it succeeded.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print, as YAML, what the job's first attempt would create on its queue's engine "
    "(Kubernetes manifests, a Slurm batch script); queue and write nothing.",
)
def submit(
    notebook: Path,
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    params_file: Path | None,
    wait: bool,
    as_json: bool,
    dry_run: bool,
    **options: Any,
) -> None:
    """Queue NOTEBOOK as a job; its folder travels with it as its working directory."""
    from nblaunch.api import notebook_spec, submit_spec
    from nblaunch.jobs.params import load_params_file, resolve_type

    values: dict[str, Any] = load_params_file(params_file) if params_file else {}
    values.update({k: resolve_type(v) for k, v in params})
    values.update(dict(raw))
    spec, nb = notebook_spec(notebook, values, name=options["name"], **job_fields(options))
    if dry_run:
        _print_dry_run(spec, nb)
        return
    job = submit_spec(spec, nb)
    if wait:
        _wait_with_progress(job, quiet=as_json)
    _print_job(job, as_json)
    if wait and job.state.value != "succeeded":
        sys.exit(EXIT_JOB_FAILED)


def _print_dry_run(spec: Any, nb: dict[str, Any]) -> None:
    import tempfile

    from nblaunch.api import dry_run
    from nblaunch.widgets.render import manifests_yaml

    with tempfile.TemporaryDirectory(prefix="nblaunch-dry-run-") as folder:
        (run,) = dry_run([(spec, nb)], Path(folder))
    if not run.documents:
        click.echo(
            f"# queue {spec.queue!r} runs jobs on this machine: nothing is created on an "
            "engine. Nothing was queued."
        )
        return
    click.echo(f"# dry run: what the first attempt creates on queue {spec.queue!r}; nothing queued")
    click.echo(manifests_yaml(run.documents), nl=False)


@cli.command()
@click.option("--queue", "-q")
@click.option("--state", "-s", type=click.Choice([s.value for s in State]))
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def jobs(queue: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    from nblaunch.api import jobs as list_jobs
    from nblaunch.widgets.render import jobs_table

    snaps = list_jobs(queue=queue, state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in snaps], indent=2))
        return
    click.echo(jobs_table(snaps))


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(job_id: str, as_json: bool) -> None:
    """Show one job: state, attempts, error and events."""
    from nblaunch.api import Job
    from nblaunch.widgets.render import job_details_text

    snap = Job(job_id).snapshot(metrics=False)
    if as_json:
        data = snap.to_dict()
        data["events"] = [e.__dict__ for e in snap.events]
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(job_details_text(snap))


@cli.command()
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
def logs(job_id: str, follow: bool) -> None:
    """Print what the job's latest attempt wrote to stdout and stderr."""
    from nblaunch.api import Job

    job = Job(job_id)
    if not follow:
        click.echo(job.logs(), nl=False)
        return
    offsets: dict[Path, int] = {}
    while True:
        final = job.state in FINAL  # read first: the last lines are printed after the end
        for path in job.log_files():
            if path.exists():
                with open(path, "rb") as fh:
                    fh.seek(offsets.get(path, 0))
                    chunk = fh.read()
                offsets[path] = offsets.get(path, 0) + len(chunk)
                if chunk:
                    click.echo(chunk.decode(errors="replace"), nl=False)
        if final:
            return
        time.sleep(0.25)


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: at once if queued, through the agent if running."""
    from nblaunch.api import Job

    job = Job(job_id)
    state = job.cancel()
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
    elif state.value == "cancelled":
        click.echo(f"job {job.id} cancelled")
    else:
        click.echo(f"job {job.id} is {state}; cancel requested (the agent stops it)")


@cli.command()
@click.argument("job_id")
def preempt(job_id: str) -> None:
    """Preempt a running job as a spot reclaim would (SIGTERM); it checkpoints and requeues."""
    from nblaunch.api import Job

    job = Job(job_id)
    job.preempt()
    click.echo(f"job {job.id}: preemption sent; it checkpoints, stops and is requeued to resume")


@cli.command()
@click.argument("job_id")
@click.option("--name", "-n", help="Only this metric.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows.")
def metrics(job_id: str, name: str | None, as_json: bool) -> None:
    """Print the metrics a job has logged: attempt, step, name, value, time."""
    from nblaunch.api import Job

    rows = Job(job_id).metrics(name)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        step = "-" if row["step"] is None else row["step"]
        click.echo(f"{row['attempt']:>3} {step:>8} {row['name']:32} {row['value']:.6g}")


@cli.command()
@click.option("--queue", "-q", "queues", multiple=True, help="Serve only these queues.")
@click.option("--status", is_flag=True, help="Report the live agent instead of starting one.")
@click.option("--idle-timeout", type=float, default=None, help="Exit after this many idle seconds.")
@click.option("--json", "as_json", is_flag=True, help="With --status: print one JSON object.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve every queue's depth for Prometheus at http://HOST:PORT/metrics "
    "(what `nblaunch queues --prometheus` prints; 0: any free port).",
)
@click.option(
    "--metrics-host",
    default="0.0.0.0",
    show_default=True,
    help="Address the metrics endpoint listens on.",
)
def agent(
    queues: tuple[str, ...],
    status: bool,
    idle_timeout: float | None,
    as_json: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run the agent in the foreground (or report the live one with --status)."""
    from nblaunch.home import home

    if status:
        _agent_status(home(), as_json)
        return
    import logging

    from nblaunch.agent.loop import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    Agent(
        home(),
        list(queues) or None,
        idle_timeout,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    ).run()


def _agent_status(root: Path, as_json: bool) -> None:
    from nblaunch.agent.status import agent_status

    data = agent_status(root)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif not data["alive"]:
        what = (
            f"agent pid {data['pid']} is hung (no heartbeat for {data['heartbeat_age_s']}s)"
            if data["hung"]
            else f"no agent is running for {root}"
        )
        waiting = (
            "; jobs are waiting: the next nblaunch command starts one"
            if data["active_jobs"]
            else ""
        )
        click.echo(what + waiting)
    else:
        click.echo(
            f"agent pid {data['pid']} serving {', '.join(data['queues'])}; "
            f"last heartbeat {data['heartbeat_age_s']}s ago"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.option(
    "--prometheus",
    is_flag=True,
    help="Print each queue's depth in the Prometheus text format.",
)
def queues(as_json: bool, prometheus: bool) -> None:
    """List the configured queues and what is in them.

    --json adds each queue's depth: jobs by state, gpus_queued, gpus_in_use,
    oldest_queued_age_s and desired_workers = ceil((gpus_queued + gpus_in_use) /
    gpus_per_worker), at least 1 while any job is queued or running, clamped to
    the queue's min_workers..max_workers.
    """
    from nblaunch.api import Queue

    if as_json and prometheus:
        raise click.UsageError("--json and --prometheus print different formats; pick one")
    found = [(queue, queue.depth()) for queue in Queue.all()]
    if prometheus:
        from nblaunch.agent.queue_metrics import prometheus_text

        click.echo(prometheus_text([depth for _, depth in found]), nl=False)
        return
    rows = [
        {
            **queue.options.model_dump(mode="json", exclude_none=True),
            "gpu_slots": queue.gpu_slots(),
            "queued": depth.counts["queued"],
            "running": sum(depth.counts[s.value] for s in ACTIVE),
            **depth.to_dict(),
        }
        for queue, depth in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['name']:12} runner={row['runner']:10} gpus={row['gpu_slots']} "
            f"queued={row['queued']} running={row['running']} "
            f"desired_workers={row['desired_workers']}"
        )


@cli.command()
@click.argument("job_id")
@click.option(
    "--wandb-job",
    "wandb_job",
    type=click.Path(path_type=Path),
    required=True,
    metavar="DIR",
    help="Write the job as a W&B Launch job here (a new folder): wandb-job.json, "
    "requirements.frozen.txt and the bundle it runs.",
)
def export(job_id: str, wandb_job: Path) -> None:
    """Write a job in another tool's format (a W&B Launch job)."""
    from nblaunch.api import Job

    folder = Job(job_id).export_wandb_job(wandb_job)
    click.echo(f"wrote W&B job {folder} (entrypoint: python -m nblaunch.runtime .)")


@cli.command()
@click.argument("job_id")
@click.option("--entity", "-e", help="W&B entity (default: the run's own, else your default).")
@click.option("--project", "-p", help="W&B project (default: the run's own).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sync(job_id: str, entity: str | None, project: str | None, as_json: bool) -> None:
    """Upload a job's offline W&B runs (one per attempt) as one run whose steps continue."""
    from nblaunch.api import Job

    report = Job(job_id).sync_wandb(entity, project)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"W&B run {report.run}:")
    for seg in report.segments:
        steps = "" if seg.first_step is None else f", steps {seg.first_step}-{seg.last_step}"
        rows = f" ({seg.rows} rows{steps})" if seg.rows else ""
        click.echo(f"  attempt {seg.attempt}: {seg.how}{rows}")
        if seg.not_carried:
            click.echo(f"    not carried (wandb cannot merge offline runs): {seg.not_carried}")


# The flags live in one argparse parser that %launch_estimate shares, so click passes them through.
@cli.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def estimate(args: tuple[str, ...]) -> None:
    """Estimate time, cost (on-demand, spot) and memory fit of a training run."""
    from nblaunch.jobs.estimate_args import (
        estimate_from_options,
        format_estimate,
        parse_estimate_args,
    )

    options = parse_estimate_args(args, prog="nblaunch estimate")
    result = estimate_from_options(options)
    text = json.dumps(result.to_dict(), indent=2) if options["json"] else format_estimate(result)
    click.echo(text)


def _wait_with_progress(job: Job, quiet: bool) -> None:
    last = None
    while True:
        state = job.state
        if state in FINAL:
            return  # the final line goes to stdout, once
        if state != last and not quiet:
            click.echo(job.status_line(), err=True)
            last = state
        time.sleep(0.05)


def _print_job(job: Job, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
        return
    click.echo(job.status_line())
    snap = job.snapshot(metrics=False)
    if snap.output_notebook is not None and snap.final:
        click.echo(f"output notebook: {snap.output_notebook}")


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="nblaunch", standalone_mode=False)
    except NBLaunchError as exc:
        click.echo(f"nblaunch: error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        click.echo("nblaunch: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        command = (
            f" {ctx.command_path.split(' ', 1)[1]}"
            if ctx is not None and " " in ctx.command_path
            else ""
        )
        click.echo(
            f"nblaunch: error: {exc.format_message()} (see `nblaunch{command} --help`)", err=True
        )
        sys.exit(EXIT_USAGE)
