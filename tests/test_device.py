"""Device detection (tinygrad_ed/device.py): cuda is usable only when a kernel compiles, runs and reads back and a
matmul does too; otherwise --device cuda fails with the reason and the fix. Run on the cupy stand-in, with its
compiler or cuBLAS broken the way a pip-only machine without cupy's ctk extra breaks them (issue 14 item 3)."""
import runpy
from pathlib import Path

import numpy as np
import pytest

from tinygrad_ed import device

NVRTC_MISSING = "CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open shared object file"
CUBLAS_MISSING = "CuPy failed to load libcublas.so.12: OSError: libcublas.so.12: cannot open shared object file"


@pytest.fixture
def fresh(monkeypatch):
    """Detection asked anew (its answer is cached once per cupy module), the cache restored afterwards."""
    monkeypatch.setattr(device, "_problems", {})


class UncompilableKernel:
    """An ElementwiseKernel whose compile (cupy compiles at the first launch) fails as without NVRTC."""
    built = 0

    def __init__(self, *args, **kwargs):
        UncompilableKernel.built += 1

    def __call__(self, *args, **kwargs):
        raise RuntimeError(NVRTC_MISSING)


def test_the_standin_passes_detection(standin, fresh, monkeypatch):
    built = []
    real = standin.ElementwiseKernel
    monkeypatch.setattr(standin, "ElementwiseKernel", lambda *args: built.append(args) or real(*args))
    assert device.cuda_problem() is None and device.cuda_available()
    device.require_cuda()  # returns quietly
    assert device.cuda_available() and len(built) == 1  # compiled and run once, then the answer is kept


def test_a_kernel_that_cannot_compile_means_no_cuda_and_says_why(standin, fresh, monkeypatch):
    monkeypatch.setattr(standin, "ElementwiseKernel", UncompilableKernel)
    UncompilableKernel.built = 0
    assert not device.cuda_available()
    problem = device.cuda_problem()
    assert "cupy found 1 GPU but could not compile and run a kernel" in problem
    assert "NVRTC" in problem and "libnvrtc.so.12" in problem and "pip install -e '.[cuda]'" in problem
    assert UncompilableKernel.built == 1  # asked once
    with pytest.raises(RuntimeError, match=r"^--device cuda: no usable GPU: cupy found 1 GPU but could not compile"):
        device.require_cuda()


def test_a_matmul_that_cannot_run_means_no_cuda_and_says_why(standin, fresh, monkeypatch):
    def matmul(*args, **kwargs):
        raise RuntimeError(CUBLAS_MISSING)
    monkeypatch.setattr(standin, "matmul", matmul)
    problem = device.cuda_problem()
    assert "could not multiply two matrices (cuBLAS missing?" in problem and "libcublas.so.12" in problem
    assert "pip install -e '.[cuda]'" in problem and not device.cuda_available()


def test_a_kernel_computing_the_wrong_numbers_means_no_cuda(standin, fresh, monkeypatch):
    real = standin.ElementwiseKernel

    def wrong(*args):
        kernel = real(*args)
        return lambda x: kernel(x) * 2
    monkeypatch.setattr(standin, "ElementwiseKernel", wrong)
    assert "a kernel computing x + 1 gave [2.0, 4.0, 6.0, 8.0]" in device.cuda_problem()


def test_no_gpu_and_no_driver_are_said_as_such(standin, fresh, monkeypatch):
    monkeypatch.setattr(standin.cuda.runtime, "getDeviceCount", lambda: 0)
    assert device.cuda_problem() == "cupy 14.2.0 sees no NVIDIA GPU"

    def no_driver():
        raise standin.cuda.runtime.CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is "
                                                    "insufficient for CUDA runtime version")
    monkeypatch.setattr(device, "_problems", {})
    monkeypatch.setattr(standin.cuda.runtime, "getDeviceCount", no_driver)
    assert "could not talk to the NVIDIA driver (CUDARuntimeError: cudaErrorInsufficientDriver" in \
        device.cuda_problem()


def test_without_cupy_the_fix_is_named(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(device, "_cupy", None)
    monkeypatch.setattr(device, "_problems", {})
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    problem = device.cuda_problem()
    assert problem.startswith("cupy is not installed (No module named 'cupy')")
    assert "pip install -e '.[cuda]'" in problem


def test_a_cupy_that_fails_to_import_means_no_cuda(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def broken_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise OSError("libcudart.so.12: cannot open shared object file")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(device, "_cupy", None)
    monkeypatch.setattr(device, "_problems", {})
    monkeypatch.setattr(builtins, "__import__", broken_cupy)
    assert not device.cuda_available()
    assert device.cuda_problem().startswith("cupy could not be imported (OSError: libcudart.so.12: cannot open")


def test_train_char_gpt_names_the_reason(standin, fresh, monkeypatch, capsys):
    """The user-facing error of --device cuda is the detection's reason, before any work starts."""
    main = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "train_char_gpt.py"))["main"]
    monkeypatch.setattr(standin, "ElementwiseKernel", UncompilableKernel)
    with pytest.raises(SystemExit) as exit_:
        main(["--device", "cuda", "--max-iters", "1"])
    stderr = capsys.readouterr().err
    assert exit_.value.code == 2 and "--device cuda: no usable GPU: cupy found 1 GPU but could not compile" in stderr
    assert "libnvrtc.so.12" in stderr and "or use --device cpu" in stderr and "Traceback" not in stderr


def test_the_check_kernel_runs_on_the_standin_as_on_cupy(standin):
    kernel = standin.ElementwiseKernel(*device._CHECK_KERNEL)
    np.testing.assert_array_equal(kernel(standin.arange(3, dtype=standin.float32)).get(), [1, 2, 3])
