"""The batch script and sbatch arguments, without a cluster: every value reaches bash
as data, priorities become nice values or QOS, and the script runs the attempt its
restart count names."""

from __future__ import annotations

import subprocess
from pathlib import Path

from nblaunch.runners.slurm.client import _from_scontrol
from nblaunch.runners.slurm.options import SlurmOptions
from nblaunch.runners.slurm.script import BatchJob, batch_script, sbatch_args

NASTY = 'it\'s "q" $HOME `id` $(echo x); rm -rf / && \\ \n2nd line'


def options(**extra: object) -> SlurmOptions:
    return SlurmOptions.model_validate({"name": "hpc", "run_root": "/shared/runs", **extra})


def job(tmp_path: Path, **extra: object) -> BatchJob:
    fields: dict[str, object] = {
        "job_id": "ab12cd34", "name": NASTY, "attempt": 3, "job_dir": tmp_path / "job dir",
        "bundle": tmp_path / "job dir" / "bundle", "gpus": 2, "nodes": 1, "priority": 10,
        "env": {"NBLAUNCH_JOB_ID": "ab12cd34", "TRICKY": NASTY},
    }  # fmt: skip
    fields.update(extra)
    return BatchJob(**fields)  # type: ignore[arg-type]


def test_the_script_hands_every_value_to_bash_as_data(tmp_path: Path) -> None:
    # The runtime is replaced by a printer of what it would get.
    printer = tmp_path / "printer.sh"
    printer.write_text('#!/bin/bash\nprintf "%s\\n" "$@" "$TRICKY" "$NBLAUNCH_ATTEMPT" "$PWD"\n')
    printer.chmod(0o755)
    script = batch_script(job(tmp_path), options(python=str(printer)))
    path = tmp_path / "batch.sh"
    path.write_text(script)
    env = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "2"}
    done = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "job dir" / "attempts" / "5"  # attempt 3, restarted twice
    lines = (run / "logs" / "stdout.log").read_text().split("\n")
    assert lines[:3] == ["-m", "nblaunch.runtime", str(tmp_path / "job dir" / "bundle")]
    assert lines[3] == str(run)
    assert "\n".join(lines[4:6]) == NASTY
    assert lines[6:8] == ["5", str(run)]
    assert "attempt 5, Slurm job 77 (restart 2)" in (run / "logs" / "stderr.log").read_text()


def test_sbatch_arguments_carry_resources_signal_and_priority(tmp_path: Path) -> None:
    args = sbatch_args(
        job(tmp_path),
        options(
            partition="gpu", account="lab", time_limit="2h", signal_grace_s=300,
            gpu_type="a100", cpus_per_gpu=8, mem_per_gpu="40G",
            extra_sbatch_args=["--constraint=ib", "--exclusive"],
        ),
    )  # fmt: skip
    assert args[0] == "--job-name=it_s_q_HOME_id_echo_x_rm_-rf_2nd_line"
    for expected in (
        "--requeue", "--open-mode=append", "--signal=B:TERM@300", "--nodes=1",
        "--gres=gpu:a100:2", "--cpus-per-gpu=8", "--mem-per-gpu=40G", "--partition=gpu",
        "--account=lab", "--time=120", "--nice=100", "--comment=nblaunch:ab12cd34:3",
    ):  # fmt: skip
        assert expected in args, (expected, args)
    assert args[-2:] == ["--constraint=ib", "--exclusive"]
    several = sbatch_args(job(tmp_path, nodes=2, job_dir=tmp_path / "100%"), options())
    # srun kills its tasks on a SIGTERM of its own: several nodes signal the steps instead.
    assert "--signal=TERM@120" in several and "--nodes=2" in several
    assert f"--output={tmp_path}/100%%/slurm-%j.out" in several


def test_a_cpu_job_sees_no_gpu_and_the_setup_line_runs_with_unset_variables(
    tmp_path: Path,
) -> None:
    script = batch_script(
        job(tmp_path, gpus=0), options(setup='echo "setup sees ${UNSET_BY_ANYONE:-nothing}"')
    )
    assert "export CUDA_VISIBLE_DEVICES=\n" in script
    path = tmp_path / "batch.sh"
    path.write_text("echo ".join(script.rsplit("exec ", 1)))  # print the runtime's command
    done = subprocess.run(
        ["bash", str(path)],
        env={"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "9", "CUDA_VISIBLE_DEVICES": "0"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    out = (tmp_path / "job dir" / "attempts" / "3" / "logs" / "stdout.log").read_text()
    assert "setup sees nothing" in out


def test_priority_levels_map_to_nice_or_qos() -> None:
    plain = options()
    assert plain.priority_args(10) == ["--nice=100"]  # high
    assert plain.priority_args(5) == ["--nice=200"]  # between normal and high: normal
    assert plain.priority_args(-50) == ["--nice=300"]  # below low: low
    assert plain.priority_args(1000) == ["--nice=0"]  # critical
    qos = options(priority_qos={"high": "urgent"})
    assert qos.priority_args(10) == ["--qos=urgent"]
    assert qos.priority_args(0) == ["--nice=200"]


def test_scontrol_lines_are_read_with_values_that_hold_spaces() -> None:
    job = _from_scontrol(
        "JobId=42 JobName=my run Priority=9800 JobState=PENDING Reason=Priority "
        "Requeue=1 Restarts=2 ExitCode=0:15 Comment=nblaunch:ab:1 Power="
    )
    assert (job.id, job.state, job.reason, job.restarts) == ("42", "PENDING", "Priority", 2)
    assert job.exit == (0, 15)
    assert job.comment == "nblaunch:ab:1"
