#!/usr/bin/env bash
# The GPU checks of issue 6 in one command, for a machine with an NVIDIA GPU, cupy, numpy, pytest, hypothesis and
# (optionally) PyTorch already installed, and no network:
#
#     bash scripts/gpu_check.sh
#
# Each part runs under its own timeout, so one slow or hung part cannot take the others' time; together they are
# bounded by about 8 minutes (on an H200 the whole run should take 4-6). The parts, most telling first:
#   install        pip install -e . --no-deps (PYTHONPATH is set as well, so nothing depends on it succeeding)
#   cuda kernels   pytest -m cuda on tests/test_cuda_kernels.py and tests/test_cuda.py
#   equivalence    bench/gpu_equivalence.py: fused kernels vs plain cupy vs cpu, the baby GPT's loss and gradients
#                  on cuda vs cpu, float16 vs float32 training
#   bench          bench/gpu_bench.py: one training iteration of the baby GPT (batch 64), ours vs PyTorch eager
#   train          examples/train_char_gpt.py, the GPU preset shortened to 500 iterations
#   cuda tests     pytest -m cuda on every other test file (gradient checks on cuda, ...)
# Everything goes to bench/results/gpu-<date>.md (with the JSON of equivalence and bench beside it), also copied to
# $OUT when that is set; a summary table is printed last.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

DATE=$(date +%F)
RESULTS=bench/results
mkdir -p "$RESULTS"
REPORT="$RESULTS/gpu-$DATE.md"
EQUIVALENCE_JSON="$RESULTS/gpu-equivalence-$DATE.json"
BENCH_JSON="$RESULTS/gpu-bench-$DATE.json"
LOGS=$(mktemp -d /tmp/gpu-check-XXXXXX)
SUMMARY=()
FAILED=0

# run_part NAME SECONDS COMMAND...: run COMMAND under a timeout, log its output, add its section to the report
run_part() {
    local name=$1 limit=$2
    shift 2
    local log="$LOGS/$name.log" start status seconds verdict result
    start=$(date +%s)
    echo ">>> $name (at most ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
    status=$?
    seconds=$(( $(date +%s) - start ))
    case $status in
        0) verdict="ok" ;;
        124|137) verdict="TIMED OUT after ${limit}s"; FAILED=$((FAILED + 1)) ;;
        *) verdict="FAILED (exit $status)"; FAILED=$((FAILED + 1)) ;;
    esac
    result=$(key_result "$name" "$log")
    echo "<<< $name: $verdict in ${seconds}s${result:+: $result}"
    SUMMARY+=("| $name | $verdict | ${seconds} s | ${result} |")
    {
        echo "## $name"
        echo
        echo "\`$*\`: $verdict in ${seconds} s"
        echo
        echo '```'
        tr '\r' '\n' < "$log" | grep -v '^\s*$' | tail -n 80   # progress bars redraw with \r
        echo '```'
        echo
    } >> "$REPORT"
}

# key_result NAME LOG: the one line of a part's output that says how it went
key_result() {
    case $1 in
        install) tail -n 1 "$2" | cut -c 1-100 ;;
        cuda-kernels|cuda-tests) grep -E '[0-9]+ (passed|failed|errors?|skipped)|no tests ran' "$2" | tail -n 1 | tr -d '=' ;;
        equivalence|bench) grep -E '^SUMMARY:' "$2" | tail -n 1 | sed 's/^SUMMARY: //' ;;
        train) { grep -E '^final \(iteration' "$2"; grep -E '^time:' "$2"; } | tr '\n' ' ' ;;
    esac
}

{
    echo "# GPU check, $DATE"
    echo
    echo "- command: \`bash scripts/gpu_check.sh\`; code: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
    echo "- GPU: $(timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)"
    echo "- $(timeout 60 python -c 'import sys, numpy, tinygrad_ed; print("Python", sys.version.split()[0], "| numpy", numpy.__version__, end="")
print(" | tinygrad_ed sees cuda:", tinygrad_ed.cuda_available(), end="")
try:
    import cupy; print(" | cupy", cupy.__version__, "| CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), end="")
except Exception as error: print(" | cupy: not usable:", error, end="")
try:
    import torch; print(" | torch", torch.__version__, "| torch.cuda", torch.cuda.is_available(), end="")
except Exception as error: print(" | torch: not usable:", error, end="")' 2>&1)"
    echo "- each part's last lines are below; full logs in $LOGS on the machine that ran it"
    echo
} > "$REPORT"

run_part install 30 python -m pip install -e . --no-deps --no-build-isolation --quiet
run_part cuda-kernels 75 python -m pytest -m cuda -q -p no:cacheprovider tests/test_cuda_kernels.py tests/test_cuda.py
run_part equivalence 120 python bench/gpu_equivalence.py --float16-iters 200 --json "$EQUIVALENCE_JSON"
run_part bench 60 python bench/gpu_bench.py --batch-size 64 --block-size 256 --iters 10 --json "$BENCH_JSON"
rm -rf /tmp/gpu-run
run_part train 120 python examples/train_char_gpt.py --device cuda --max-iters 500 --eval-interval 250 \
    --eval-iters 50 --out-dir /tmp/gpu-run
run_part cuda-tests 75 python -m pytest -m cuda -q -p no:cacheprovider \
    --ignore=tests/test_cuda_kernels.py --ignore=tests/test_cuda.py

{
    echo "## summary"
    echo
    echo "| part | status | time | result |"
    echo "|---|---|---|---|"
    printf '%s\n' "${SUMMARY[@]}"
} | tee -a "$REPORT" > "$LOGS/summary.md"

if [ -n "${OUT:-}" ]; then
    cp "$REPORT" "$LOGS"/*.log "$OUT"/ 2>/dev/null
    cp "$EQUIVALENCE_JSON" "$BENCH_JSON" "$OUT"/ 2>/dev/null
fi
echo
echo "report: $REPORT"
cat "$LOGS/summary.md"
exit $(( FAILED > 0 ))
