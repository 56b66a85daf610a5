"""Batch Normalization as pure functions (chapters 02, 03 and 04).

Layout follows PyTorch: features (channels) sit on axis 1, and the statistics are taken
over every other axis, so one code path serves (N, C), (N, C, L) and (N, C, H, W). With
m the number of values per channel (N, N*L or N*H*W), the training forward pass is
chapter 02's equations `eq-02-mean`, `eq-02-var`, `eq-02-normalize`, `eq-02-scale-shift`:

    mean    = 1/m * sum(x)
    var     = 1/m * sum((x - mean)**2)          biased, as in the paper
    x_hat   = (x - mean) * inv_std,             inv_std = 1 / sqrt(var + eps)
    y       = gamma * x_hat + beta

and the backward pass is chapter 03's compact formula `eq-03-dx`. Names follow the
notation table of the book's introduction.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BatchNormCache",
    "batch_norm_forward",
    "batch_norm_backward",
    "batch_norm_inference",
    "channel_sum",
    "channel_dot",
    "per_channel",
    "check_input",
    "check_channel_vector",
    "check_eps",
    "normalize_with_statistics",
    "input_gradient",
    "working_dtype",
]


def check_input(x, name="x"):
    """Return ``x`` as a floating ndarray of shape (N, C, ...), or raise.

    Integer and boolean arrays are rejected rather than cast: a silent cast would hide a
    wrong dtype (such as pixel values still in 0..255) from the caller.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions (N, C, ...), got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must be a floating-point array, got dtype {x.dtype}; "
            f"convert it first, e.g. {name}.astype(np.float32)"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no channels: axis 1 of shape {x.shape} is empty")
    return x


def check_real(value, name):
    """Return ``value`` as an ndarray of real numbers (ints, floats or bools), or raise.

    A complex array is refused: NumPy would drop its imaginary part with only a warning.
    """
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real-valued array, got dtype {value.dtype}")
    return value


def check_channel_vector(value, name, num_channels):
    """Return ``value`` as a float64 array of shape (num_channels,), or raise naming it."""
    value = check_real(value, name)
    if value.shape != (num_channels,):
        raise ValueError(
            f"{name} must have shape ({num_channels},), one value per channel, "
            f"got shape {value.shape}"
        )
    return value.astype(np.float64, copy=False)


def check_eps(eps, training, what="batch_norm"):
    """Return ``eps`` as a float, or raise: training mode needs eps > 0 (a constant channel
    has variance 0, and 1 / sqrt(0) is inf), as PyTorch requires; eval mode needs eps >= 0.
    ``what`` names the caller in the message."""
    if isinstance(eps, (bool, np.bool_)) or not isinstance(eps, (int, float, np.integer,
                                                                  np.floating)):
        raise TypeError(f"{what} eps must be a number, got {type(eps).__name__}")
    if training and not eps > 0:
        raise ValueError(f"{what} eps must be positive during training, but got {eps}")
    if not eps >= 0:
        raise ValueError(f"{what} eps must be non-negative, but got {eps}")
    return float(eps)


# BN does a handful of arithmetic operations per value, so its time is set by how fast
# each pass over an input-sized array runs (chapter 07). The helpers below keep the
# formulas of this module readable while each pass runs at NumPy's best: the sums are
# BLAS matrix-vector products, the dot products BLAS dot products over contiguous rows,
# and the elementwise maps run long inner loops over cache-sized blocks.
# `benchmarks/bench_batchnorm.py` measures the result against PyTorch.

# Partial sums run over at most this many values of one channel, then float64 takes
# over: 4096 along a row, where BLAS keeps many partial sums in its vector registers;
# down the columns of (N, C), which BLAS adds one row at a time, dot products over 256
# and float32 sums over 8 rows (values with a large mean fill a float32 sum with
# rounding error as it grows).
_SUM_BLOCK = 4096
_COLUMN_BLOCK = 256
_CAST_VALUES = 2**16  # float64 column sums cast blocks of at most this size (512 KiB)
_FLOAT32_ROWS = 8
_LONG_ROW = 64  # trailing sizes L from which one reduction per (sample, channel) row pays
_RUN = 8192  # elements: NumPy's inner loops reach full speed from about this length
_BLOCKED_FROM = 8 * 2**20  # bytes: from this size on, elementwise maps work block by block
_BLOCK_BYTES = 2 * 2**20  # ... in blocks of about this size, which stay in cache


