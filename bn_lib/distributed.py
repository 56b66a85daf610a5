"""Batch Normalization across processes: synchronized BN (chapter 10).

Under data parallelism each of W processes holds a slice x_r of the global batch, with m_r
values per channel (m_r may differ between processes, and may be 0). Synchronized BN
normalizes every slice with the statistics of the *global* batch, M = sum_r m_r values per
channel. The math is the book's; the transport is a function the caller supplies,

    allreduce_sum(a) -> the element-wise sum of ``a`` over all processes (same shape),

so the same code runs on threads (:class:`ThreadWorld`), on ``torch.distributed``
(``bn_lib.torch_distributed``, imported by name) or on anything else that can add arrays.

Forward, two all-reduces (chapter 10, `eq-10-mean` and `eq-10-var`):

    round 1:  [sum_r sum(x_r), sum_r m_r]            C + 1 floats  -> mu, M
    round 2:  sum_r sum((x_r - mu)**2)               C floats      -> var

Backward, one all-reduce of 2C floats (`eq-10-sums`): sum(dy) and sum(dy * x_hat) over the
global batch, which is all that chapter 03's compact formula (`eq-03-dx`) needs besides M
(`eq-10-dx`).

The second round costs one more latency than PyTorch's single all-gather of every
process's (mean, 1/std, count), but it centres the data on the global mean before squaring,
so it is as stable as the single-device two-pass variance of chapter 02 (see
:func:`merge_moments` for the one-round alternative and chapter 10 for the comparison in
float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .batchnorm import BatchNorm
from .checks import (
    check_channel_vector,
    check_channels,
    check_dy,
    check_eps,
    check_input,
    check_values_per_channel,
)
from .functional import (
    BatchNormCache,
    batch_norm_backward,
    channel_dot,
    channel_sum,
    input_gradient,
    normalize,
    per_channel,
    working_dtype,
)
from .module import replace_modules

__all__ = [
    "SyncBatchNormCache",
    "global_moments",
    "sync_batch_norm_forward",
    "sync_batch_norm_backward",
    "merge_moments",
    "SyncBatchNorm",
]


def _world_of_one(a):
    return a


def _reduce(allreduce_sum, a):
    """Call the collective on a float64 vector and check what comes back."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    out = np.asarray(allreduce_sum(a), dtype=np.float64)
    if out.shape != a.shape:
        raise ValueError(
            f"allreduce_sum returned shape {out.shape} for an input of shape {a.shape}; "
            "it must return the element-wise sum over processes, same shape"
        )
    return out


@dataclass
class SyncBatchNormCache(BatchNormCache):
    """:class:`BatchNormCache` plus the global number of values per channel, M."""

    count: int = 0


def global_moments(x, allreduce_sum):
    """Mean, biased variance and count of each channel over the global batch.

    Inputs:
    - x: this process's slice, shape (m_r, C, ...); m_r may be 0
    - allreduce_sum: the collective (see the module docstring)

    Returns ``(mean, var, count, centred)``: float64 arrays of shape (C,), the
    global number of values per channel M (an int), and x - mean in the
    working dtype (x's, or float32 for float16). Chapter 10, `eq-10-mean` and
    `eq-10-var`: two rounds, so the squares are taken around the global mean.
    """
    xw = x.astype(working_dtype(x.dtype), copy=False)
    local_count = x.size // x.shape[1]
    # round 1
    totals = _reduce(allreduce_sum, np.append(channel_sum(xw), local_count))
    count = int(round(totals[-1]))
    check_values_per_channel(
        count, f"{x.shape} here, {count} values per channel in all"
    )
    mean = totals[:-1] / count  # eq-10-mean
    centred = xw - per_channel(mean, xw)
    # round 2, eq-10-var
    var = _reduce(allreduce_sum, channel_dot(centred, centred)) / count
    return mean, var, count, centred


