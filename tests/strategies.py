"""Hypothesis strategies shared by every test file, all in one place: shapes, values, indices, token batches, erf's
inputs, and the inputs of each op of tests/op_table.py.

Values are float64 and bounded, because the gradient checks difference them in float64 (see
tinygrad_ed/gradcheck.py). Several strategies keep values away from the points where an op is not
differentiable, since finite differences straddling a kink measure neither one-sided slope:
  positive_arrays      log, sqrt and fractional or negative powers need x > 0
  nonzero_arrays       relu's kink at 0, 1/x's pole at 0
  distinct_arrays      max: a tie between two elements has no single gradient
"""
import numpy as np
from hypothesis import assume
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


# ---- erf's inputs (tests/test_erf.py) ----

wide_floats = st.floats(allow_nan=False, allow_infinity=False)          # the whole float64 line
central_floats = st.floats(min_value=-7.0, max_value=7.0)              # where erf is not yet +-1
float32s = st.floats(min_value=-10.0, max_value=10.0, width=32)
small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)


def texts(alphabet, max_size=200):
    """Strings of the characters of `alphabet` (a vocabulary)."""
    return st.text(alphabet=st.sampled_from(alphabet), max_size=max_size)


# ---- the inputs of one op, for tests/op_table.py: (float64 arrays, the op's other arguments) ----
# Each draws the arrays an op differentiates (its gradient is checked for every one of them) and a dict of the
# arguments it does not (axes, indices, token ids, masks, seeds), as numpy values.

@st.composite
def elementwise(draw, values=arrays, count=1, max_dims=4):
    """`count` arrays of mutually broadcastable shapes, each drawn from `values(shape)`."""
    shape_list = draw(broadcastable_shapes(num_shapes=count, max_dims=max_dims)) if count > 1 else \
        [draw(shapes(max_dims=max_dims))]
    return [draw(values(shape)) for shape in shape_list], {}


@st.composite
def with_scalar(draw, values=arrays):
    """One array and a Python number (float or int), the other operand of a binary op."""
    return [draw(values(draw(shapes(max_dims=3))))], {"scalar": draw(st.sampled_from([2.5, -1.5, 3, 1]))}


@st.composite
def with_axis(draw, values=arrays, min_dims=1, new_axis=False):
    """One array and one (maybe negative) axis of it; with `new_axis` an axis of the result, one more (unsqueeze)."""
    shape = draw(shapes(min_dims=min_dims))
    ndim = len(shape) + new_axis
    return [draw(values(shape))], {"axis": draw(st.integers(-ndim, ndim - 1))}


@st.composite
def reduction(draw, values=arrays, correction=False, single_axis=False, min_count=1):
    """One array, an `axis` argument (None, one or several axes; with `single_axis` None or one) and keepdims; for
    var also a correction smaller than the count it divides by, and at least `min_count` elements per output."""
    shape = draw(shapes())
    axis = draw(axes(len(shape)))
    if single_axis and isinstance(axis, tuple):
        axis = axis[0]
    params = {"axis": axis, "keepdims": draw(st.booleans())}
    if correction:
        params["correction"] = draw(st.sampled_from([0, 1]))
        count = int(np.prod(shape)) if axis is None else int(np.prod(np.array(shape)[np.array(axis)]))
        assume(count > params["correction"])  # the unbiased variance of a single element divides by zero
        assume(count >= min_count)
    return [draw(values(shape))], params


@st.composite
def matmul_pair(draw):
    shape_a, shape_b = draw(matmul_shapes())
    return [draw(arrays(shape_a)), draw(arrays(shape_b))], {}


@st.composite
def cross_entropy_inputs(draw, smoothing=False):
    """Logits (N, V) or (B, T, V) and integer targets; with ignore_index=-1 some targets are -1, not all; with
    `smoothing` a label_smoothing in (0, 1]."""
    shape = draw(shapes(min_dims=2, max_dims=3))
    ignore = draw(st.booleans())
    targets = draw(int_arrays(-1 if ignore else 0, shape[-1] - 1, shape=shape[:-1]))
    assume(not ignore or (targets != -1).any())  # a mean over no positions is undefined
    params = {"targets": targets, "ignore_index": -1 if ignore else None}
    if smoothing:
        params["label_smoothing"] = draw(st.sampled_from([0.1, 0.5, 1.0]))
    return [draw(arrays(shape, -10.0, 10.0))], params


