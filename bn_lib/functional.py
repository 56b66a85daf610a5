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
notation table of the book's introduction; the input checks live in ``bn_lib.checks``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .checks import (
    check_channel_vector,
    check_dy,
    check_eps,
    check_input,
    check_values_per_channel,
)

__all__ = [
    "BatchNormCache",
    "batch_norm_forward",
    "batch_norm_backward",
    "batch_norm_inference",
    "batch_statistics",
    "channel_sum",
    "channel_dot",
    "per_channel",
    "input_gradient",
    "working_dtype",
]


def per_channel(vector, like):
    """A (C,) vector in ``like``'s dtype, shaped (1, C, 1, ...) to broadcast along axis 1."""
    shape = (1, like.shape[1]) + (1,) * (like.ndim - 2)
    return np.asarray(vector).astype(like.dtype, copy=False).reshape(shape)


def working_dtype(dtype):
    """float16 is computed in float32 (its 11-bit mantissa cannot hold the statistics)."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


def channel_sum(a):
    """Sum over every axis but 1: (N, C, ...) -> float64 (C,) (`eq-02-mean`,
    `eq-03-dbeta`).

    Accurate where it matters, at no cost to the formulas that call it: the
    values of a channel are first summed within each sample (a contiguous row,
    which NumPy sums pairwise) or, where those rows are short, down the columns
    of (N, C * L) within groups of 8 samples; the partial sums are then added
    in float64. So the rounding error of float32 input does not grow with the
    batch, where a float32 column sum of 65,536 values with mean 1e4 misses the
    mean by thousands of units in its last place.
    """
    n, c = a.shape[0], a.shape[1]
    # values per sample and channel: 1 for (N, C)
    length = math.prod(a.shape[2:])
    partial_dtype = np.result_type(a.dtype, np.float32)
    if length >= 64:  # long rows: one partial sum per sample and channel
        rows = a.reshape(n, c, length)
        per_sample = rows.sum(axis=2, dtype=partial_dtype)
        return per_sample.sum(axis=0, dtype=np.float64)
    columns = a.reshape(n, c * length)
    whole = n - n % 8
    groups = columns[:whole].reshape(whole // 8, 8, c * length)
    group_sums = groups.sum(axis=1, dtype=partial_dtype)
    rest = columns[whole:].sum(axis=0, dtype=np.float64)
    total = group_sums.sum(axis=0, dtype=np.float64) + rest
    return total.reshape(c, length).sum(axis=1)


def channel_dot(a, b):
    """Per-channel sum of a * b: two (N, C, ...) arrays -> float64 (C,) (`eq-02-var`,
    `eq-03-dgamma`)."""
    if a.shape != b.shape:
        raise ValueError(f"channel_dot needs two arrays of one shape, got {a.shape} and {b.shape}")
    return channel_sum(np.multiply(a, b, dtype=np.result_type(a, b, np.float32)))


@dataclass
class BatchNormCache:
    """What the backward pass needs from a forward pass (chapter 03).

    The vectors are float64 of shape (C,). ``centred`` = x - mean has the input's shape
    in the working dtype (float32 for float16 input, else the input's); it is kept rather
    than x_hat because inv_std then folds into per-channel factors, which saves a pass
    over the data. ``dtype`` is the input's, and so dx's.
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


def batch_statistics(x):
    """Mean, biased variance and centred values of a training batch (the one
    statistics path of bn_lib's BatchNorm, BatchRenorm, LayerNorm and
    GroupNorm; SyncBatchNorm's ``global_moments`` is its counterpart across
    processes).

    Input ``x`` of shape (N, C, ...). Returns ``(mean, var, centred)``:
    float64 (C,) vectors and x - mean in the working dtype. Two passes, the
    mean first, then the variance of the centred values: the one-pass
    E[x^2] - E[x]^2 would lose float32's precision to cancellation when the
    mean is large compared with the spread.
    """
    m = x.size // x.shape[1]
    check_values_per_channel(m, x.shape)
    x = x.astype(working_dtype(x.dtype), copy=False)
    mean = channel_sum(x) / m  # eq-02-mean
    centred = x - per_channel(mean, x)
    var = channel_dot(centred, centred) / m  # eq-02-var
    return mean, var, centred


def normalize(centred, mean, var, gamma, beta, eps, dtype, training):
    """y = gamma * (x - mean) * inv_std + beta, and the cache for the backward
    pass: the step shared by every forward pass (`eq-02-normalize`,
    `eq-02-scale-shift`)."""
    inv_std = 1.0 / np.sqrt(var + eps)
    y = centred * per_channel(gamma * inv_std, centred)
    y += per_channel(beta, centred)
    cache = BatchNormCache(centred, inv_std, gamma, mean, var, dtype, training)
    return y.astype(dtype, copy=False), cache


def batch_norm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode Batch Normalization: normalize with the batch's own
    statistics.

    Inputs: ``x`` of shape (N, C, ...), ``gamma`` and ``beta`` of shape (C,).
    Returns ``(y, cache)``: ``y`` has x's shape and dtype; ``cache`` feeds
    :func:`batch_norm_backward` and carries the batch mean and biased variance,
    which the layer turns into running statistics (chapter 04).

    ``eps`` must be positive, as in PyTorch: with eps = 0 a constant channel
    (variance 0) would normalize to 0/0 = NaN (chapter 02 discusses eps).
    """
    x = check_input(x)
    eps = check_eps(eps, training=True)
    gamma = check_channel_vector(gamma, "gamma", x.shape[1]).copy()
    beta = check_channel_vector(beta, "beta", x.shape[1])
    mean, var, centred = batch_statistics(x)  # eq-02-mean, eq-02-var
    return normalize(centred, mean, var, gamma, beta, eps, x.dtype,
                     training=True)


def batch_norm_inference(x, running_mean, running_var, gamma, beta, eps=1e-5):
    """Eval-mode Batch Normalization: the statistics are fixed vectors
    (chapter 04, `eq-04-infer`).

    Inputs: ``x`` of shape (N, C, ...); ``running_mean``, ``running_var``,
    ``gamma`` and ``beta`` of shape (C,). Returns ``(y, cache)`` like
    :func:`batch_norm_forward`; the cache's ``training`` is False, so the
    backward pass treats the statistics as constants. Per channel it is one
    affine map, y = gamma * inv_std * (x - mean) + beta, which is why it can be
    folded into the layer before it (`eq-04-fold`).
    """
    x = check_input(x)
    eps = check_eps(eps, training=False)
    c = x.shape[1]
    mean = check_channel_vector(running_mean, "running_mean", c).copy()
    var = check_channel_vector(running_var, "running_var", c).copy()
    gamma = check_channel_vector(gamma, "gamma", c).copy()
    beta = check_channel_vector(beta, "beta", c)
    xw = x.astype(working_dtype(x.dtype), copy=False)
    centred = xw - per_channel(mean, xw)
    return normalize(centred, mean, var, gamma, beta, eps, x.dtype,
                     training=False)


def batch_norm_backward(dy, cache):
    """Gradients of Batch Normalization (chapter 03).

    Inputs: ``dy``, the gradient of the loss with respect to y, of the forward
    input's shape; ``cache`` from :func:`batch_norm_forward` or
    :func:`batch_norm_inference`. Returns ``(dx, dgamma, dbeta)``: dx of x's
    shape and dtype, dgamma and dbeta of shape (C,). In training mode dx is the
    compact formula `eq-03-dx`; in eval mode (constant statistics) simply
    dy * gamma * inv_std.
    """
    if not isinstance(cache, BatchNormCache):
        raise TypeError(
            "cache must be the BatchNormCache returned by batch_norm_forward "
            f"or batch_norm_inference, got {type(cache).__name__}"
        )
    dy = check_dy(dy, cache.centred.shape)
    dy = dy.astype(cache.centred.dtype, copy=False)
    m = dy.size // dy.shape[1]

    dbeta = channel_sum(dy)  # eq-03-dbeta
    # eq-03-dgamma: sum(dy * x_hat), with inv_std taken out of the sum
    dgamma = channel_dot(dy, cache.centred) * cache.inv_std
    if cache.training:
        dx = input_gradient(dy, cache, dbeta, dgamma, m)
    else:
        dx = dy * per_channel(cache.gamma * cache.inv_std, dy)
    return (dx.astype(cache.dtype, copy=False), dgamma.astype(cache.dtype),
            dbeta.astype(cache.dtype))


def input_gradient(dy, cache, sum_dy, sum_dy_x_hat, m):
    """Training-mode dx of `eq-03-dx` from the per-channel sums of dy and
    dy * x_hat over the m values of each channel. Shared with the synchronized
    backward pass (chapter 10, `eq-10-dx`), whose sums and m are those of the
    global batch.

        dx = gamma * inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    """
    centred, inv_std = cache.centred, cache.inv_std
    # built in place in one array, last term first: -x_hat * mean(dy * x_hat);
    # x_hat = centred * inv_std, so inv_std joins that term's per-channel factor
    dx = centred * per_channel(-inv_std * sum_dy_x_hat / m, dy)
    dx += dy
    dx -= per_channel(sum_dy / m, dy)  # - mean(dy)
    dx *= per_channel(cache.gamma * inv_std, dy)
    return dx