def sync_batch_norm_forward(x, gamma, beta, allreduce_sum, eps=1e-5):
    """Training-mode BN of this process's slice with the global batch's statistics.

    Inputs:
    - x: shape (m_r, C, ...), this process's part of the global batch (m_r may be 0)
    - gamma, beta: shape (C,), the same on every process
    - allreduce_sum: the collective; every process must call this function together

    Returns ``(y, cache)`` like :func:`bn_lib.batch_norm_forward`: y has x's shape and
    dtype; ``cache`` (a :class:`SyncBatchNormCache`) holds the global mean, the biased
    global variance and the global count M, for the backward pass and the running
    statistics. With ``allreduce_sum=lambda a: a`` (a world of one) it computes exactly
    what :func:`bn_lib.batch_norm_forward` does.
    """
    x = check_input(x)
    eps = check_eps(eps, training=True, what="sync_batch_norm")
    num_channels = x.shape[1]
    gamma = check_channel_vector(gamma, "gamma", num_channels).copy()
    beta = check_channel_vector(beta, "beta", num_channels)
    mean, var, count, centred = global_moments(x, allreduce_sum)
    # eq-02-normalize and eq-02-scale-shift with the global statistics
    y, cache = normalize(centred, mean, var, gamma, beta, eps, x.dtype, training=True)
    return y, SyncBatchNormCache(**vars(cache), count=count)


def sync_batch_norm_backward(dy, cache, allreduce_sum):
    """Gradients of synchronized BN for this process's slice (chapter 10,
    `eq-10-dx`).

    Inputs:
    - dy: shape (m_r, C, ...), the gradient of the loss with respect to this
      slice's y
    - cache: from :func:`sync_batch_norm_forward`
    - allreduce_sum: the collective, called once with 2C floats

    Returns ``(dx, dgamma, dbeta)``. dx is this slice's part of the gradient
    with respect to the global batch. dgamma and dbeta are this process's
    *contributions* (sums over its own slice), as in
    ``torch.nn.SyncBatchNorm``: their sum over processes is the global
    gradient, and a data-parallel wrapper's gradient all-reduce (which
    averages) does the rest, like it does for every other parameter.
    """
    if not isinstance(cache, BatchNormCache) or (
            cache.training and not isinstance(cache, SyncBatchNormCache)):
        raise TypeError("cache must be the SyncBatchNormCache returned by "
                        f"sync_batch_norm_forward, got {type(cache).__name__}")
    dy = check_dy(dy, cache.centred.shape)
    if not cache.training:
        return batch_norm_backward(dy, cache)
    dy = dy.astype(cache.centred.dtype, copy=False)
    num_channels = dy.shape[1]
    dbeta = channel_sum(dy)  # this slice's sum(dy)
    # this slice's sum(dy * x_hat)
    dgamma = channel_dot(dy, cache.centred) * cache.inv_std
    sums = _reduce(allreduce_sum, np.concatenate([dbeta, dgamma]))  # eq-10-sums
    sum_dy, sum_dy_x_hat = sums[:num_channels], sums[num_channels:]
    # eq-10-dx, with the global sums and count
    dx = input_gradient(dy, cache, sum_dy, sum_dy_x_hat, cache.count)
    return (dx.astype(cache.dtype, copy=False), dgamma.astype(cache.dtype),
            dbeta.astype(cache.dtype))


