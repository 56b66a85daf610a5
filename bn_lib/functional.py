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


def per_channel(vector, like):
    """A (C,) vector in ``like``'s dtype, shaped (1, C, 1, ...) to broadcast along axis 1."""
    shape = (1, like.shape[1]) + (1,) * (like.ndim - 2)
    return np.asarray(vector).astype(like.dtype, copy=False).reshape(shape)


def channel_sum(a):
    """Sum over every axis but 1: (N, C, ...) -> float64 (C,).

    The inner reduction runs over contiguous memory (NumPy sums it pairwise); the partial
    sums are then added in float64, so float32 input keeps its precision however large
    the batch.
    """
    if a.ndim == 2:
        return a.sum(axis=0, dtype=np.float64)
    return _as_rows(a).sum(axis=2).sum(axis=0, dtype=np.float64)


def channel_dot(a, b):
    """Per-channel sum of a * b: two (N, C, ...) arrays -> float64 (C,), without
    materializing the product.

    ``einsum`` casts its operands to float64 in small buffers and accumulates in float64:
    left in float32, its running sum over millions of values loses about 1e-3 of the result.
    """
    return np.einsum("ncl,ncl->c", _as_rows(a), _as_rows(b), dtype=np.float64)


def _as_rows(a):
    """View (N, C, ...) as (N, C, L), L = product of the trailing axes (1 for 2-D)."""
    # the trailing size spelled out: -1 cannot be inferred when the batch is empty
    return a.reshape(a.shape[0], a.shape[1], int(np.prod(a.shape[2:])))


def _working_dtype(dtype):
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


def _normalize(centred, mean, var, gamma, beta, eps, dtype, training):
    """y = (x - mean) * (gamma * inv_std) + beta, and the cache: the last step shared by
    the training and eval forward passes (`eq-02-normalize`, `eq-02-scale-shift`)."""
    inv_std = 1.0 / np.sqrt(var + eps)
    y = centred * per_channel(gamma * inv_std, centred)
    y += per_channel(beta, centred)
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
    xw = x.astype(_working_dtype(x.dtype), copy=False)

    mean = channel_sum(xw) / m  # eq-02-mean
    centred = xw - per_channel(mean, xw)
    var = channel_dot(centred, centred) / m  # eq-02-var
    return _normalize(centred, mean, var, gamma, beta, eps, x.dtype, training=True)


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
    xw = x.astype(_working_dtype(x.dtype), copy=False)
    centred = xw - per_channel(mean, xw)
    return _normalize(centred, mean, var, gamma, beta, eps, x.dtype, training=False)


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
        dx = _input_gradient(dy, cache, dbeta, dgamma, m)
    else:
        dx = dy * per_channel(cache.gamma * inv_std, dy)
    return (dx.astype(cache.dtype, copy=False), dgamma.astype(cache.dtype),
            dbeta.astype(cache.dtype))


def _input_gradient(dy, cache, sum_dy, sum_dy_x_hat, m):
    """Training-mode dx of `eq-03-dx` from the per-channel sums of dy and dy * x_hat over
    the m values of each channel, in the working dtype. Shared with the synchronized
    backward pass (chapter 10, `eq-10-dx`), whose sums and m are those of the global batch."""
    centred, inv_std = cache.centred, cache.inv_std
    # eq-03-dx as gamma * inv_std * (dy - sum_dy / m - x_hat * sum_dy_x_hat / m), with
    # x_hat = centred * inv_std folded into the per-channel factor of the last term
    dx = centred * per_channel(inv_std * sum_dy_x_hat / m, dy)
    dx += per_channel(sum_dy / m, dy)
    np.subtract(dy, dx, out=dx)
    dx *= per_channel(cache.gamma * inv_std, dy)
    return dx