def per_channel(vector, like):
    """A (C,) vector in ``like``'s dtype, shaped (1, C, 1, ...) to broadcast along axis 1."""
    shape = (1, like.shape[1]) + (1,) * (like.ndim - 2)
    return np.asarray(vector).astype(like.dtype, copy=False).reshape(shape)


def channel_sum(a):
    """Sum over every axis but 1: (N, C, ...) -> float64 (C,) (`eq-02-mean`,
    `eq-03-dbeta`).

    Each partial sum is a BLAS matrix-vector product with a ones vector: in ``a``'s
    dtype over at most 4096 values along contiguous rows of 64 values and more; down the
    columns of (N, C) input, where BLAS adds one row at a time, over 8 rows for float32
    (within a unit in the last place of the data's mean) and in float64 otherwise. The
    partial sums are added in float64, so float32 input keeps its precision however large
    the batch (``tests/test_numerics.py`` checks N = 65536 and more against float64).
    """
    return _channel_reduce(a, None)


def channel_dot(a, b):
    """Per-channel sum of a * b: two (N, C, ...) arrays -> float64 (C,), without
    materializing the product (`eq-02-var`, `eq-03-dgamma`).

    Blocked like :func:`channel_sum`: dot products over at most 4096 values (256 for
    (N, C) input) in the inputs' dtype, ``np.vecdot`` over contiguous rows, added in
    float64.
    """
    if a.shape != b.shape:
        raise ValueError(f"channel_dot needs two arrays of one shape, got {a.shape} and {b.shape}")
    return _channel_reduce(a, b)


