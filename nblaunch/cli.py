"""The terminal face: ``nblaunch submit|jobs|show|logs|cancel|agent|queues``.

Errors a user can cause become one line on stderr and exit code 2, here and
nowhere else; a job that ends other than ``succeeded`` under ``--wait`` exits 1.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from nblaunch.errors import NBLaunchError

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
@click.option("--queue", "-q", default="local", show_default=True)
@click.option("--gpus", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--nodes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--strategy", type=click.Choice(["none", "ddp", "fsdp", "deepspeed"]), default="none")
@click.option(
    "--zero",
    type=click.IntRange(0, 3),
    default=None,
    help="DeepSpeed ZeRO stage (with --strategy deepspeed; default 2).",
)
@click.option(
    "--offload",
    is_flag=True,
    help="DeepSpeed: offload optimizer state (ZeRO-3: also parameters) to CPU.",
)
@click.option(
    "--priority",
    default="normal",
    show_default=True,
    help="low, normal, high, critical or an integer.",
)
@click.option("--name", help="Job name (default: the notebook's file name).")
@click.option("--max-retries", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--wait", is_flag=True, help="Wait for the job; exit 0 only if it succeeded.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def submit(
    notebook: Path,
    params: tuple[tuple[str, str], ...],
    raw: tuple[tuple[str, str], ...],
    params_file: Path | None,
    queue: str,
    gpus: int,
    nodes: int,
    strategy: str,
    zero: int | None,
    offload: bool,
    priority: str,
    name: str | None,
    max_retries: int,
    wait: bool,
    as_json: bool,
) -> None:
    """Queue NOTEBOOK as a job."""
    from nblaunch.client import submit as submit_job
    from nblaunch.jobs.params import load_params_file, resolve_type
    from nblaunch.jobs.spec import strategy_options

    values: dict[str, Any] = load_params_file(params_file) if params_file else {}
    values.update({k: resolve_type(v) for k, v in params})
    values.update(dict(raw))
    job = submit_job(
        notebook,
        params=values,
        queue=queue,
        gpus=gpus,
        priority=priority,
        name=name,
        nodes=nodes,
        strategy=strategy,
        max_retries=max_retries,
        **strategy_options(strategy, zero, offload),
    )
    if wait:
        _wait_with_progress(job, quiet=as_json)
    _print_job(job, as_json)
    if wait and job.state.value != "succeeded":
        sys.exit(EXIT_JOB_FAILED)


@cli.command()
@click.option("--queue", "-q")
@click.option(
    "--state",
    "-s",
    type=click.Choice(
        ["queued", "starting", "running", "succeeded", "failed", "preempted", "lost", "cancelled"]
    ),
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def jobs(queue: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs, newest first."""
    from nblaunch.client import Job, store

    rows = store().jobs(queue=queue, state=state, limit=limit)
    if as_json:
        click.echo(json.dumps([Job(r.id).to_dict() for r in rows], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from nblaunch.jobs.spec import priority_name

    table = Table("id", "name", "queue", "state", "priority", "gpus", "attempt", "submitted")
    for r in rows:
        table.add_row(
            r.id,
            r.name,
            r.queue,
            r.state.value,
            priority_name(r.priority),
            str(r.gpus),
            str(r.attempt),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.submitted_at)),
        )
    Console().print(table)


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(job_id: str, as_json: bool) -> None:
    """Show one job: state, attempts, error and events."""
    from nblaunch.client import Job

    job = Job(job_id)
    if as_json:
        data = job.to_dict()
        data["events"] = job.events()
        click.echo(json.dumps(data, indent=2))
        return
    data = job.to_dict()
    for key in (
        "id",
        "name",
        "queue",
        "state",
        "priority",
        "gpus",
        "attempt",
        "run_dir",
        "output_notebook",
    ):
        click.echo(f"{key:16} {data[key]}")
    cost = (
        "n/a (no price for this queue)" if data["cost_usd"] is None else f"${data['cost_usd']:.2f}"
    )
    hours = "?" if data["gpu_hours"] is None else f"{data['gpu_hours']:.3f}"
    click.echo(f"{'cost':16} {cost}, {hours} GPU-hours")
    if data["error"]:
        err = data["error"]
        click.echo(f"{'error':16} {err['ename']}: {err['evalue']} (cell {err['cell_index']})")
    for event in job.events():
        stamp = time.strftime("%H:%M:%S", time.localtime(event["time"]))
        click.echo(
            f"  {stamp} {event['from_state'] or '-':>9} -> {event['to_state']:9} {event['reason']}"
        )


