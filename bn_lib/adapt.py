"""Changing a trained network's Batch Normalization statistics (chapter 09).

* :func:`update_bn` re-estimates every BatchNorm layer's running statistics from data
  with the weights fixed: after averaging weights (SWA's ``update_bn``), after pruning,
  or on unlabeled data from a shifted distribution (AdaBN, Li et al. 2016).
* :class:`FrozenBatchNorm` is an eval-mode BatchNorm that stays in eval mode: fixed
  statistics and a fixed gamma and beta, whatever ``train()`` says (torchvision's
  ``FrozenBatchNorm2d``, the usual layer for fine-tuning with small batches);
  :func:`freeze_batchnorm` swaps it in for every BatchNorm of a ``Sequential``.
"""

from __future__ import annotations

import numpy as np

from .batchnorm import BatchNorm
from .functional import (
    batch_norm_backward,
    batch_norm_inference,
    check_channel_vector,
    check_input,
)
from .layers import Sequential
from .module import Module

__all__ = ["FrozenBatchNorm", "freeze_batchnorm", "update_bn"]


def _batchnorm_layers(model):
    found = [model] if isinstance(model, BatchNorm) else []
    for child in model.children():
        found += _batchnorm_layers(child)
    return found


def update_bn(model, x, batch_size=64):
    """Recompute the running statistics of every BatchNorm layer in ``model`` from ``x``.

    Like ``torch.optim.swa_utils.update_bn``: reset the statistics, run ``x`` (shape
    (N, ...), in order, in batches of ``batch_size``) through the model in training mode
    with ``momentum=None``, so each layer ends with the cumulative average over the
    batches (chapter 04, `eq-04-cumulative`), then restore each layer's momentum and the
    model's mode. No parameter changes. Returns the number of layers updated.
    """
    layers = [bn for bn in _batchnorm_layers(model) if bn.track_running_stats]
    if not layers:
        return 0
    if len(x) < 2:
        raise ValueError(f"update_bn needs at least 2 examples, got {len(x)}")
    was_training, momenta = model.training, [bn.momentum for bn in layers]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        if len(batch) > 1:  # a last batch of one cannot be normalized
            model.forward(batch)
    for bn, momentum in zip(layers, momenta):
        bn.momentum = momentum
    model.train(was_training)
    return len(layers)


class FrozenBatchNorm(Module):
    """Batch Normalization with fixed statistics and fixed gamma and beta, in every mode.

    ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta`` (chapter 04,
    `eq-04-infer`) on (N, C, ...) input; the four vectors have shape (C,) and are
    buffers, not parameters, so no optimizer changes them and ``backward`` returns only
    dx. Build one from a trained layer with :meth:`from_batchnorm`.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features, self.eps = int(num_features), eps
        self.gamma = np.ones(self.num_features)
        self.beta = np.zeros(self.num_features)
        self.running_mean = np.zeros(self.num_features)
        self.running_var = np.ones(self.num_features)
        self.cache = None

    @classmethod
    def from_batchnorm(cls, bn):
        """A frozen copy of ``bn``'s current gamma, beta and running statistics."""
        if not bn.track_running_stats:
            raise ValueError(f"{bn!r} keeps no running statistics to freeze")
        frozen = cls(bn.num_features, bn.eps)
        for name in ("gamma", "beta", "running_mean", "running_var"):
            value = check_channel_vector(getattr(bn, name), name, bn.num_features)
            getattr(frozen, name)[...] = value
        return frozen

    def __repr__(self):
        return f"FrozenBatchNorm({self.num_features}, eps={self.eps})"

    def forward(self, x):
        """(N, C, ...) -> (N, C, ...), the same map in training and eval mode."""
        x = check_input(x)
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels on axis 1, got input "
                             f"of shape {x.shape}")
        y, self.cache = batch_norm_inference(x, self.running_mean, self.running_var,
                                             self.gamma, self.beta, self.eps)
        return y

    def backward(self, dy):
        """dx = dy * gamma / sqrt(running_var + eps), per channel."""
        self._require_forward("cache")
        return batch_norm_backward(dy, self.cache)[0]


def freeze_batchnorm(model):
    """Replace every ``BatchNorm`` in the ``Sequential`` ``model`` (and in the
    Sequentials inside it) by a :class:`FrozenBatchNorm` copy, in place. Build the
    optimizer afterwards: the frozen layers have no parameters. Returns ``model``."""
    for i, layer in enumerate(model.layers):
        if isinstance(layer, BatchNorm):
            model.layers[i] = FrozenBatchNorm.from_batchnorm(layer)
        else:
            for child in layer.children():
                if isinstance(child, Sequential):
                    freeze_batchnorm(child)
    return model
