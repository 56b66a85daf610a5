"""Normalizations that differ from BatchNorm only in the axes they reduce over
(chapter 05): LayerNorm (per example, over the features) and GroupNorm (per example,
over groups of channels; InstanceNorm is GroupNorm with one channel per group).

Each is a reshape around Batch Normalization's functional core, as chapter 05 says:
view the values that share statistics as one "channel" of a (1, R, D) array (R groups of
D values), normalize with ``batch_norm_forward`` (gamma = 1, beta = 0), reshape back and
apply the per-feature gamma and beta. The backward pass is the same compact formula
(chapter 03, `eq-03-dx`) through ``batch_norm_backward``. Neither layer keeps running
statistics: train and eval mode agree. Like the core, both need eps > 0 (PyTorch also
accepts eps = 0 here, where a constant group normalizes to NaN).
"""

from __future__ import annotations

import numpy as np

from .checks import check_channels, check_count, check_dy, check_eps, check_input
from .functional import batch_norm_backward, batch_norm_forward, per_channel
from .module import Module


def normalize_groups(groups, eps, layer):
    """Normalize each row of ``groups`` (R, D) over its D values; ``layer`` names the
    caller in errors.

    Returns ``(x_hat, cache)``: x_hat of shape (R, D), and the core's cache for
    :func:`normalize_groups_backward`.
    """
    if groups.shape[0] == 0:
        raise ValueError(f"{layer!r} got an empty batch: nothing to normalize")
    if groups.shape[1] <= 1:
        # one value normalizes to 0 whatever it is: a silent constant output
        raise ValueError(
            f"{layer!r}: expected more than 1 value to normalize over, got groups of "
            f"{groups.shape[1]}"
        )
    rows = groups.shape[0]
    x_hat, cache = batch_norm_forward(groups[np.newaxis], np.ones(rows), np.zeros(rows), eps)
    return x_hat[0], cache


def normalize_groups_backward(dx_hat, cache):
    """The gradient through :func:`normalize_groups`: (R, D) -> (R, D)."""
    return batch_norm_backward(dx_hat[np.newaxis], cache)[0][0]


class LayerNorm(Module):
    """Normalize each example over its last axis (size ``num_features``), then apply a
    per-feature gamma and beta, like ``torch.nn.LayerNorm(num_features)``.
    Input (..., num_features) -> output of the same shape."""

    param_names = ("gamma", "beta")

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features = check_count(num_features, "num_features")
        self.eps = check_eps(eps, training=True, what="LayerNorm")
        self.gamma = np.ones(num_features)
        self.beta = np.zeros(num_features)
        self.init_grads()
        self.cache = None

    def __repr__(self):
        return f"LayerNorm({self.num_features}, eps={self.eps})"

    def forward(self, x):
        x = check_input(x)
        if x.shape[-1] != self.num_features:
            raise ValueError(
                f"LayerNorm({self.num_features}) got input of shape {x.shape}"
            )
        self.shape = x.shape
        x_hat, self.cache = normalize_groups(x.reshape(-1, self.num_features), self.eps, self)
        self.x_hat = x_hat
        y = x_hat * self.gamma.astype(x.dtype) + self.beta.astype(x.dtype)
        return y.reshape(x.shape)

    def backward(self, dy):
        self._require_forward("cache")
        rows = check_dy(dy, self.shape).reshape(-1, self.num_features)
        self.dgamma[...] = (rows * self.x_hat).sum(axis=0)
        self.dbeta[...] = rows.sum(axis=0)
        dx_hat = rows * self.gamma
        return normalize_groups_backward(dx_hat, self.cache).reshape(self.shape)


class GroupNorm(Module):
    """Split the C channels into ``num_groups`` groups and normalize each example's
    group over its channels and positions; gamma and beta are per channel, like
    ``torch.nn.GroupNorm``. ``num_groups=C`` is InstanceNorm, ``num_groups=1`` a
    LayerNorm over (C, H, W). Input (N, C, ...) -> output of the same shape.

    Unlike ``torch.nn.GroupNorm``, which returns beta when a group holds a single value,
    it raises: normalizing one value discards it, a silent wrong number in a network."""

    param_names = ("gamma", "beta")

    def __init__(self, num_groups, num_channels, eps=1e-5):
        super().__init__()
        num_groups = check_count(num_groups, "num_groups")
        num_channels = check_count(num_channels, "num_channels")
        if num_channels % num_groups:
            raise ValueError(
                f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})"
            )
        self.num_groups, self.num_channels = num_groups, num_channels
        self.eps = check_eps(eps, training=True, what="GroupNorm")
        self.gamma = np.ones(num_channels)
        self.beta = np.zeros(num_channels)
        self.init_grads()
        self.cache = None

    def __repr__(self):
        return f"GroupNorm({self.num_groups}, {self.num_channels}, eps={self.eps})"

    def forward(self, x):
        x = check_channels(x, self.num_channels)
        self.shape = x.shape
        groups = x.reshape(x.shape[0] * self.num_groups, -1)
        x_hat, self.cache = normalize_groups(groups, self.eps, self)
        self.x_hat = x_hat.reshape(x.shape)
        return self.x_hat * per_channel(self.gamma, x) + per_channel(self.beta, x)

    def backward(self, dy):
        self._require_forward("cache")
        dy = check_dy(dy, self.shape)
        axes = (0,) + tuple(range(2, dy.ndim))
        self.dgamma[...] = (dy * self.x_hat).sum(axis=axes)
        self.dbeta[...] = dy.sum(axis=axes)
        dx_hat = (dy * per_channel(self.gamma, dy)).reshape(self.cache.centred.shape[1:])
        return normalize_groups_backward(dx_hat, self.cache).reshape(self.shape)
