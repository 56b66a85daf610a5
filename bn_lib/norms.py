"""Normalizations that differ from BatchNorm only in the axes they reduce over
(chapter 05): LayerNorm (per example, over the features) and GroupNorm (per example,
over groups of channels; InstanceNorm is GroupNorm with one channel per group).

They share one core: normalize each row of a 2-D view, then the same compact backward
formula as BatchNorm (chapter 03, eq. 3.9), with the sums taken along rows instead of
down columns. Neither keeps running statistics: train and eval mode agree.
"""

from __future__ import annotations

import numpy as np

from .functional import check_input
from .module import Module


def _normalize_rows(rows, eps):
    mean = rows.mean(axis=1, keepdims=True)
    centred = rows - mean
    inv_std = 1.0 / np.sqrt((centred**2).mean(axis=1, keepdims=True) + eps)
    return centred * inv_std, inv_std


def _normalize_rows_backward(dx_hat, x_hat, inv_std):
    m = x_hat.shape[1]
    return inv_std / m * (
        m * dx_hat
        - dx_hat.sum(axis=1, keepdims=True)
        - x_hat * (dx_hat * x_hat).sum(axis=1, keepdims=True)
    )


class LayerNorm(Module):
    """Normalize each example over its last axis (size ``num_features``), then apply a
    per-feature gamma and beta, like ``torch.nn.LayerNorm(num_features)``."""

    param_names = ("gamma", "beta")

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.gamma = np.ones(num_features)
        self.beta = np.zeros(num_features)
        self._init_grads()
        self.x_hat = None

    def __repr__(self):
        return f"LayerNorm({self.num_features}, eps={self.eps})"

    def forward(self, x):
        x = check_input(x)
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"LayerNorm({self.num_features}) got input of shape {x.shape}"
            )
        rows = x.reshape(-1, self.num_features)
        self.x_hat, self.inv_std = _normalize_rows(rows, self.eps)
        self.shape = x.shape
        y = self.x_hat * self.gamma.astype(x.dtype) + self.beta.astype(x.dtype)
        return y.reshape(x.shape)

    def backward(self, dy):
        self._require_forward("x_hat")
        rows = dy.reshape(-1, self.num_features)
        self.dgamma[...] = (rows * self.x_hat).sum(axis=0)
        self.dbeta[...] = rows.sum(axis=0)
        dx_hat = rows * self.gamma
        return _normalize_rows_backward(dx_hat, self.x_hat, self.inv_std).reshape(self.shape)


class GroupNorm(Module):
    """Split the C channels into ``num_groups`` groups and normalize each example's
    group over its channels and positions; gamma and beta are per channel, like
    ``torch.nn.GroupNorm``. ``num_groups=C`` is InstanceNorm, ``num_groups=1`` a
    LayerNorm over (C, H, W)."""

    param_names = ("gamma", "beta")

    def __init__(self, num_groups, num_channels, eps=1e-5):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(
                f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"
            )
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.gamma = np.ones(num_channels)
        self.beta = np.zeros(num_channels)
        self._init_grads()
        self.x_hat = None

    def __repr__(self):
        return f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps})"

    def forward(self, x):
        x = check_input(x)
        if x.shape[1] != self.num_channels:
            raise ValueError(
                f"expected {self.num_channels} channels on axis 1, got input of shape {x.shape}"
            )
        n = x.shape[0]
        rows = x.reshape(n * self.num_groups, -1)
        self.x_hat, self.inv_std = _normalize_rows(rows, self.eps)
        self.shape = x.shape
        cshape = (1, -1) + (1,) * (x.ndim - 2)
        x_hat = self.x_hat.reshape(x.shape)
        return x_hat * self.gamma.astype(x.dtype).reshape(cshape) + self.beta.astype(
            x.dtype
        ).reshape(cshape)

    def backward(self, dy):
        self._require_forward("x_hat")
        axes = (0,) + tuple(range(2, dy.ndim))
        x_hat = self.x_hat.reshape(self.shape)
        self.dgamma[...] = (dy * x_hat).sum(axis=axes)
        self.dbeta[...] = dy.sum(axis=axes)
        cshape = (1, -1) + (1,) * (dy.ndim - 2)
        dx_hat = (dy * self.gamma.reshape(cshape)).reshape(self.x_hat.shape)
        return _normalize_rows_backward(dx_hat, self.x_hat, self.inv_std).reshape(self.shape)
