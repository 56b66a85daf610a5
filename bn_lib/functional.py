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
    "channel_dot",
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


def _as_rows(a):
    """View (N, C, ...) as (N, C, L), L = product of the trailing axes (1 for 2-D)."""
    return a.reshape(a.shape[0], a.shape[1], -1)


def channel_sum(a):
    """Sum over every axis but 1, as float64 of shape (C,).

    The inner reduction runs over contiguous memory (fast, and NumPy sums it pairwise);
    the partial sums are then added in float64, so float32 input keeps its precision
    however large the batch.
    """
    if a.ndim == 2:
        return a.sum(axis=0, dtype=np.float64)
    return _as_rows(a).sum(axis=2).sum(axis=0, dtype=np.float64)


def channel_dot(a, b):
    """Per-channel sum of a * b, shape (C,), without materializing the product."""
    a3, b3 = _as_rows(a), _as_rows(b)
    return np.einsum("ncl,ncl->c", a3, b3).astype(np.float64)


@dataclass
class BatchNormCache:
    """What the backward pass needs from the forward pass (chapter 03).

    The centred input x - mu is kept rather than x_hat: the backward pass folds the
    1/sigma into per-channel constants, which saves a pass over the data.
    """

    centred: np.ndarray  # x - mu, same shape and dtype as x
    inv_std: np.ndarray  # 1 / sqrt(var + eps), float64, shape (C,)
    gamma: np.ndarray  # float64, shape (C,)
    mean: np.ndarray  # batch mean (or running mean in eval mode), float64, shape (C,)
    var: np.ndarray  # biased batch variance (or running variance), float64, shape (C,)
    training: bool = True  # False: the statistics were constants (eval mode)

    @property
    def x_hat(self):
        """The normalized input, eq. (2.3), computed on demand."""
        return self.centred * self.inv_std.astype(self.centred.dtype).reshape(
            _broadcast_shape(self.centred)
        )


def batch_norm_forward(x, gamma, beta, eps=1e-5):
    """Training-mode Batch Normalization: normalize with the batch's own statistics.

    Returns ``(y, cache)``; ``cache`` feeds :func:`batch_norm_backward` and also carries
    the batch mean and biased variance (the layer turns them into running statistics).

    Statistics are computed in two passes with float64 accumulators: the mean first, then
    the variance of the centred values. The one-pass E[x^2] - E[x]^2 would lose float32's
    precision to cancellation when the mean is large compared with the spread.
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
    # a copy: an optimizer step between forward and backward must not change the gamma
    # that backward differentiates through
    gamma = _check_channel_vector(gamma, "gamma", num_channels, np.float64).copy()
    beta = _check_channel_vector(beta, "beta", num_channels, np.float64)
    shape = _broadcast_shape(x)

    mean = channel_sum(x) / m  # eq. (2.1)
    centred = np.subtract(x, mean.astype(x.dtype).reshape(shape))
    var = channel_dot(centred, centred) / m  # eq. (2.2)
    inv_std = 1.0 / np.sqrt(var + eps)

    # eqs. (2.3) and (2.4) at once: y = (x - mu) * (gamma / sigma) + beta
    y = np.multiply(centred, (gamma * inv_std).astype(x.dtype).reshape(shape))
    y += beta.astype(x.dtype).reshape(shape)
    cache = BatchNormCache(centred=centred, inv_std=inv_std, gamma=gamma, mean=mean, var=var)
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
    centred = cache.centred
    if dy.shape != centred.shape:
        raise ValueError(
            f"dy has shape {dy.shape} but the forward input had shape {centred.shape}"
        )
    dtype = centred.dtype
    dy = dy.astype(dtype, copy=False)
    shape = _broadcast_shape(dy)
    m = dy.size // dy.shape[1]
    inv_std = cache.inv_std

    dbeta = channel_sum(dy)  # eq. (3.3)
    dgamma = channel_dot(dy, centred) * inv_std  # eq. (3.4): sum(dy * x_hat)
    scale = cache.gamma * inv_std
    if not cache.training:
        return (np.multiply(dy, scale.astype(dtype).reshape(shape)), dgamma.astype(dtype),
                dbeta.astype(dtype))

    # eq. (3.9) with x_hat = centred * inv_std folded into per-channel constants:
    # dx = scale * (dy - dbeta/m - centred * inv_std * dgamma/m)
    dx = np.multiply(centred, (inv_std * dgamma / m).astype(dtype).reshape(shape))
    dx += (dbeta / m).astype(dtype).reshape(shape)
    np.subtract(dy, dx, out=dx)
    dx *= scale.astype(dtype).reshape(shape)
    return dx, dgamma.astype(dtype), dbeta.astype(dtype)
