#!/usr/bin/env bash
# The GPU checks in one command, for a lent machine with an NVIDIA GPU (an H200), cupy, numpy, pytest, hypothesis
# and, optionally, PyTorch and mpi4py already installed, and no network:
#
#     bash scripts/gpu_check.sh              # every part below, 8 minutes at the most
#     bash scripts/gpu_check.sh --full       # and then the full GPU preset to val <= 1.48 (about 10-20 minutes more)
#     bash scripts/gpu_check.sh --dry-run    # the script itself on a CPU: cupy is tests/cupy_standin.py, sizes tiny
#
# Budget: each part runs under its own timeout, so one slow or hung part cannot take the others' time, and one
# part's failure never stops the rest. The limits add up to 465 s, the header's to 15 s: 8 minutes at the most.
# cupy compiles each kernel at its first use and keeps it in ~/.cupy/kernel_cache, so the first parts pay the
# compiles; every per-iteration figure is taken after warm-up iterations, so compiles are not in it.
#   kernel-compile     20 s  tests/test_kernel_compile.py: every kernel source through NVRTC for sm_90
#   cuda-kernels       50 s  pytest -m cuda: tests/test_cuda_kernels.py and tests/test_cuda.py
#   equivalence-f32    50 s  bench/gpu_equivalence.py kernels,model: fused vs plain cupy vs cpu, the baby GPT
#   equivalence-f16    75 s  bench/gpu_equivalence.py float16: 200 iterations of the GPU preset, float16 vs float32
#   bench-tf32-off     45 s  bench/gpu_bench.py: one baby-GPT iteration (batch 64), ours vs PyTorch eager
#   bench-tf32-on      45 s  the same with CUPY_TF32=1 (and torch's TF32 matmuls): the TF32 on/off comparison
#   train-short        55 s  examples/train_char_gpt.py --device cuda, the GPU preset for 300 iterations
#   nccl-test          25 s  pytest -m cuda tests/test_distributed.py: NCCL's collectives on one GPU
#   nccl-2-ranks       40 s  mpiexec -n 2 train_char_gpt.py --backend nccl, a small model for 20 iterations
#                            (NCCL refuses two ranks on one GPU, "Duplicate GPU detected": on a one-GPU machine
#                            the part gets that far and is a SKIP saying so; without mpiexec or NCCL, too)
#   cuda-tests         60 s  pytest -m cuda on every other test file (gradient checks on cuda, ...)
#   train-full      1500 s  with --full only: the GPU preset's whole run; passes at val loss <= 1.48
# The report, bench/results/gpu-<date>.md (for --dry-run in the logs' folder), has the summary table (each part
# PASS / FAIL / SKIP with its figure, built by scripts/gpu_check_summary.py) and each part's last lines, and is
# copied to $OUT when that is set, with the logs and the JSON of equivalence and bench. Exit status 1 when a part
# failed. PYTHONPATH points at this checkout, so nothing needs installing.
set -u
cd "$(dirname "$0")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

FULL=0
DRY_RUN=0
for argument in "$@"; do
    case $argument in
        --full) FULL=1 ;;
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown option $argument (--full, --dry-run)" >&2; exit 2 ;;
    esac
done

DATE=$(date +%F)
RESULTS=bench/results
mkdir -p "$RESULTS"
LOGS=$(mktemp -d /tmp/gpu-check-XXXXXX)
PARTS="$LOGS/parts.tsv"
: > "$PARTS"

SCALE=1  # the parts' limits are multiplied by this
if [ "$DRY_RUN" = 1 ]; then
    # every python part with the cupy stand-in as cupy (pytest's conftest installs it by itself), at tiny sizes; the
    # stand-in computes everything with numpy on the CPU, so the limits are 4 times the GPU's
    SCALE=4
    PY=(python tests/standin_run.py)
    REPORT="$LOGS/gpu-dry-run-$DATE.md"  # not a result: kept out of bench/results
    EQUIVALENCE=(--quick --float16-iters 8)
    BENCH=(--model tiny --batch-size 2 --block-size 16 --iters 2 --warmup 1 --rounds 1)
    TRAIN=(--n-layer 1 --n-head 2 --n-embd 32 --block-size 16 --batch-size 4 --max-iters 6 --eval-interval 3
           --eval-iters 2 --log-interval 2)
    TINY=(--n-layer 1 --n-head 2 --n-embd 32 --block-size 16 --batch-size 4 --max-iters 4 --eval-interval 2
          --eval-iters 2 --log-interval 1)
else
    PY=(python)
    REPORT="$RESULTS/gpu-$DATE.md"
    EQUIVALENCE=(--float16-iters 200)
    BENCH=(--batch-size 64 --block-size 256 --iters 10 --warmup 3)
    TRAIN=(--max-iters 300 --eval-interval 150 --eval-iters 20 --log-interval 50)
    TINY=(--n-layer 2 --n-head 2 --n-embd 64 --block-size 64 --batch-size 16 --max-iters 20 --eval-interval 10
          --eval-iters 5 --log-interval 5)
fi
EQUIVALENCE_JSON="$LOGS/gpu-equivalence-$DATE.json"
BENCH_JSON="$LOGS/gpu-bench-$DATE"

