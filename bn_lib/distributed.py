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

import threading
from dataclasses import dataclass

import numpy as np

from .batchnorm import BatchNorm
from .functional import (
    BatchNormCache,
    batch_norm_backward,
    channel_dot,
    channel_sum,
    check_channel_vector,
    check_input,
    input_gradient,
    normalize_with_statistics,
    per_channel,
    working_dtype,
)

__all__ = [
    "SyncBatchNormCache",
    "global_moments",
    "sync_batch_norm_forward",
    "sync_batch_norm_backward",
    "merge_moments",
    "SyncBatchNorm",
    "ThreadWorld",
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

    Returns ``(mean, var, count, centred)``: float64 arrays of shape (C,), the global
    number of values per channel M (an int), and x - mean in the working dtype (x's, or
    float32 for float16). Chapter 10, `eq-10-mean` and `eq-10-var`: two rounds, so the
    squares are taken around the global mean.
    """
    xw = x.astype(working_dtype(x.dtype), copy=False)
    local_count = x.size // x.shape[1]
    totals = _reduce(allreduce_sum, np.append(channel_sum(xw), local_count))  # round 1
    count = int(round(totals[-1]))
    if count <= 1:
        raise ValueError(
            "Expected more than 1 value per channel when training, got "
            f"{count} value(s) per channel over all processes (this one: input size {x.shape})"
        )
    mean = totals[:-1] / count  # eq-10-mean
    centred = xw - per_channel(mean, xw)
    var = _reduce(allreduce_sum, channel_dot(centred, centred)) / count  # round 2, eq-10-var
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
    num_channels = x.shape[1]
    gamma = check_channel_vector(gamma, "gamma", num_channels).copy()
    beta = check_channel_vector(beta, "beta", num_channels)
    mean, var, count, centred = global_moments(x, allreduce_sum)
    # eq-02-normalize and eq-02-scale-shift with the global statistics
    y, cache = normalize_with_statistics(centred, mean, var, gamma, beta, eps, x.dtype,
                                         training=True)
    return y, SyncBatchNormCache(**vars(cache), count=count)


def sync_batch_norm_backward(dy, cache, allreduce_sum):
    """Gradients of synchronized BN for this process's slice (chapter 10, `eq-10-dx`).

    Inputs:
    - dy: shape (m_r, C, ...), the gradient of the loss with respect to this slice's y
    - cache: from :func:`sync_batch_norm_forward`
    - allreduce_sum: the collective, called once with 2C floats

    Returns ``(dx, dgamma, dbeta)``. dx is this slice's part of the gradient with respect
    to the global batch. dgamma and dbeta are this process's *contributions* (sums over its
    own slice), as in ``torch.nn.SyncBatchNorm``: their sum over processes is the global
    gradient, and a data-parallel wrapper's gradient all-reduce (which averages) does the
    rest, like it does for every other parameter.
    """
    dy = np.asarray(dy)
    if dy.shape != cache.centred.shape:
        raise ValueError(
            f"dy has shape {dy.shape} but the forward input had shape {cache.centred.shape}"
        )
    if not cache.training:
        return batch_norm_backward(dy, cache)
    dy = dy.astype(cache.centred.dtype, copy=False)
    num_channels = dy.shape[1]
    dbeta = channel_sum(dy)  # this slice's sum(dy)
    dgamma = channel_dot(dy, cache.centred) * cache.inv_std  # this slice's sum(dy * x_hat)
    sums = _reduce(allreduce_sum, np.concatenate([dbeta, dgamma]))  # eq-10-sums
    sum_dy, sum_dy_x_hat = sums[:num_channels], sums[num_channels:]
    dx = input_gradient(dy, cache, sum_dy, sum_dy_x_hat, cache.count)  # eq-10-dx
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
        """Replace every BatchNorm in ``module`` (itself or inside Sequentials) by a
        SyncBatchNorm with the same switches, parameters and running statistics, as
        PyTorch's ``SyncBatchNorm.convert_sync_batchnorm``. Returns the converted module."""
        if isinstance(module, BatchNorm):
            sync = cls(module.num_features, eps=module.eps, momentum=module.momentum,
                       affine=module.affine, track_running_stats=module.track_running_stats,
                       dtype=module.gamma.dtype, allreduce_sum=allreduce_sum)
            for name in ("gamma", "beta", "running_mean", "running_var"):
                if getattr(module, name) is not None:
                    getattr(sync, name)[...] = getattr(module, name)
            sync.num_batches_tracked = module.num_batches_tracked
            sync.train(module.training)
            return sync
        if hasattr(module, "layers"):
            module.layers = [cls.convert_sync_batchnorm(layer, allreduce_sum)
                             for layer in module.layers]
        return module

    def forward(self, x):
        """(m_r, C, ...) -> (m_r, C, ...): global batch statistics in training mode."""
        if not self.training:
            return super().forward(x)
        x = check_input(x)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"expected {self.num_features} channels on axis 1, got input of shape {x.shape}"
            )
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


class ThreadWorld:
    """``world_size`` simulated processes: threads of this process with a summing
    all-reduce. For experiments and tests that need no engine; NumPy only.

    ``run(fn, *per_rank_args)`` calls ``fn(rank, allreduce_sum, *args_of_rank)`` on every
    rank at once and returns the results in rank order. The sum is taken in rank order,
    so every rank receives the same bits. A rank that raises, or a collective that is not
    joined by every rank within ``timeout_s``, fails the whole run with that error.
    """

    def __init__(self, world_size, timeout_s=30.0):
        if int(world_size) != world_size or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size}")
        self.world_size = int(world_size)
        self.timeout_s = timeout_s

    def __repr__(self):
        return f"ThreadWorld({self.world_size})"

    def run(self, fn, *per_rank_args):
        for args in per_rank_args:
            if len(args) != self.world_size:
                raise ValueError(
                    f"each per-rank argument needs {self.world_size} entries, got {len(args)}"
                )
        barrier = threading.Barrier(self.world_size, timeout=self.timeout_s)
        slots = [None] * self.world_size

        def wait(rank):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                raise TimeoutError(
                    f"rank {rank} of {self}: a collective was not joined by every rank "
                    f"within {self.timeout_s} s (or another rank failed)") from None

        def make_allreduce(rank):
            def allreduce_sum(a):
                slots[rank] = np.asarray(a)
                wait(rank)  # every rank has written
                total = slots[0].copy()
                for other in slots[1:]:
                    total += other
                wait(rank)  # every rank has read: the slots may be reused
                return total
            return allreduce_sum

        results, errors = [None] * self.world_size, [None] * self.world_size

        def body(rank):
            try:
                args = [arg[rank] for arg in per_rank_args]
                results[rank] = fn(rank, make_allreduce(rank), *args)
            except BaseException as error:  # noqa: B036 - re-raised in the caller
                errors[rank] = error
                barrier.abort()  # release the ranks waiting for this one

        threads = [threading.Thread(target=body, args=(r,)) for r in range(self.world_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # the first real error, not the TimeoutError it caused on the ranks left waiting
        for rank, error in sorted(enumerate(errors),
                                  key=lambda e: isinstance(e[1], TimeoutError)):
            if error is not None:
                error.add_note(f"(raised on rank {rank} of {self})")
                raise error
        return results