@st.composite
def layer_norm_inputs(draw, parameters):
    """x (..., C) and, as `parameters` says ("none", "weight", "weight+bias"), a weight and a bias of shape (C,)."""
    shape = draw(shapes(min_dims=1, max_dims=3))
    tensors = [draw(arrays(shape))] + [draw(arrays(shape[-1:])) for _ in range(parameters.count("weight") +
                                                                            parameters.count("bias"))]
    return tensors, {"eps": draw(st.sampled_from([1e-5, 1e-2]))}


@st.composite
def reshape_inputs(draw):
    shape = draw(shapes())
    size = int(np.prod(shape))
    target = draw(st.sampled_from([shape[::-1], (size,), (1, size, 1), (1,) + shape, (-1,)]))
    return [draw(arrays(shape))], {"shape": target}


@st.composite
def permute_inputs(draw):
    shape = draw(shapes(min_dims=2))
    return [draw(arrays(shape))], {"order": tuple(draw(st.permutations(range(len(shape)))))}


@st.composite
def transpose_inputs(draw):
    shape = draw(shapes(min_dims=2))
    ndim = len(shape)
    return [draw(arrays(shape))], {"axes": (draw(st.integers(-ndim, ndim - 1)), draw(st.integers(-ndim, ndim - 1)))}


@st.composite
def basic_index_inputs(draw):
    shape = draw(shapes(min_dims=1))
    return [draw(arrays(shape))], {"index": draw(basic_indices(shape))}


@st.composite
def row_index_inputs(draw):
    """x and an array of row ids with a repeat (its gradient rows must add up), negative ids included."""
    shape = draw(shapes(min_dims=1, max_dims=3))
    rows = draw(int_arrays(-shape[0], shape[0] - 1, min_size=2))
    rows.flat[-1] = rows.flat[0]
    return [draw(arrays(shape))], {"rows": rows}


@st.composite
def index_pair_inputs(draw):
    """x (R, C) and (rows, cols): one element per pair, as cross-entropy picks logits[range(N), targets]."""
    rows_n, cols_n = draw(shapes(min_dims=2, max_dims=2))
    picks = draw(st.integers(1, 6))
    return [draw(arrays((rows_n, cols_n)))], {"rows": draw(int_arrays(0, rows_n - 1, shape=(picks,))),
                                               "cols": draw(int_arrays(0, cols_n - 1, shape=(picks,)))}


@st.composite
def embedding_inputs(draw):
    vocab, channels = draw(shapes(min_dims=2, max_dims=2))
    return [draw(arrays((vocab, channels)))], {"ids": draw(repeated_ids(vocab - 1))}  # (B, T) or (T,), a repeat


@st.composite
def masked_fill_inputs(draw):
    shape = draw(shapes(max_dims=3))
    return [draw(arrays(shape))], {"mask": draw(arrays(draw(broadcastable_to(shape)))) > 0}


@st.composite
def where_inputs(draw):
    condition_shape, shape_a, shape_b = draw(broadcastable_shapes(num_shapes=3, max_dims=3))
    return [draw(arrays(shape_a)), draw(arrays(shape_b))], {"condition": draw(arrays(condition_shape)) > 0}


