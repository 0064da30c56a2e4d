#!/usr/bin/env bash
# Runs every test marked `gpu` (NCCL, the Trainer's FSDP, bf16 mixed precision) on a machine
# with CUDA GPUs, from the repository root:
#
#   bash benchmarks/gpu_checks.sh [more pytest arguments]
#
# It uses the Python that already holds a CUDA build of torch (PYTHON, default python3) and
# installs nblaunch into it without replacing torch: from the package index, or offline from
# the wheels in the folder WHEELS. Variants needing more GPUs than the machine has are
# skipped with the reason. The log and a JUnit report go to $OUT (or benchmarks/results).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-benchmarks/results}
mkdir -p "$OUT_DIR"

"$PY" - <<'PYEOF'
import torch
count = torch.cuda.device_count()
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {count} GPU(s):",
      ", ".join(torch.cuda.get_device_name(i) for i in range(count)) or "none")
if not count:
    raise SystemExit("no CUDA GPU visible: these checks need one")
PYEOF

if ! "$PY" -c "import nblaunch, papermill, transformers, deepspeed, wandb, pytest_timeout" 2>/dev/null; then
    pip_args=()
    if [[ -n "${WHEELS:-}" ]]; then pip_args=(--no-index --find-links "$WHEELS"); fi
    "$PY" -m pip install -q "${pip_args[@]}" -e '.[test,train,deepspeed]'
fi

mapfile -t files < <(grep -rl --include='test_*.py' 'pytest.mark.gpu' tests | sort)
echo "gpu tests in: ${files[*]}"
set -o pipefail
PYTHONUNBUFFERED=1 "$PY" -m pytest -m gpu -p no:cacheprovider -v -rs --durations=0 \
    --junitxml="$OUT_DIR/gpu_checks.xml" "${files[@]}" "$@" 2>&1 | tee "$OUT_DIR/gpu_checks.log"
