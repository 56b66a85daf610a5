"""Batch Renormalization (Ioffe, 2017; chapter 09).

Batch Normalization trains with batch statistics and tests with running ones; when the
batches are small or not i.i.d. the two differ, and the network learns to depend on the
batch. Batch Renormalization corrects each training batch toward the running statistics
(chapter 09, `eq-09-renorm`):

    sigma_B = sqrt(var_B + eps),                  sigma = sqrt(running_var + eps)
    r       = clip(sigma_B / sigma, 1 / r_max, r_max)          held constant
    d       = clip((mean_B - running_mean) / sigma, -d_max, d_max)   held constant
    y       = gamma * (x_hat * r + d) + beta,      x_hat = (x - mean_B) / sigma_B

Where r and d are not clipped, ``x_hat * r + d = (x - running_mean) / sigma``: training
output equals eval output. r and d are treated as constants in the backward pass (the
paper's stop-gradient), so the layer is Batch Normalization with gamma' = gamma * r and
beta' = gamma * d + beta, and its backward pass is chapter 03's `eq-03-dx` with gamma'.
With ``r_max=1, d_max=0`` it is exactly :class:`bn_lib.BatchNorm`.

One choice differs from the paper: the paper averages sigma_B itself, bn_lib keeps the
running mean and the running *unbiased* variance exactly as ``BatchNorm`` does (PyTorch's
convention), and sigma is computed from it. Either way the eval-mode layer uses the same
sigma as r and d, which is what makes training and eval agree.
"""

from __future__ import annotations

import numpy as np

from .batchnorm import BatchNorm
from .checks import check_channel_vector, check_channels, check_count, check_eps, check_number
from .functional import batch_norm_backward, batch_statistics, normalize

__all__ = ["BatchRenorm", "renorm_limits"]


def renorm_limits(step, r_max=3.0, d_max=5.0, warmup_steps=0, ramp_steps=0):
    """The paper's schedule of the clipping limits at training step ``step`` (0-based).

    For the first ``warmup_steps`` steps ``(1.0, 0.0)``: plain Batch Normalization, while
    the running statistics settle. Then both limits grow linearly over ``ramp_steps``
    steps to ``(r_max, d_max)`` and stay there (the paper: 5,000 steps of warm-up, then
    relaxed to reach r_max = 3 at step 40,000 and d_max = 5 at step 25,000; here one ramp
    serves both).
    Returns ``(r_max, d_max)`` for this step.
    """
    r_max = check_number(r_max, "r_max", low=1.0)
    d_max = check_number(d_max, "d_max", low=0.0)
    if step < warmup_steps:
        return 1.0, 0.0
    progress = 1.0 if ramp_steps <= 0 else min(1.0, (step - warmup_steps + 1) / ramp_steps)
    return 1.0 + progress * (r_max - 1.0), progress * d_max


class BatchRenorm(BatchNorm):
    """Batch Renormalization over axis 1 of (N, C), (N, C, L) or (N, C, H, W) input.

    The interface is :class:`bn_lib.BatchNorm`'s (``gamma``, ``beta``, ``running_mean``,
    ``running_var`` of shape (C,), ``train()``/``eval()``), plus the limits on r and d
    and their schedule (:func:`renorm_limits`), driven by ``num_batches_tracked``.
    After a training forward pass ``r`` and ``d`` (shape (C,)) hold the corrections used.
    Eval mode is BatchNorm's: the running statistics.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, r_max=3.0, d_max=5.0,
                 warmup_steps=0, ramp_steps=0, dtype=np.float64):
        super().__init__(num_features, eps=eps, momentum=momentum, dtype=dtype)
        self.r_max = check_number(r_max, "r_max", low=1.0)
        self.d_max = check_number(d_max, "d_max", low=0.0)
        warmup_steps = check_count(warmup_steps, "warmup_steps", minimum=0)
        ramp_steps = check_count(ramp_steps, "ramp_steps", minimum=0)
        self.warmup_steps, self.ramp_steps = warmup_steps, ramp_steps
        self.r = self.d = None

    def __repr__(self):
        return (f"BatchRenorm({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"r_max={self.r_max}, d_max={self.d_max}, warmup_steps={self.warmup_steps}, "
                f"ramp_steps={self.ramp_steps})")

    def limits(self):
        """``(r_max, d_max)`` for the next training step."""
        return renorm_limits(self.num_batches_tracked, self.r_max, self.d_max,
                             self.warmup_steps, self.ramp_steps)

    def forward(self, x):
        """(N, C, ...) -> (N, C, ...): `eq-09-renorm` in training mode, the
        running statistics in eval mode."""
        if not self.training:
            return super().forward(x)
        # every check before any state changes
        x = check_channels(x, self.num_features)
        eps = check_eps(self.eps, training=True)
        gamma = check_channel_vector(self.gamma, "gamma", self.num_features)
        beta = check_channel_vector(self.beta, "beta", self.num_features)
        self.check_running_stats()
        mean, var, centred = batch_statistics(x)  # eq-02-mean, eq-02-var

        # eq-09-renorm, with the limits of this step (eq-09-schedule)
        r_max, d_max = self.limits()
        sigma_batch = np.sqrt(var + eps)
        # the statistics eval mode will use
        sigma = np.sqrt(self.running_var + eps)
        r = np.clip(sigma_batch / sigma, 1.0 / r_max, r_max)
        d = np.clip((mean - self.running_mean) / sigma, -d_max, d_max)

        # BN with gamma' = gamma * r, beta' = gamma * d + beta (r, d constants)
        y, self.cache = normalize(centred, mean, var, gamma * r,
                                  gamma * d + beta, eps, x.dtype, training=True)
        self.r, self.d = r, d
        self.update_running_stats(m=x.size // self.num_features)
        return y

    def backward(self, dy):
        """(N, C, ...) -> dx; stores dgamma and dbeta. r and d are constants here."""
        self._require_forward("cache")
        if not self.cache.training:  # the last forward pass was in eval mode
            return super().backward(dy)
        dx, dscale, dbeta = batch_norm_backward(dy, self.cache)
        # y = (gamma * r) * x_hat + (gamma * d + beta): the chain rule through gamma' and beta'
        self.dgamma[...] = dscale * self.r + dbeta * self.d
        self.dbeta[...] = dbeta
        return dx