@st.composite
def cat_inputs(draw):
    """1-3 arrays with the same shape except along `axis`."""
    shape = draw(shapes(min_dims=1, max_dims=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    pieces = []
    for _ in range(draw(st.integers(1, 3))):
        piece_shape = list(shape)
        piece_shape[axis] = draw(st.integers(1, 3))
        pieces.append(draw(arrays(tuple(piece_shape))))
    return pieces, {"axis": axis}


@st.composite
def stack_inputs(draw):
    shape = draw(shapes(max_dims=3))
    pieces = [draw(arrays(shape)) for _ in range(draw(st.integers(1, 3)))]
    return pieces, {"axis": draw(st.integers(-len(shape) - 1, len(shape)))}


@st.composite
def split_inputs(draw):
    shape = draw(shapes(min_dims=1, max_dims=3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return [draw(arrays(shape))], {"size": draw(st.integers(1, shape[axis])), "axis": axis}


@st.composite
def dropout_inputs(draw):
    return [draw(arrays(draw(shapes())))], {"p": draw(st.sampled_from([0.1, 0.5])), "seed": draw(st.integers(0, 2**16))}


@st.composite
def attention_inputs(draw, dropout=False):
    """q, k, v of one (B, H, T, D) shape, values in [-1, 1]; causal or not, or (dropout) a seed for the masks."""
    shape = draw(shapes(min_dims=4, max_dims=4, max_side=4))
    params = {"seed": draw(st.integers(0, 2**16))} if dropout else {"causal": draw(st.booleans())}
    return [draw(arrays(shape, -1.0, 1.0)) for _ in range(3)], params


@st.composite
def linear_inputs(draw, bias):
    """x (..., in), weight (out, in) as nanoGPT stores it, and with `bias` a bias (out,)."""
    *lead, fan_in = draw(shapes(min_dims=1, max_dims=3))
    fan_out = draw(st.integers(1, 4))
    tensors = [draw(arrays((*lead, fan_in))), draw(arrays((fan_out, fan_in)))]
    return tensors + ([draw(arrays((fan_out,)))] if bias else []), {}


@st.composite
def clamp_inputs(draw):
    """Distinct values on a 0.05 grid and bounds (one may be None) off that grid, so no element sits on a kink."""
    low, high = draw(st.sampled_from([(-0.13, 0.27), (None, 0.07), (-0.33, None), (0.12, -0.18)]))
    return [draw(distinct_arrays(draw(shapes())))], {"low": low, "high": high}


@st.composite
def squeeze_inputs(draw):
    """An array with some size-1 axes, and an axis argument: None, one axis or a tuple of axes."""
    shape = draw(shapes(max_side=3))
    return [draw(arrays(shape))], {"axis": draw(axes(len(shape)))}


@st.composite
def expand_inputs(draw):
    """x and a shape it broadcasts to (new leading axes, size-1 axes grown), with -1 for some kept axes."""
    shape = draw(shapes(max_dims=3, max_side=3))
    lead = draw(st.lists(st.integers(1, 3), max_size=2))
    sizes = [draw(st.integers(1, 3)) if n == 1 else draw(st.sampled_from([n, -1])) for n in shape]
    return [draw(arrays(shape))], {"sizes": tuple(lead + sizes)}


@st.composite
def flatten_inputs(draw):
    shape = draw(shapes(min_dims=1))
    start = draw(st.integers(0, len(shape) - 1))
    return [draw(arrays(shape))], {"start": start, "end": draw(st.integers(start, len(shape) - 1))}


@st.composite
def triangle_inputs(draw):
    return [draw(arrays(draw(shapes(min_dims=2, max_dims=3))))], {"diagonal": draw(st.integers(-2, 2))}


@st.composite
def split_sizes_inputs(draw):
    """x and a list of piece sizes (zeros included) along axis 0 that add up to its length."""
    shape = draw(shapes(min_dims=1, max_dims=3))
    cuts = sorted(draw(st.lists(st.integers(0, shape[0]), max_size=3)))
    bounds = [0, *cuts, shape[0]]
    return [draw(arrays(shape))], {"sizes": [b - a for a, b in zip(bounds, bounds[1:])]}


@st.composite
def vector_matmul_pair(draw):
    """(a, b) for a @ b with at least one 1-D operand: a dot product, vector @ matrix or matrix @ vector."""
    k = draw(st.integers(1, 4))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    shape_a, shape_b = draw(st.sampled_from([((k,), (k,)), ((k,), batch + (k, 3)), (batch + (2, k), (k,))]))
    return [draw(arrays(shape_a)), draw(arrays(shape_b))], {}
