"""Hypothesis strategies shared by every test file: shapes, values, indices and token batches, all in one place.

Values are float64 and bounded, because the gradient checks difference them in float64 (see
tinygrad_ed/gradcheck.py). Several strategies keep values away from the points where an op is not
differentiable, since finite differences straddling a kink measure neither one-sided slope:
  positive_arrays      log, sqrt and fractional or negative powers need x > 0
  nonzero_arrays       relu's kink at 0, 1/x's pole at 0
  distinct_arrays      max: a tie between two elements has no single gradient
"""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

MAX_SIDE = 5  # every axis has 1..5 elements: small enough that finite differences stay fast


# ---- shapes ----

def shapes(min_dims=0, max_dims=4, min_side=1, max_side=MAX_SIDE):
    """Array shapes with 0..4 axes of 1..5 elements."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=MAX_SIDE):
    """Tuples of shapes that broadcast together: size-1 axes and missing leading axes included."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims,
                                             max_side=max_side).map(lambda shapes: shapes.input_shapes)


def broadcastable_to(shape):
    """Shapes that broadcast to `shape` without growing it (a mask for x.masked_fill)."""
    return hnp.broadcastable_shapes(shape, min_dims=0, max_dims=len(shape))


def matmul_shapes(max_batch_dims=2, max_side=4):
    """(a_shape, b_shape) for a @ b: (..., m, n) @ (..., n, p) with broadcasting batch axes."""
    return hnp.mutually_broadcastable_shapes(signature="(m,n),(n,p)->(m,p)", max_dims=max_batch_dims,
                                             max_side=max_side).map(lambda shapes: shapes.input_shapes)


@st.composite
def axes(draw, ndim):
    """An `axis` argument for a reduction over `ndim` axes: None, one (maybe negative) axis, or a tuple."""
    if ndim == 0:
        return None
    return draw(st.none()
                | st.integers(-ndim, ndim - 1)
                | st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple))


# ---- values ----

def floats(low=-3.0, high=3.0):
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def arrays(shape, low=-3.0, high=3.0):
    """float64 arrays with values in [low, high]."""
    return hnp.arrays(np.float64, shape, elements=floats(low, high))


def positive_arrays(shape, low=0.5, high=3.0):
    """float64 arrays in [0.5, 3]: the domain of log, sqrt and x**-1, away from their poles."""
    return arrays(shape, low, high)


def nonzero_arrays(shape, gap=0.1, high=3.0):
    """float64 arrays in [-3, -gap] ∪ [gap, 3]: never near relu's kink or 1/x's pole."""
    magnitude_and_sign = st.tuples(floats(gap, high), st.booleans())
    return hnp.arrays(np.float64, shape, elements=magnitude_and_sign.map(lambda ms: -ms[0] if ms[1] else ms[0]))


@st.composite
def distinct_arrays(draw, shape, spacing=0.1):
    """float64 arrays whose elements differ pairwise by at least `spacing` (no ties for max to split)."""
    size = int(np.prod(shape))
    order = draw(st.permutations(range(size)))
    return (np.array(order, dtype=np.float64).reshape(shape) - size / 2) * spacing


# ---- indices ----

def basic_indices(shape):
    """Integers and slices (negative steps and empty slices included), as x[1, ::-2]."""
    return hnp.basic_indices(shape, min_dims=0, allow_ellipsis=False, allow_newaxis=False)


@st.composite
def int_arrays(draw, low, high, shape=None, max_dims=2, min_size=1, max_size=4):
    """int64 arrays of values in [low, high] (of `shape`, or a drawn one): a small range, so repeats are common."""
    if shape is None:
        shape = draw(shapes(min_dims=1, max_dims=max_dims, min_side=min_size, max_side=max_size))
    return draw(hnp.arrays(np.int64, shape, elements=st.integers(low, high)))


@st.composite
def repeated_ids(draw, high, max_dims=2):
    """Token-id arrays (like idx of shape (B, T)) with values in [0, high] that always hold a repeat."""
    ids = draw(int_arrays(0, high, max_dims=max_dims, min_size=2))
    ids.flat[-1] = ids.flat[0]  # the same id twice: its gradient rows must add up, not overwrite
    return ids


@st.composite
def token_batches(draw, vocab_size, batch_size, block_size):
    """(idx, targets), each int64 (B, T), as nanoGPT's get_batch makes them: targets are idx shifted by one,
    both cut from one drawn stream of B rows of T + 1 tokens."""
    stream = draw(int_arrays(0, vocab_size - 1, shape=(batch_size, block_size + 1)))
    return stream[:, :-1], stream[:, 1:]