def _channel_reduce(a, b):
    """sum(a) (``b`` None) or sum(a * b) per channel, in blocks of at most _SUM_BLOCK."""
    a = _reduction_input(a)
    if b is not None:
        b = _reduction_input(b)
        common = np.result_type(a, b)
        a, b = a.astype(common, copy=False), b.astype(common, copy=False)
    n, c = a.shape[0], a.shape[1]
    length = math.prod(a.shape[2:])  # spelled out: an empty batch has no size to divide
    if length >= _LONG_ROW:
        # one row per (sample, channel), (N * C, L): a partial sum per row and piece
        rows_a = a.reshape(n * c, length)
        rows_b = None if b is None else b.reshape(n * c, length)
        total = np.zeros(c)
        for j in range(0, length, _SUM_BLOCK):
            piece = rows_a[:, j:j + _SUM_BLOCK]
            if rows_b is None:
                partial = piece @ _ones(piece.shape[1], a.dtype)
            else:
                partial = np.vecdot(piece, rows_b[:, j:j + _SUM_BLOCK])
            total += partial.reshape(n, c).sum(axis=0, dtype=np.float64)
        return total
    # short rows: the columns of (N, C * L). BLAS adds a column one row at a time, so a
    # float32 partial sum of values with a large mean fills with rounding error as it
    # grows: float32 sums run over _FLOAT32_ROWS rows at a time (one batched
    # matrix-vector product), other sums in float64 (a float64 ones vector casts each
    # block); the dot products, of centred values or gradients, run in the inputs' dtype
    # over blocks of _COLUMN_BLOCK values
    cols_a = a.reshape(n, c * length)
    cols_b = None if b is None else b.reshape(n, c * length)
    if b is None and a.dtype == np.float32 and c * length >= _LONG_ROW:
        total = _float32_column_sum(cols_a)
    else:
        total = np.zeros(c * length)
        if b is None:  # each block's float64 copy at most _CAST_VALUES long
            samples = max(1, min(_SUM_BLOCK // max(length, 1),
                                 _CAST_VALUES // max(c * length, 1)))
        else:
            samples = max(1, _COLUMN_BLOCK // max(length, 1))
        for i in range(0, n, samples):
            block = cols_a[i:i + samples]
            if cols_b is None:
                total += _ones(block.shape[0], np.float64) @ block
            else:
                total += np.einsum("nk,nk->k", block, cols_b[i:i + samples])
    return total.reshape(c, length).sum(axis=1) if length != 1 else total


def _float32_column_sum(cols):
    """Column sums of a float32 (N, K) array, float64 (K,): partial sums over
    _FLOAT32_ROWS rows, each within a few roundings of its values, added in float64."""
    n, k = cols.shape
    main = n - n % _FLOAT32_ROWS
    partial = _ones(_FLOAT32_ROWS, np.float32) @ cols[:main].reshape(-1, _FLOAT32_ROWS, k)
    total = partial.sum(axis=0, dtype=np.float64)
    if main < n:
        total += cols[main:].sum(axis=0, dtype=np.float64)
    return total


@functools.lru_cache(maxsize=64)
def _ones(length, dtype):
    """A read-only ones vector: the other factor of a sum as a matrix-vector product."""
    ones = np.ones(length, dtype)
    ones.flags.writeable = False
    return ones


def _reduction_input(a):
    """``a`` as a C-contiguous array of float32 or float64 (float16 becomes float32, any
    other dtype float64), at least 2-D."""
    a = np.asarray(a)
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float32 if a.dtype == np.float16 else np.float64)
    if a.ndim < 2:
        raise ValueError(f"expected an array of shape (N, C, ...), got shape {a.shape}")
    return np.ascontiguousarray(a)


def _channel_affine(x, scale=None, shift=None, subtract_from=None, rescale=None):
    """Per channel, ``x * scale + shift``; given ``subtract_from`` (an array of x's shape)
    and ``rescale``, ``(subtract_from - (x * scale + shift)) * rescale`` instead
    (`eq-02-normalize`, `eq-02-scale-shift`, `eq-03-dx`). The vectors are (C,); a
    ``scale`` or ``shift`` of None is left out. Returns a new array of x's shape and dtype.

    Broadcasting a (1, C, 1, ...) vector runs NumPy's inner loop over only L values (C
    for (N, C) input) at a time, about half as fast as a copy. Here the vectors are
    expanded into patterns of at least _RUN contiguous values (:func:`_runs`), so every
    operation is a few long loops. Arrays of 8 MiB and more go block by block, so that
    the operations after the first find their operands still in cache; arrays of fewer
    than _RUN values broadcast the vectors, as copying them into patterns would cost more
    than the loops save.
    """
    x = np.ascontiguousarray(x)
    out = np.empty(x.shape, x.dtype)
    if x.size == 0:  # an empty batch (a rank of a data-parallel world may have one)
        return out
    if subtract_from is not None:
        subtract_from = np.ascontiguousarray(subtract_from, dtype=x.dtype)
    if x.size < _RUN:  # too small for patterns to pay: broadcast (1, C, 1, ...) vectors
        _affine_into(out, x, *(None if v is None else per_channel(v, x)
                               for v in (scale, shift, rescale)), subtract_from)
        return out
    for samples, view, pattern_shape in _runs(x.shape):
        s, t, k = (None if v is None else _expand(v, pattern_shape, x.dtype)
                   for v in (scale, shift, rescale))
        x_v, out_v = x[samples].reshape(view), out[samples].reshape(view)
        from_v = None if subtract_from is None else subtract_from[samples].reshape(view)
        for block in _blocks(out_v):
            sub = (slice(None),) + block[1:]  # the pattern's part of the block
            _affine_into(out_v[block], x_v[block], *(None if v is None else v[sub]
                                                     for v in (s, t, k)),
                         None if from_v is None else from_v[block])
    return out


def _affine_into(out, x, scale, shift, rescale, subtract_from):
    """out = x * scale + shift, then out = (subtract_from - out) * rescale, for arrays
    that broadcast together; a vector of None is left out."""
    if scale is not None:
        np.multiply(x, scale, out=out)
        if shift is not None:
            out += shift
    elif shift is not None:
        np.add(x, shift, out=out)
    else:
        out[...] = x
    if subtract_from is not None:
        np.subtract(subtract_from, out, out=out)
        out *= rescale


def _runs(shape):
    """How :func:`_channel_affine` views an array of ``shape`` (N, C, ...): a list of
    (samples, view, pattern_shape), ``x[samples].reshape(view)`` broadcasting against a
    vector expanded to ``pattern_shape``.

    Long positions (L of _RUN and more): (N, C, L) against (1, C, 1). Short ones: groups
    of r samples, (N / r, r, C, L) against the contiguous (1, r, C, L) pattern, r * C * L
    >= _RUN (the last N % r samples form a shorter group); unless that pattern would be
    more than a quarter of the array, then as for long positions.
    """
    n, c = shape[0], shape[1]
    length = math.prod(shape[2:])
    if length < _RUN:
        r = min(n, -(-_RUN // max(c * length, 1)))
        if r * c * length <= max(_RUN, n * c * length // 4):
            main = n - n % r
            runs = [(slice(0, main), (-1, r, c, length), (1, r, c, length))]
            if main < n:
                rest = n - main
                runs.append((slice(main, n), (1, rest, c, length), (1, rest, c, length)))
            return runs
    return [(slice(None), (n, c, length), (1, c, 1))]


def _expand(vector, pattern_shape, dtype):
    """A (C,) vector repeated into a contiguous array of ``pattern_shape`` (C on axis -2
    of a 4-D pattern, axis 1 of a 3-D one)."""
    vector = np.asarray(vector)
    pattern = np.empty(pattern_shape, dtype)
    pattern[...] = vector.reshape((1,) * (len(pattern_shape) - 2) + (-1, 1))
    return pattern


def _blocks(view):
    """Index tuples that cut a view of _runs into pieces of about _BLOCK_BYTES: groups
    along axis 0, else (one sample too large) groups of channels; the whole view when
    it is below _BLOCKED_FROM."""
    if view.nbytes < _BLOCKED_FROM or view.shape[0] == 0:
        return [(slice(None), slice(None))]
    per_row = view.nbytes // view.shape[0]
    if per_row <= _BLOCK_BYTES or view.ndim == 4:
        step = max(1, _BLOCK_BYTES // per_row)
        return [(slice(i, i + step), slice(None)) for i in range(0, view.shape[0], step)]
    # one (sample, channel) row of a 3-D (N, C, L) view per block piece
    step = max(1, _BLOCK_BYTES // (per_row // view.shape[1]))
    return [(slice(i, i + 1), slice(j, j + step))
            for i in range(view.shape[0]) for j in range(0, view.shape[1], step)]


def working_dtype(dtype):
    """float16 is computed in float32 (its 11-bit mantissa cannot hold the statistics)."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


@dataclass
class BatchNormCache:
    """What the backward pass needs from a forward pass (chapter 03).

    The vectors are float64 of shape (C,). ``centred`` = x - mean has the input's shape
    in the working dtype (float32 for float16 input, else the input's); it is kept rather
    than x_hat because the backward pass folds inv_std into per-channel constants, which
    saves a pass over the data. ``dtype`` is the input's, and so dx's.
    """

    centred: np.ndarray  # x - mean
    inv_std: np.ndarray  # 1 / sqrt(var + eps)
    gamma: np.ndarray  # a copy: an optimizer step before backward must not change it
    mean: np.ndarray  # batch mean (training) or running mean (eval)
    var: np.ndarray  # biased batch variance (training) or running variance (eval)
    dtype: np.dtype  # dtype of the forward input
    training: bool = True  # False: the statistics were constants (eval mode)

    @property
    def x_hat(self):
        """The normalized input, `eq-02-normalize`, computed on demand."""
        return self.centred * per_channel(self.inv_std, self.centred)


def normalize_with_statistics(centred, mean, var, gamma, beta, eps, dtype, training):
    """y = (x - mean) * (gamma * inv_std) + beta, and the cache: the last step shared by
    the training and eval forward passes (`eq-02-normalize`, `eq-02-scale-shift`)."""
    inv_std = 1.0 / np.sqrt(var + eps)
    y = _channel_affine(centred, gamma * inv_std, beta)
    cache = BatchNormCache(centred, inv_std, gamma, mean, var, dtype, training)
    return y.astype(dtype, copy=False), cache


def batch_norm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode Batch Normalization: normalize with the batch's own statistics.

    Inputs: ``x`` of shape (N, C, ...), ``gamma`` and ``beta`` of shape (C,).
    Returns ``(y, cache)``: ``y`` has x's shape and dtype; ``cache`` feeds
    :func:`batch_norm_backward` and carries the batch mean and biased variance, which the
    layer turns into running statistics (chapter 04).

    ``eps`` must be positive, as in PyTorch: with eps = 0 a constant channel (variance 0)
    would normalize to 0/0 = NaN, with only a RuntimeWarning (chapter 02 discusses eps).

    The statistics take two passes with float64 accumulators, the mean first, then the
    variance of the centred values: the one-pass E[x^2] - E[x]^2 would lose float32's
    precision to cancellation when the mean is large compared with the spread.
    """
    x = check_input(x)
    eps = check_eps(eps, training=True)
    num_channels = x.shape[1]
    m = x.size // num_channels
    if m <= 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, "
            f"got input size {x.shape}"
        )
    gamma = check_channel_vector(gamma, "gamma", num_channels).copy()
    beta = check_channel_vector(beta, "beta", num_channels)
    xw = x.astype(working_dtype(x.dtype), copy=False)

    mean = channel_sum(xw) / m  # eq-02-mean
    centred = _channel_affine(xw, shift=-mean)  # x - mean
    var = channel_dot(centred, centred) / m  # eq-02-var
    return normalize_with_statistics(centred, mean, var, gamma, beta, eps, x.dtype,
                                     training=True)


def batch_norm_inference(x, running_mean, running_var, gamma, beta, eps=1e-5):
    """Eval-mode Batch Normalization: the statistics are fixed vectors (chapter 04,
    `eq-04-infer`).

    Inputs: ``x`` of shape (N, C, ...); ``running_mean``, ``running_var``, ``gamma`` and
    ``beta`` of shape (C,). Returns ``(y, cache)`` like :func:`batch_norm_forward`; the
    cache's ``training`` is False, so the backward pass treats the statistics as
    constants. Per channel it is one affine map, y = gamma * inv_std * (x - mean) + beta,
    which is why it can be folded into the layer before it (`eq-04-fold`).
    """
    x = check_input(x)
    eps = check_eps(eps, training=False)
    c = x.shape[1]
    mean = check_channel_vector(running_mean, "running_mean", c).copy()
    var = check_channel_vector(running_var, "running_var", c).copy()
    gamma = check_channel_vector(gamma, "gamma", c).copy()
    beta = check_channel_vector(beta, "beta", c)
    xw = x.astype(working_dtype(x.dtype), copy=False)
    centred = _channel_affine(xw, shift=-mean)  # x - mean
    return normalize_with_statistics(centred, mean, var, gamma, beta, eps, x.dtype,
                                     training=False)


def batch_norm_backward(dy, cache):
    """Gradients of Batch Normalization (chapter 03).

    Inputs: ``dy``, the gradient of the loss with respect to y, of the forward input's
    shape; ``cache`` from :func:`batch_norm_forward` or :func:`batch_norm_inference`.
    Returns ``(dx, dgamma, dbeta)``: dx of x's shape and dtype, dgamma and dbeta of shape
    (C,). In training mode dx is the compact formula `eq-03-dx`,

        dx = gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma),

    in eval mode (constant statistics) simply dy * gamma * inv_std.
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError(
            "cache must be the BatchNormCache returned by batch_norm_forward or "
            f"batch_norm_inference, got {type(cache).__name__}"
        )
    dy = check_real(dy, "dy")
    centred, inv_std = cache.centred, cache.inv_std
    if dy.shape != centred.shape:
        raise ValueError(
            f"dy has shape {dy.shape} but the forward input had shape {centred.shape}"
        )
    dy = dy.astype(centred.dtype, copy=False)
    m = dy.size // dy.shape[1]

    dbeta = channel_sum(dy)  # eq-03-dbeta
    dgamma = channel_dot(dy, centred) * inv_std  # eq-03-dgamma: sum(dy * x_hat)
    if cache.training:
        dx = input_gradient(dy, cache, dbeta, dgamma, m)
    else:
        dx = _channel_affine(dy, cache.gamma * inv_std)
    return (dx.astype(cache.dtype, copy=False), dgamma.astype(cache.dtype),
            dbeta.astype(cache.dtype))


def input_gradient(dy, cache, sum_dy, sum_dy_x_hat, m):
    """Training-mode dx of `eq-03-dx` from the per-channel sums of dy and dy * x_hat over
    the m values of each channel, in the working dtype. Shared with the synchronized
    backward pass (chapter 10, `eq-10-dx`), whose sums and m are those of the global batch."""
    centred, inv_std = cache.centred, cache.inv_std
    # eq-03-dx as gamma * inv_std * (dy - (x_hat * sum_dy_x_hat / m + sum_dy / m)), with
    # x_hat = centred * inv_std folded into the per-channel factor of the first term
    return _channel_affine(centred, inv_std * sum_dy_x_hat / m, sum_dy / m,
                           subtract_from=dy, rescale=cache.gamma * inv_std)
