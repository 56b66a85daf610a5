"""Folding an eval-mode BatchNorm into the Linear or Conv2d layer before it (chapter 04).

At inference BN is the affine map y = gamma * (z - mu) / sigma + beta per channel, with
sigma = sqrt(running_var + eps). Since z = W x + b, the two compose into one layer:

    W' = (gamma / sigma) * W            (scaling each output channel's row / kernel)
    b' = (gamma / sigma) * (b - mu) + beta
"""

from __future__ import annotations

import copy

import numpy as np

from .batchnorm import BatchNorm
from .layers import Conv2d, Linear, Sequential


def fold_batchnorm(layer, bn):
    """Return a new ``Linear`` or ``Conv2d`` equal to ``bn(layer(x))`` in eval mode."""
    if not isinstance(layer, (Linear, Conv2d)):
        raise TypeError(f"can fold BatchNorm into Linear or Conv2d, not {type(layer).__name__}")
    if not isinstance(bn, BatchNorm):
        raise TypeError(f"expected a BatchNorm, got {type(bn).__name__}")
    if layer.W.shape[0] != bn.num_features:
        raise ValueError(
            f"layer has {layer.W.shape[0]} outputs but BatchNorm has {bn.num_features} channels"
        )
    if not bn.track_running_stats:
        raise ValueError("cannot fold a BatchNorm with track_running_stats=False: its eval "
                         "mode uses batch statistics, which are not a fixed affine map")
    scale = bn.gamma / np.sqrt(bn.running_var + bn.eps)
    bias = layer.b if layer.has_bias else np.zeros(layer.W.shape[0])
    folded = copy.deepcopy(layer)
    folded.W = layer.W * scale.reshape((-1,) + (1,) * (layer.W.ndim - 1))
    folded.b = scale * (bias - bn.running_mean) + bn.beta
    folded.param_names = ("W", "b")
    folded.init_grads()
    folded.eval()
    return folded


def fold_sequential(model):
    """Return a copy of a ``Sequential`` with every (Linear|Conv2d, BatchNorm) pair folded."""
    layers, i = [], 0
    while i < len(model.layers):
        layer = model.layers[i]
        nxt = model.layers[i + 1] if i + 1 < len(model.layers) else None
        if isinstance(layer, (Linear, Conv2d)) and isinstance(nxt, BatchNorm):
            layers.append(fold_batchnorm(layer, nxt))
            i += 2
        else:
            layers.append(copy.deepcopy(layer))
            i += 1
    return Sequential(*layers).eval()
