"""Changing a trained network's Batch Normalization statistics (chapter 09).

* :func:`update_bn` re-estimates every BatchNorm layer's running statistics from data
  with the weights fixed: after averaging weights (SWA's ``update_bn``), after pruning,
  or on unlabeled data from a shifted distribution (AdaBN, Li et al. 2016).
* :class:`FrozenBatchNorm` is an eval-mode BatchNorm that stays in eval mode: fixed
  statistics and a fixed gamma and beta, whatever ``train()`` says (torchvision's
  ``FrozenBatchNorm2d``, the usual layer for fine-tuning with small batches);
  :func:`freeze_batchnorm` swaps it in for every BatchNorm of a model.
"""

from __future__ import annotations

import numpy as np

from .batchnorm import BatchNorm
from .checks import check_channel_vector, check_channels, check_count, check_eps
from .functional import batch_norm_backward, batch_norm_inference
from .module import Module, replace_modules
from .renorm import BatchRenorm

__all__ = ["FrozenBatchNorm", "freeze_batchnorm", "update_bn"]

_RECOMPUTED = ("running_mean", "running_var", "cache")  # what update_bn changes
_RESTORED = ("num_batches_tracked", "momentum")
_RENORM = ("r_max", "d_max", "r", "d")  # BatchRenorm's, restored too


def update_bn(model, x, batch_size=64):
    """Recompute the running statistics of every BatchNorm layer in ``model``
    from ``x``.

    Like ``torch.optim.swa_utils.update_bn``: reset the statistics, run ``x``
    (shape (N, ...), in order, in batches of ``batch_size``, the last one
    possibly shorter) through the model in training mode with
    ``momentum=None``, so each layer ends with the cumulative average over the
    batches, each batch weighted equally (chapter 04, `eq-04-cumulative`), then
    restore each layer's momentum and the model's mode. No parameter changes.

    Unlike torch, ``num_batches_tracked`` keeps its value: it counts training
    steps, which drive BatchRenorm's schedule; and a BatchRenorm layer works as
    plain BN (r = 1, d = 0) during the call, so its statistics are those BN
    would collect. A call that raises (a batch with one value per channel, say)
    restores every layer as it was. Returns the number of layers updated.
    """
    batch_size = check_count(batch_size, "batch_size")
    if len(x) == 0:
        raise ValueError("update_bn got no examples: the statistics would be "
                         "reset to nothing")
    layers = [m for m in model.modules()
              if isinstance(m, BatchNorm) and m.track_running_stats]
    if not layers:
        return 0
    saved = [{name: _copy(getattr(bn, name)) for name in _state_names(bn)}
             for bn in layers]
    was_training = model.training
    try:
        for bn in layers:
            bn.reset_running_stats()
            bn.momentum = None
            if isinstance(bn, BatchRenorm):
                # plain BN while the statistics are collected
                bn.r_max, bn.d_max = 1.0, 0.0
        model.train()
        for start in range(0, len(x), batch_size):
            model.forward(x[start:start + batch_size])
    except BaseException:
        for bn, state in zip(layers, saved):
            for name, value in state.items():
                setattr(bn, name, value)
        raise
    finally:
        model.train(was_training)
    for bn, state in zip(layers, saved):
        for name, value in state.items():
            if name not in _RECOMPUTED:
                setattr(bn, name, value)
    return len(layers)


def _state_names(bn):
    return _RECOMPUTED + _RESTORED + (_RENORM if isinstance(bn, BatchRenorm) else ())


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


class FrozenBatchNorm(Module):
    """Batch Normalization with fixed statistics and fixed gamma and beta, in every mode.

    ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta`` (chapter 04,
    `eq-04-infer`) on (N, C, ...) input; the four vectors have shape (C,) and are
    buffers, not parameters, so no optimizer changes them and ``backward`` returns only
    dx. Build one from a trained layer with :meth:`from_batchnorm`.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.num_features = check_count(num_features, "num_features")
        self.eps = check_eps(eps, training=False, what="FrozenBatchNorm")
        self.gamma = np.ones(self.num_features)
        self.beta = np.zeros(self.num_features)
        self.running_mean = np.zeros(self.num_features)
        self.running_var = np.ones(self.num_features)
        self.cache = None

    @classmethod
    def from_batchnorm(cls, bn):
        """A frozen copy of ``bn``'s current gamma, beta and running statistics."""
        if bn.running_mean is None:
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
        x = check_channels(x, self.num_features)
        y, self.cache = batch_norm_inference(x, self.running_mean, self.running_var,
                                             self.gamma, self.beta, self.eps)
        return y

    def backward(self, dy):
        """dx = dy * gamma / sqrt(running_var + eps), per channel."""
        self._require_forward("cache")
        return batch_norm_backward(dy, self.cache)[0]


def freeze_batchnorm(model):
    """Replace every ``BatchNorm`` in ``model``, at any depth, by a
    :class:`FrozenBatchNorm` copy, in place (torchvision's ``FrozenBatchNorm2d``). Returns
    the model, or the frozen layer when ``model`` is itself a BatchNorm. Build the
    optimizer afterwards: the frozen layers have no parameters."""
    def freeze(module):
        return FrozenBatchNorm.from_batchnorm(module) if isinstance(module, BatchNorm) else None
    return replace_modules(model, freeze)