def merge_moments(counts, means, m2s):
    """Chan's pairwise merge of per-process moments (chapter 10, `eq-10-chan`).

    Inputs: ``counts`` of shape (W,), ``means`` and ``m2s`` (sums of squared deviations
    from each process's own mean) of shape (W, C), one row per process, in any float dtype.
    Returns ``(count, mean, m2)`` of the union. This is what ``torch.nn.SyncBatchNorm``
    computes after an all-gather of every process's (mean, 1/std, count): one round of
    communication instead of two, W (2C + 1) floats instead of 2C + 1. Rows are merged in
    order, in the dtype of ``means``, so the rounding of a float32 merge can be studied.
    """
    means, m2s = np.asarray(means), np.asarray(m2s)
    counts = np.asarray(counts, dtype=means.dtype)
    if means.ndim != 2 or m2s.shape != means.shape:
        raise ValueError(f"means and m2s must both have shape (W, C), got {means.shape} "
                         f"and {m2s.shape}")
    if counts.shape != means.shape[:1]:
        raise ValueError(f"counts must have shape ({means.shape[0]},), one count per row of "
                         f"means, got shape {counts.shape}")
    if not np.all(counts >= 0):
        raise ValueError(f"counts must be non-negative, got {counts}")
    count, mean, m2 = counts[0], means[0].copy(), m2s[0].copy()
    for n_b, mean_b, m2_b in zip(counts[1:], means[1:], m2s[1:]):
        total = count + n_b
        if total == 0:
            continue
        delta = mean_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta * delta * (count * n_b / total)
        count = total
    return count, mean, m2


class SyncBatchNorm(BatchNorm):
    """:class:`BatchNorm` whose training-mode statistics are those of the global batch.

    ``allreduce_sum`` is the collective (None: a world of one, where the layer equals
    ``BatchNorm``). The running statistics are updated from the global mean and the
    global variance made unbiased with the global count, M / (M - 1), so every process
    keeps the same running statistics. Eval mode is BatchNorm's and communicates nothing
    (as in ``torch.nn.SyncBatchNorm``, also with ``track_running_stats=False``, where each
    process then normalizes with its own batch). ``backward`` leaves dgamma and dbeta as
    this process's contributions (see :func:`sync_batch_norm_backward`).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float64, allreduce_sum=None):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, dtype=dtype)
        self.allreduce_sum = allreduce_sum or _world_of_one

    def __repr__(self):
        return "Sync" + super().__repr__()

    @classmethod
    def convert_sync_batchnorm(cls, module, allreduce_sum):
        """Replace every BatchNorm in ``module``, at any depth (``module`` itself too), by a
        SyncBatchNorm with the same switches, parameters and running statistics, as
        PyTorch's ``SyncBatchNorm.convert_sync_batchnorm``. Returns the converted module.
        A BatchRenorm is refused: it has no synchronized version."""
        def convert(layer):
            if not isinstance(layer, BatchNorm):
                return None
            if type(layer) not in (BatchNorm, cls):
                raise TypeError(f"{layer!r} has no synchronized version")
            sync = cls(layer.num_features, eps=layer.eps, momentum=layer.momentum,
                       affine=layer.affine, track_running_stats=layer.track_running_stats,
                       dtype=layer.gamma.dtype, allreduce_sum=allreduce_sum)
            for name in ("gamma", "beta", "running_mean", "running_var"):
                value = getattr(layer, name)
                setattr(sync, name, None if value is None else value.copy())
            sync.num_batches_tracked = layer.num_batches_tracked
            return sync.train(layer.training)
        return replace_modules(module, convert)

    def forward(self, x):
        """(m_r, C, ...) -> (m_r, C, ...): global batch statistics in training mode."""
        if not self.training:
            return super().forward(x)
        x = check_channels(x, self.num_features)
        if self.track_running_stats:  # checked before anything changes
            self.check_running_stats()
        y, self.cache = sync_batch_norm_forward(x, self.gamma, self.beta, self.allreduce_sum,
                                                self.eps)
        if self.track_running_stats:
            self.update_running_stats(m=self.cache.count)  # Bessel with the global M
        return y

    def backward(self, dy):
        self._require_forward("cache")
        if not isinstance(self.cache, SyncBatchNormCache):  # the forward ran in eval mode
            return super().backward(dy)
        dx, dgamma, dbeta = sync_batch_norm_backward(dy, self.cache, self.allreduce_sum)
        if self.affine:
            self.dgamma[...] = dgamma
            self.dbeta[...] = dbeta
        return dx
