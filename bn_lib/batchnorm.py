"""The ``BatchNorm`` layer: Batch Normalization with running statistics (chapters 02, 04).

Semantics are PyTorch's ``BatchNorm1d``/``BatchNorm2d``:

* training mode normalizes with the batch mean and the *biased* batch variance;
* the running statistics are updated as ``running = (1 - momentum) * running +
  momentum * batch``, with the *unbiased* batch variance (factor m / (m - 1));
* ``momentum=None`` makes that a cumulative average over all batches seen, the paper's
  population statistics (Algorithm 2; chapter 04);
* eval mode normalizes with the running statistics.
"""

from __future__ import annotations

import numpy as np

from .functional import (
    BatchNormCache,
    _broadcast_shape,
    batch_norm_backward,
    batch_norm_forward,
    check_input,
)
from .module import Module


class BatchNorm(Module):
    """Batch Normalization over axis 1 of (N, C), (N, C, L) or (N, C, H, W) input."""

    param_names = ("gamma", "beta")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float64):
        super().__init__()
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1] or None, got {momentum}")
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.num_features = int(num_features)
        self.eps = eps
        self.momentum = momentum
        self.gamma = np.ones(self.num_features, dtype=dtype)
        self.beta = np.zeros(self.num_features, dtype=dtype)
        self.running_mean = np.zeros(self.num_features, dtype=dtype)
        self.running_var = np.ones(self.num_features, dtype=dtype)
        self.num_batches_tracked = 0
        self._init_grads()
        self.cache = None

    def __repr__(self):
        return (
            f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum})"
        )

    def reset_running_stats(self):
        self.running_mean[...] = 0.0
        self.running_var[...] = 1.0
        self.num_batches_tracked = 0

    def _check_channels(self, x):
        x = check_input(x)
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"expected {self.num_features} channels on axis 1, got input of shape {x.shape}"
            )
        return x

    def forward(self, x):
        x = self._check_channels(x)
        if not self.training:
            return self._forward_eval(x)
        y, self.cache = batch_norm_forward(x, self.gamma, self.beta, self.eps)
        self._update_running_stats(self.cache, m=x.size // self.num_features)
        return y

    def _update_running_stats(self, cache, m):
        self.num_batches_tracked += 1
        if self.momentum is None:  # cumulative average: weight 1/k for the k-th batch
            weight = 1.0 / self.num_batches_tracked
        else:
            weight = self.momentum
        unbiased_var = cache.var * (m / (m - 1))
        self.running_mean *= 1.0 - weight
        self.running_mean += weight * cache.mean
        self.running_var *= 1.0 - weight
        self.running_var += weight * unbiased_var

    def _forward_eval(self, x):
        if x.dtype == np.float16:
            return self._forward_eval(x.astype(np.float32)).astype(np.float16)
        shape = _broadcast_shape(x)
        inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
        centred = x - self.running_mean.astype(x.dtype).reshape(shape)
        self.cache = BatchNormCache(
            centred=centred,
            inv_std=inv_std,
            gamma=self.gamma.astype(np.float64),
            mean=self.running_mean.copy(),
            var=self.running_var.copy(),
            training=False,
        )
        y = centred * (self.gamma * inv_std).astype(x.dtype).reshape(shape)
        y += self.beta.astype(x.dtype).reshape(shape)
        return y

    def backward(self, dy):
        self._require_forward("cache")
        dx, dgamma, dbeta = batch_norm_backward(dy, self.cache)
        self.dgamma[...] = dgamma
        self.dbeta[...] = dbeta
        return dx
