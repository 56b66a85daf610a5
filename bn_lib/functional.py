"""Batch Normalization as pure functions (chapters 02 and 03).

Layout follows PyTorch: features (channels) sit on axis 1, and the statistics are taken
over every other axis, so one code path serves (N, C), (N, C, L) and (N, C, H, W).
With m the number of values per channel (N, N*L or N*H*W), the training forward pass is
chapter 02's equations (2.1)-(2.4):

    mu      = 1/m * sum(x)                         (2.1)
    var     = 1/m * sum((x - mu)**2)               (2.2)  biased, as in the paper
    x_hat   = (x - mu) / sqrt(var + eps)           (2.3)
    y       = gamma * x_hat + beta                 (2.4)

and the backward pass is chapter 03's compact formula (3.9).
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
    "check_input",
]


def check_input(x, name="x"):
    """Return ``x`` as a floating ndarray with at least 2 dimensions, or raise.

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
    return x


def _check_channel_vector(value, name, num_channels, dtype):
    value = np.asarray(value)
    if value.shape != (num_channels,):
        raise ValueError(
            f"{name} must have shape ({num_channels},), one value per channel, "
            f"got shape {value.shape}"
        )
    return value.astype(dtype, copy=False)


def _broadcast_shape(x):
    """Shape that lines a (C,) vector up with axis 1 of x: (1, C, 1, ...)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def channel_sum(a):
    """Sum over every axis but 1, giving shape (C,).

    For ndim > 2 the inner reduction runs over contiguous memory first (fast, and
    NumPy sums it pairwise, which keeps float32 accurate), then over the batch.
    """
    if a.ndim == 2:
        return a.sum(axis=0)
    return a.reshape(a.shape[0], a.shape[1], -1).sum(axis=2).sum(axis=0)


@dataclass
class BatchNormCache:
    """What the backward pass needs from the forward pass (chapter 03)."""

    x_hat: np.ndarray  # normalized input, same shape as x
    inv_std: np.ndarray  # 1 / sqrt(var + eps), shape (C,)
    gamma: np.ndarray  # shape (C,)
    mean: np.ndarray  # batch mean, shape (C,)
    var: np.ndarray  # biased batch variance, shape (C,)
    training: bool = True  # False: statistics were constants (eval mode)


def batch_norm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode Batch Normalization: normalize with the batch's own statistics.

    Returns ``(y, cache)``; ``cache`` feeds :func:`batch_norm_backward` and also carries
    the batch mean and biased variance (the layer turns them into running statistics).

    The mean is computed after subtracting one sample per channel (a "shifted" two-pass
    algorithm), and the variance from the centred values, so float32 input with a large
    mean keeps its precision; E[x^2] - E[x]^2 would lose it to cancellation.
    """
    x = check_input(x)
    if x.dtype == np.float16:  # compute in float32, return float16
        y, cache = batch_norm_forward(x.astype(np.float32), gamma, beta, eps)
        return y.astype(np.float16), cache
    num_channels = x.shape[1]
    m = x.size // num_channels
    if m <= 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, "
            f"got input size {x.shape}"
        )
    gamma = _check_channel_vector(gamma, "gamma", num_channels, x.dtype)
    beta = _check_channel_vector(beta, "beta", num_channels, x.dtype)
    shape = _broadcast_shape(x)

    pivot = x[(0, slice(None)) + (0,) * (x.ndim - 2)].reshape(shape)
    centred = np.subtract(x, pivot)  # values near 0: their sum loses nothing
    shift = channel_sum(centred) / m
    centred -= shift.reshape(shape)  # now x - mu, eq. (2.1)
    mean = pivot.reshape(-1) + shift

    squared = np.square(centred)
    var = channel_sum(squared) / m  # eq. (2.2)
    inv_std = 1.0 / np.sqrt(var + eps)

    x_hat = np.multiply(centred, inv_std.reshape(shape), out=centred)  # eq. (2.3)
    y = np.multiply(x_hat, gamma.reshape(shape), out=squared)  # eq. (2.4)
    y += beta.reshape(shape)
    cache = BatchNormCache(x_hat=x_hat, inv_std=inv_std, gamma=gamma, mean=mean, var=var)
    return y, cache


def batch_norm_inference(x, running_mean, running_var, gamma, beta, eps=1e-5):
    """Eval-mode Batch Normalization: the statistics are fixed vectors (chapter 04).

    It is one affine map per channel, y = scale * x + shift, which is also why it can be
    folded into the layer before it (chapter 04, "Folding").
    """
    x = check_input(x)
    c = x.shape[1]
    running_mean = _check_channel_vector(running_mean, "running_mean", c, np.float64)
    running_var = _check_channel_vector(running_var, "running_var", c, np.float64)
    gamma = _check_channel_vector(gamma, "gamma", c, np.float64)
    beta = _check_channel_vector(beta, "beta", c, np.float64)
    scale = gamma / np.sqrt(running_var + eps)
    shift = beta - running_mean * scale
    shape = _broadcast_shape(x)
    return x * scale.astype(x.dtype).reshape(shape) + shift.astype(x.dtype).reshape(shape)


def batch_norm_backward(dy, cache):
    """Gradients ``(dx, dgamma, dbeta)`` of Batch Normalization (chapter 03).

    Training mode uses the compact formula, eq. (3.9) of chapter 03:

        dx = gamma * inv_std / m * (m * dy - sum(dy) - x_hat * sum(dy * x_hat))

    In eval mode the statistics are constants, so dx is simply dy * gamma * inv_std.
    """
    dy = np.asarray(dy)
    x_hat = cache.x_hat
    if dy.shape != x_hat.shape:
        raise ValueError(
            f"dy has shape {dy.shape} but the forward input had shape {x_hat.shape}"
        )
    dy = dy.astype(x_hat.dtype, copy=False)
    shape = _broadcast_shape(dy)
    m = dy.size // dy.shape[1]

    dbeta = channel_sum(dy)  # eq. (3.3)
    work = np.multiply(dy, x_hat)
    dgamma = channel_sum(work)  # eq. (3.4)
    scale = (cache.gamma * cache.inv_std).reshape(shape)
    if not cache.training:
        return np.multiply(dy, scale, out=work), dgamma, dbeta

    # eq. (3.9), arranged to reuse one buffer: dy - x_hat * dgamma/m - dbeta/m
    np.multiply(x_hat, (dgamma / m).reshape(shape), out=work)
    np.subtract(dy, work, out=work)
    work -= (dbeta / m).reshape(shape)
    work *= scale
    return work, dgamma, dbeta