@cli.command()
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
def logs(job_id: str, follow: bool) -> None:
    """Print what the job's latest attempt wrote to stdout and stderr."""
    from nblaunch.client import Job

    job = Job(job_id)
    if not follow:
        click.echo(job.logs(), nl=False)
        return
    offsets: dict[Path, int] = {}
    while True:
        row = job.row
        run_dir = row.run_dir()
        if run_dir is not None:
            for name in ("stdout.log", "stderr.log"):
                path = run_dir / "logs" / name
                if path.exists():
                    with open(path, "rb") as fh:
                        fh.seek(offsets.get(path, 0))
                        chunk = fh.read()
                    offsets[path] = offsets.get(path, 0) + len(chunk)
                    if chunk:
                        click.echo(chunk.decode(errors="replace"), nl=False)
        if row.final:
            return
        time.sleep(0.25)


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job: at once if queued, through the agent if running."""
    from nblaunch.client import Job

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
    from nblaunch.agent.lockfile import wake
    from nblaunch.client import Job, store
    from nblaunch.home import home

    job = Job(job_id)
    store().request_preempt(job.id)
    wake(home())
    click.echo(f"job {job.id}: preemption sent; it checkpoints, stops and is requeued to resume")


@cli.command()
@click.argument("job_id")
@click.option("--name", "-n", help="Only this metric.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of rows.")
def metrics(job_id: str, name: str | None, as_json: bool) -> None:
    """Print the metrics a job has logged: attempt, step, name, value, time."""
    from nblaunch.client import Job

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
def agent(queues: tuple[str, ...], status: bool, idle_timeout: float | None, as_json: bool) -> None:
    """Run the agent in the foreground (or report the live one with --status)."""
    from nblaunch.home import home

    if status:
        _agent_status(home(), as_json)
        return
    import logging

    from nblaunch.agent.loop import Agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    Agent(home(), list(queues) or None, idle_timeout).run()


def _agent_status(root: Path, as_json: bool) -> None:
    from nblaunch.agent.lockfile import holder_pid
    from nblaunch.client import store

    pid = holder_pid(root)
    latest = store(root).latest_agent()
    live = latest if latest and pid == latest.pid else None
    data = {
        "alive": pid is not None,
        "pid": pid,
        "home": str(root),
        "last_heartbeat": live.heartbeat_at if live else None,
        "heartbeat_age_s": round(time.time() - live.heartbeat_at, 3) if live else None,
        "queues": list(live.queues) if live else [],
        "started_at": live.started_at if live else None,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif pid is None:
        click.echo(f"no agent is running for {root}")
    else:
        click.echo(
            f"agent pid {pid} serving {', '.join(data['queues'])}; "
            f"last heartbeat {data['heartbeat_age_s']}s ago"
        )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def queues(as_json: bool) -> None:
    """List the configured queues and what is in them."""
    from nblaunch.client import Queue, store

    rows = []
    db = store()
    for queue in Queue.all():
        jobs_in = db.jobs(queue=queue.name)
        rows.append(
            {
                **queue.config.model_dump(exclude_none=True),
                "gpu_slots": queue.gpu_slots(),
                "queued": sum(1 for j in jobs_in if j.state.value == "queued"),
                "running": sum(1 for j in jobs_in if j.state.value in ("starting", "running")),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(
            f"{row['name']:12} runner={row['runner']:10} gpus={row['gpu_slots']} "
            f"queued={row['queued']} running={row['running']}"
        )


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


def _wait_with_progress(job: Any, quiet: bool) -> None:
    last = None
    while True:
        row = job.row
        if row.state != last and not quiet:
            click.echo(job.status_line(), err=True)
            last = row.state
        if row.final:
            return
        time.sleep(0.05)


def _print_job(job: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(job.to_dict(), indent=2))
        return
    click.echo(job.status_line())
    output = job.output_notebook
    if output is not None and job.row.final:
        click.echo(f"output notebook: {output}")


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
        command = (
            f" {exc.ctx.command_path.split(' ', 1)[1]}"
            if getattr(exc, "ctx", None) and " " in exc.ctx.command_path
            else ""
        )
        click.echo(
            f"nblaunch: error: {exc.format_message()} (see `nblaunch{command} --help`)", err=True
        )
        sys.exit(EXIT_USAGE)