# run_part NAME SECONDS COMMAND...: run COMMAND under a timeout, log its output, add its row to $PARTS and its last
# lines to the report; never stops the script
run_part() {
    local name=$1 limit=$(( $2 * SCALE ))
    shift 2
    local log="$LOGS/$name.log" start status seconds
    start=$(date +%s)
    echo ">>> $name (at most ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1 < /dev/null
    status=$?
    seconds=$(( $(date +%s) - start ))
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$seconds" "$limit" "$log" >> "$PARTS"
    echo "<<< $name: exit $status in ${seconds}s"
    {
        echo "## $name"
        echo
        echo "\`$*\`: exit $status in $seconds s (limit $limit s)"
        echo
        echo '```'
        tr '\r' '\n' < "$log" | grep -v '^\s*$' | tail -n 60   # progress bars redraw with \r
        echo '```'
        echo
    } >> "$REPORT.parts"
}

{
    echo "# GPU check, $DATE$([ "$DRY_RUN" = 1 ] && echo ': dry run on the CPU, cupy is the stand-in')"
    echo
    echo "- command: \`bash scripts/gpu_check.sh $*\`; code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
    if [ "$DRY_RUN" = 0 ]; then
        echo "- GPU: $(timeout 5 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
    fi
    echo "- $(timeout 10 "${PY[@]}" -c 'import sys, numpy
from tinygrad_ed.device import cuda_problem
print("Python", sys.version.split()[0], "| numpy", numpy.__version__, end="")
print(" | cuda:", cuda_problem() or "usable", end="")
try:
    import cupy; print(" | cupy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), end="")
except Exception as error: print(" | cupy: not usable:", error, end="")
try:
    import torch; print(" | torch", torch.__version__, "| torch.cuda", torch.cuda.is_available(), end="")
except Exception as error: print(" | torch: not usable:", error, end="")' 2>&1 | tail -n 1)"
    echo "- full logs in $LOGS on the machine that ran it"
    echo
} > "$REPORT"
: > "$REPORT.parts"

PYTEST=(python -m pytest -q -p no:cacheprovider)
run_part kernel-compile 20 "${PYTEST[@]}" tests/test_kernel_compile.py
run_part cuda-kernels 50 "${PYTEST[@]}" -m cuda tests/test_cuda_kernels.py tests/test_cuda.py
run_part equivalence-f32 50 "${PY[@]}" bench/gpu_equivalence.py --sections kernels,model "${EQUIVALENCE[@]}" \
    --json "$EQUIVALENCE_JSON"
run_part equivalence-f16 75 "${PY[@]}" bench/gpu_equivalence.py --sections float16 "${EQUIVALENCE[@]}" \
    --json "${EQUIVALENCE_JSON%.json}-f16.json"
run_part bench-tf32-off 45 env CUPY_TF32=0 "${PY[@]}" bench/gpu_bench.py "${BENCH[@]}" --json "$BENCH_JSON-tf32-off.json"
run_part bench-tf32-on 45 env CUPY_TF32=1 "${PY[@]}" bench/gpu_bench.py "${BENCH[@]}" --json "$BENCH_JSON-tf32-on.json"
run_part train-short 55 "${PY[@]}" examples/train_char_gpt.py --device cuda "${TRAIN[@]}" --sample-tokens 0 \
    --out-dir "$LOGS/train-short"
run_part nccl-test 25 "${PYTEST[@]}" -m cuda tests/test_distributed.py
run_part nccl-2-ranks 40 mpiexec -n 2 "${PY[@]}" examples/train_char_gpt.py --device cuda --backend nccl \
    "${TINY[@]}" --sample-tokens 0 --out-dir "$LOGS/nccl-2-ranks"
run_part cuda-tests 60 "${PYTEST[@]}" -m cuda --ignore=tests/test_cuda_kernels.py --ignore=tests/test_cuda.py \
    --ignore=tests/test_distributed.py --ignore=tests/test_kernel_compile.py
if [ "$FULL" = 1 ]; then
    run_part train-full 1500 "${PY[@]}" examples/train_char_gpt.py --device cuda --sample-tokens 0 \
        --out-dir "$LOGS/train-full"
fi

# the summary first, then each part's lines
if ! python scripts/gpu_check_summary.py "$PARTS" > "$LOGS/summary.md" 2> "$LOGS/summary.err"; then
    [ -s "$LOGS/summary.md" ] || { echo "(the summary could not be built:"; cat "$LOGS/summary.err"; \
        echo "the raw rows: name, exit status, seconds, limit, log)"; sed 's/^/    /' "$PARTS"; } > "$LOGS/summary.md"
    FAILED=1
else
    FAILED=0
fi
{ echo "## summary"; echo; cat "$LOGS/summary.md"; echo; cat "$REPORT.parts"; } >> "$REPORT"
rm -f "$REPORT.parts"

if [ -n "${OUT:-}" ]; then
    cp "$REPORT" "$LOGS"/*.log "$LOGS"/*.json "$OUT"/ 2>/dev/null
fi
echo
echo "report: $REPORT"
cat "$LOGS/summary.md"
exit $FAILED
