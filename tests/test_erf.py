"""erf without scipy: erf_accurate (float64, a few ulp) and erf_fast (float32), both checked against math.erf."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from strategies import central_floats, float32s, small_shapes, wide_floats

from tinygrad_ed.erf import erf, erf_accurate, erf_fast

ACCURATE_ABS = 2e-15   # erf_accurate: absolute error anywhere
ACCURATE_REL = 1e-14   # ... and relative error wherever the result is a normal float
FAST_ABS = 2e-6        # erf_fast: absolute error in float32 (about 6e-7 measured)
TINY = 1e-300          # below this, results are (near) subnormal and only the absolute bound applies


def math_erf(x):
    """The reference: math.erf elementwise, in float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.array([math.erf(v) for v in x.ravel()]).reshape(x.shape)


def assert_accurate(x):
    got, want = erf_accurate(np, x), math_erf(x)
    error = np.abs(got - want)
    assert error.max(initial=0.0) <= ACCURATE_ABS, x.ravel()[np.argmax(error)]
    normal = np.abs(x) >= TINY
    assert np.all(error[normal] <= ACCURATE_REL * np.abs(want[normal])), x[normal][np.argmax(error[normal])]


def assert_fast(x):
    got = erf_fast(np, x)
    assert got.dtype == np.float32
    error = np.abs(got.astype(np.float64) - math_erf(x))
    assert error.max(initial=0.0) <= FAST_ABS, x.ravel()[np.argmax(error)]


# ---- grids: dense where erf bends, logarithmic over the whole range, and the interval boundaries ----

def both_signs(x):
    return np.concatenate([x, -x])


# Cody's formulas switch at |x| = 0.5 and 4; erf rounds to +-1 beyond ~5.93 (float64) and ~3.92 (float32).
EDGES = np.array([0.5, 4.0, 5.9, 5.93, 6.0, 8.0, 3.9, 3.92])
EDGES64 = both_signs(np.concatenate([EDGES, np.nextafter(EDGES, 0), np.nextafter(EDGES, np.inf)]))
GRID64 = np.concatenate([
    np.linspace(-6.5, 6.5, 130_001),
    both_signs(np.geomspace(5e-324, 1e-300, 50)),
    both_signs(np.geomspace(1e-300, 1e308, 2_000)),
    EDGES64, [0.0, -0.0, np.finfo(np.float64).max, -np.finfo(np.float64).max],
])
GRID32 = np.concatenate([
    np.linspace(-8, 8, 160_001, dtype=np.float32),
    both_signs(np.geomspace(1e-45, 3e38, 2_000, dtype=np.float32)),
    EDGES64.astype(np.float32), np.float32([0.0, -0.0]),
])


def test_accurate_on_dense_grid():
    assert_accurate(GRID64)


def test_fast_on_dense_float32_grid():
    assert_fast(GRID32)


# ---- property tests ----



@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, small_shapes, elements=wide_floats | central_floats))
def test_accurate_matches_math_erf(x):
    with np.errstate(under="ignore"):  # squaring a subnormal underflows to 0, which is the right answer
        assert_accurate(x)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, small_shapes, elements=float32s))
def test_fast_matches_math_erf(x):
    assert_fast(x)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, small_shapes, elements=wide_floats | central_floats))
def test_erf_is_odd(x):
    assert np.array_equal(erf_accurate(np, -x), -erf_accurate(np, x))
    with np.errstate(over="ignore"):  # beyond float32's range the cast gives +-inf, a fine input too
        x32 = x.astype(np.float32)
    assert np.array_equal(erf_fast(np, -x32), -erf_fast(np, x32))


# ---- dtypes and dispatch ----

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4)])
def test_dtype_and_shape_are_preserved(dtype, shape):
    x = np.linspace(-3, 3, math.prod(shape)).reshape(shape).astype(dtype)
    for function in (erf, erf_accurate, erf_fast):
        out = function(np, x)
        assert out.dtype == dtype and out.shape == shape, function.__name__
    tolerance = {np.float16: 1e-3, np.float32: FAST_ABS, np.float64: ACCURATE_ABS}[dtype]
    assert np.allclose(erf(np, x), math_erf(x), rtol=0, atol=tolerance)


def test_dispatch_by_dtype():
    x = np.linspace(-3, 3, 101)
    assert np.array_equal(erf(np, x), erf_accurate(np, x))
    assert np.array_equal(erf(np, x.astype(np.float32)), erf_fast(np, x.astype(np.float32)))
    assert erf(np, np.arange(-3, 4)).dtype == np.float64  # integers are computed (and returned) in float64


class Float64Spy:
    """Stands in for numpy as `xp` and remembers the dtype of every array or numpy scalar an xp function is
    given or returns. (A float64 operand would make a ufunc compute in float64 even with a float32 out=.)"""

    def __init__(self):
        self.dtypes = set()

    def __getattr__(self, name):
        attribute = getattr(np, name)
        if not callable(attribute) or isinstance(attribute, type):
            return attribute

        def spied(*args, **kwargs):
            result = attribute(*args, **kwargs)
            for value in (*args, *kwargs.values(), result):
                if hasattr(value, "dtype"):
                    self.dtypes.add(np.dtype(value.dtype))
            return result
        return spied


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_fast_has_no_float64_intermediate(dtype):
    spy = Float64Spy()
    out = erf_fast(spy, np.linspace(-5, 5, 1001).astype(dtype))
    assert out.dtype == dtype
    assert np.dtype(np.float64) not in spy.dtypes, spy.dtypes


# ---- special values ----

@pytest.mark.parametrize("function, dtype", [(erf_accurate, np.float64), (erf_fast, np.float32)])
def test_inf_nan_and_huge_values(function, dtype):
    big = np.finfo(dtype).max
    x = np.array([np.inf, -np.inf, big, -big, 1e30, -1e30, 0.0], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow on the way to +-1
        out = function(np, x)
    assert np.array_equal(out[:6], [1, -1, 1, -1, 1, -1])
    assert abs(out[6]) <= (0.0 if function is erf_accurate else FAST_ABS)  # erf_fast(0) is ~6e-8, not 0
    assert np.all(np.isnan(function(np, np.array([np.nan, -np.nan], dtype=dtype))))


def test_accurate_zero_keeps_its_sign():
    out = erf_accurate(np, np.array([0.0, -0.0]))
    assert np.array_equal(out, [0.0, 0.0]) and list(np.signbit(out)) == [False, True]


@pytest.mark.cuda
def test_cupy_matches_numpy(cuda):
    import cupy
    x64 = np.linspace(-7, 7, 10_001)
    x32 = x64.astype(np.float32)
    assert np.allclose(cupy.asnumpy(erf(cupy, cupy.asarray(x64))), math_erf(x64), rtol=0, atol=ACCURATE_ABS)
    out32 = erf(cupy, cupy.asarray(x32))
    assert out32.dtype == np.float32
    assert np.allclose(cupy.asnumpy(out32), math_erf(x32), rtol=0, atol=FAST_ABS)

