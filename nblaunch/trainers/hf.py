"""HF Trainer support: metrics, preemption-safe stops, resume, checkpoint artifacts.

Inside a job the runtime patches ``transformers.Trainer`` on import (see
``nblaunch.runtime.kernel``), so an unmodified HF notebook gets all of this.
The pieces are public for explicit use::

    from nblaunch.trainers.hf import NBLaunchCallback, training_args
    args = training_args(output_dir="out", max_steps=100)   # fills DeepSpeed / FSDP
    Trainer(model, args, callbacks=[NBLaunchCallback()], ...)
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

from nblaunch.errors import MissingDependencyError, SpecError
from nblaunch.runtime import kernel
from nblaunch.runtime.contract import (
    MAX_STEPS_METRIC,
    PERF_ACHIEVED_FLOPS,
    PERF_MODEL_PARAMS,
    PERF_RUNTIME_S,
    PERF_TRAIN_TOKENS,
    Env,
)
from nblaunch.runtime.metrics import log

try:
    from transformers import TrainerCallback, TrainingArguments
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        "nblaunch.trainers.hf needs transformers: pip install 'nblaunch[train]'"
    ) from None


# How long after SIGTERM training may run on to reach a logging step (spot
# reclaims give 30 s to 2 min of notice; the checkpoint must fit in it).
PREEMPT_DEADLINE_S = float(os.environ.get(Env.PREEMPT_DEADLINE_S, "20"))


class NBLaunchCallback(TrainerCallback):  # type: ignore[misc]
    """Reports metrics to the job, stops with a checkpoint on preemption, and logs
    each saved checkpoint as a wandb ``model`` artifact."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._non_embedding_params: int | None = None
        self._first_step = 0
        self._warm_step = 1
        self._warm_mark: tuple[int, float] | None = None

    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any
    ) -> None:
        kernel.cooperating(+1)
        kernel.set_trainer_logging(True)
        # Throughput is measured after the first tenth of the steps: the first steps
        # (thread pools, allocator, caches) are slower and belong to fixed overhead.
        self._first_step = state.global_step
        self._warm_step = self._first_step + max(1, (state.max_steps - self._first_step) // 10)
        self._warm_mark = None
        if state.is_world_process_zero:
            numbers: dict[str, Any] = {MAX_STEPS_METRIC: state.max_steps}
            if model is not None and hasattr(model, "num_parameters"):
                numbers[PERF_MODEL_PARAMS] = model.num_parameters()
                self._non_embedding_params = model.num_parameters(exclude_embeddings=True)
            log(numbers, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        kernel.cooperating(-1)
        kernel.set_trainer_logging(False)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        numbers = dict(logs)
        if logs.get("train_runtime") and state.total_flos and state.global_step:
            numbers.update(self._throughput(state, float(logs["train_runtime"])))
        log(numbers, step=state.global_step)

    def _throughput(self, state: Any, runtime: float) -> dict[str, float]:
        """This attempt's FLOPs, tokens and steady-state training time, for calibration."""
        steps = state.global_step - self._first_step
        if self._warm_mark is not None and state.global_step > self._warm_mark[0]:
            step, at = self._warm_mark
            runtime = (time.monotonic() - at) / (state.global_step - step) * steps
        # total_flos counts every attempt of a resumed run; runtime only this one.
        flops = state.total_flos * steps / state.global_step
        numbers = {PERF_ACHIEVED_FLOPS: flops / runtime, PERF_RUNTIME_S: runtime}
        if self._non_embedding_params:
            # HF counts 6·N·T with N excluding embeddings; T lets estimates use all of N.
            numbers[PERF_TRAIN_TOKENS] = flops / (6 * self._non_embedding_params)
        return numbers

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._warm_mark is None and state.global_step >= self._warm_step:
            self._warm_mark = (state.global_step, time.monotonic())
        if not _all_ranks_agree(kernel.flagged()):
            return
        if self._deadline is None:
            self._deadline = time.monotonic() + PREEMPT_DEADLINE_S
        # Stop on a logging step when one comes soon: the resumed run then logs the
        # very averages an uninterrupted run would, instead of a partial window.
        interval = int(getattr(state, "logging_steps", 0) or 0)
        aligned = interval <= 1 or state.global_step % interval == 0
        if _all_ranks_agree(aligned or time.monotonic() >= self._deadline):
            control.should_save = True
            control.should_training_stop = True

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
        log_checkpoint_artifact(folder, state.global_step, loss)


def log_checkpoint_artifact(folder: Path, step: int, loss: float | None) -> None:
    """Log ``folder`` as a wandb ``model`` artifact with aliases ``latest`` and ``step-N``.

    Offline, wandb stages the files for a later ``wandb sync``. The same record
    goes to ``artifacts.jsonl`` beside the checkpoints, readable without wandb.
    """
    import json
    import time

    attempt = int(os.environ.get(Env.ATTEMPT, "0"))
    aliases = ["latest", f"step-{step}"]
    metadata = {"step": step, "loss": loss, "attempt": attempt}
    wandb = sys.modules.get("wandb")
    run = getattr(wandb, "run", None) if wandb else None
    name = None
    if run is not None and wandb is not None:
        name = f"model-{run.id}"
        artifact = wandb.Artifact(name, type="model", metadata=metadata)
        artifact.add_dir(str(folder))
        run.log_artifact(artifact, aliases=aliases)
    manifest = folder.parent / "artifacts.jsonl"
    with open(manifest, "a") as fh:
        record = {
            "artifact": name,
            "path": str(folder),
            "aliases": aliases,
            "time": time.time(),
            **metadata,
        }
        fh.write(json.dumps(record) + "\n")


def _all_ranks_agree(flag: bool) -> bool:
    """Every rank must stop at the same step, or the next collective hangs."""
    torch_dist = sys.modules.get("torch.distributed")
    if torch_dist is None or not torch_dist.is_available() or not torch_dist.is_initialized():
        return flag
    if torch_dist.get_world_size() == 1:
        return flag
    import torch

    device = "cuda" if torch_dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([1 if flag else 0], device=device)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return bool(tensor.item())


def patch_trainer(trainer_cls: Any) -> None:
    """Give every Trainer the callback, job-lived checkpoints and a default resume."""
    if getattr(trainer_cls, "_nblaunch_patched", False):
        return
    original_init = trainer_cls.__init__
    original_train = trainer_cls.train

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = kwargs.get("args", args[1] if len(args) > 1 else None)
        if given is not None:
            _keep_checkpoints(given)
        original_init(self, *args, **kwargs)
        _keep_checkpoints(self.args)
        if not any(isinstance(cb, NBLaunchCallback) for cb in self.callback_handler.callbacks):
            self.add_callback(NBLaunchCallback())

    @functools.wraps(original_train)
    def train(self: Any, resume_from_checkpoint: Any = None, *args: Any, **kwargs: Any) -> Any:
        if resume_from_checkpoint is None:
            resume_from_checkpoint = os.environ.get(Env.RESUME_FROM) or None
            if resume_from_checkpoint:
                print(f"nblaunch: resuming from {resume_from_checkpoint}", file=sys.stderr)
        return original_train(self, resume_from_checkpoint, *args, **kwargs)

    trainer_cls.__init__ = __init__
    trainer_cls.train = train
    trainer_cls._nblaunch_patched = True


def _keep_checkpoints(args: Any) -> None:
    """Move a relative ``output_dir`` under the job's checkpoint folder: the attempt's
    working folder dies with the attempt, and the next attempt must resume."""
    checkpoints = os.environ.get(Env.CHECKPOINT_DIR)
    output_dir = getattr(args, "output_dir", None)
    if checkpoints and output_dir and not os.path.isabs(output_dir):
        args.output_dir = os.path.join(checkpoints, output_dir)


def training_args(
    *, zero_stage: int | None = None, offload: bool | None = None, **kwargs: Any
) -> TrainingArguments:
    """``TrainingArguments`` with the job's strategy filled in, the rest left as given.

    Parameters
    ----------
    zero_stage
        DeepSpeed ZeRO stage (0-3). Given, the run uses DeepSpeed with it whatever
        the job's strategy; ``None`` takes the job's ``--zero`` (2 when not given)
        under ``--strategy deepspeed`` and adds no DeepSpeed otherwise.
    offload
        Offload optimizer state (and with ZeRO-3 the parameters) to CPU memory;
        ``None`` takes the job's ``--offload``.
    **kwargs
        Passed to ``TrainingArguments`` unchanged. A ``deepspeed`` or ``fsdp``
        given here wins over the job's strategy.

    Notes
    -----
    The DeepSpeed config leaves batch sizes, clipping and precision to HF's
    ``"auto"`` and has no optimizer block, so the torch optimizer is used and
    nothing is JIT-compiled for it. ``--strategy fsdp`` adds full sharding with
    transformer auto-wrap; the Trainer's FSDP needs CUDA GPUs (on CPU it would
    quietly train as DDP), so without them this raises ``SpecError``.
    """
    strategy = os.environ.get(Env.STRATEGY, "none")
    wants_deepspeed = strategy == "deepspeed" or zero_stage is not None
    if wants_deepspeed and "deepspeed" not in kwargs:
        if importlib.util.find_spec("deepspeed") is None:
            raise MissingDependencyError(
                "DeepSpeed is not installed where the job runs: pip install 'nblaunch[deepspeed]'"
            )
        if zero_stage is None:
            zero_stage = int(os.environ.get(Env.ZERO_STAGE, "2"))
        if offload is None:
            offload = os.environ.get(Env.OFFLOAD, "0") == "1"
        kwargs["deepspeed"] = deepspeed_config(zero_stage, offload)
    elif strategy == "fsdp" and "fsdp" not in kwargs:
        import torch

        if not torch.cuda.is_available():
            raise SpecError(
                "the Trainer's FSDP needs CUDA GPUs and none is visible to this job; on CPU use "
                "--strategy ddp or deepspeed, or a plain torch loop with fully_shard "
                "(notebooks/07_fsdp.ipynb)"
            )
        kwargs["fsdp"] = "full_shard auto_wrap"
        kwargs.setdefault("fsdp_config", {"version": 2})
    return TrainingArguments(**kwargs)


def deepspeed_config(stage: int, offload: bool) -> dict[str, Any]:
    """A DeepSpeed config for the HF Trainer: ZeRO ``stage``, optional CPU offload."""
    if stage not in (0, 1, 2, 3):
        raise SpecError(f"ZeRO stage {stage!r} is not valid; use 0, 1, 2 or 3")
    zero: dict[str, Any] = {"stage": stage}
    config: dict[str, Any] = {
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
    }
    if offload:
        zero["offload_optimizer"] = {"device": "cpu"}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu"}
        # The Trainer's torch optimizer then steps on the offloaded state; DeepSpeed
        # refuses that by default to push its CPU Adam (JIT-compiled on first use).
        config["zero_force_ds_cpu_optimizer"] = False
    return config
