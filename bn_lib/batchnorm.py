"""The ``BatchNorm`` layer: Batch Normalization with running statistics (chapters 02, 04).

Semantics are PyTorch's ``BatchNorm1d``/``BatchNorm2d``:

* training mode normalizes with the batch mean and the *biased* batch variance;
* the running statistics are updated as ``running = (1 - momentum) * running +
  momentum * batch``, with the *unbiased* batch variance (factor m / (m - 1));
* ``momentum=None`` makes that a cumulative average over all batches seen, the paper's
  population statistics (Algorithm 2; chapter 04, `eq-04-cumulative`);
* eval mode normalizes with the running statistics;
* ``affine=False``: no gamma and beta (fixed at 1 and 0, and not parameters);
* ``track_running_stats=False``: no running statistics (``running_mean`` and
  ``running_var`` are None), and eval mode normalizes with batch statistics too.
* ``eps`` must be positive for a forward pass with batch statistics (PyTorch's
  "batch_norm eps must be positive during training"); eval mode accepts eps = 0.

A forward pass checks everything (input, vector lengths, eps) before it changes any
state, so one that raises leaves the running statistics, ``num_batches_tracked`` and
the cache as they were.

Both modes are the functional core of :mod:`bn_lib.functional`; the layer adds the state.
"""

from __future__ import annotations

import numpy as np

from .checks import check_channel_vector, check_channels, check_count, check_eps, check_number
from .functional import batch_norm_backward, batch_norm_forward, batch_norm_inference
from .module import Module


class BatchNorm(Module):
    """Batch Normalization over axis 1 of (N, C), (N, C, L) or (N, C, H, W) input.

    ``gamma``, ``beta``, ``running_mean`` and ``running_var`` are NumPy arrays of shape
    (C,), updated in place; ``dgamma`` and ``dbeta`` hold the last backward's gradients.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float64):
        super().__init__()
        num_features = check_count(num_features, "num_features")
        if momentum is not None:
            check_number(momentum, "momentum", 0.0, 1.0)
        check_eps(eps, training=False)  # eps = 0 is refused later, by a training forward
        if not np.issubdtype(np.dtype(dtype), np.floating):
            raise TypeError(f"dtype must be a floating-point type, got {np.dtype(dtype)}")
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self.param_names = ("gamma", "beta") if affine else ()
        self.gamma = np.ones(self.num_features, dtype=dtype)
        self.beta = np.zeros(self.num_features, dtype=dtype)
        self.init_grads()
        self.running_mean = self.running_var = None
        if track_running_stats:
            self.running_mean = np.zeros(self.num_features, dtype=dtype)
            self.running_var = np.ones(self.num_features, dtype=dtype)
        self.num_batches_tracked = 0
        self.cache = None

    def __repr__(self):
        switches = "" if self.affine else ", affine=False"
        switches += "" if self.track_running_stats else ", track_running_stats=False"
        return f"BatchNorm({self.num_features}, eps={self.eps}, momentum={self.momentum}" \
               f"{switches})"

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0.0
            self.running_var[...] = 1.0
        self.num_batches_tracked = 0

    def forward(self, x):
        """(N, C, ...) -> (N, C, ...): batch statistics in training mode (and always
        without running statistics), the running ones in eval mode.

        As in PyTorch, training updates the running statistics only while
        ``track_running_stats`` is true, and eval mode uses them whenever they exist: a
        layer built with them and switched to ``track_running_stats = False`` keeps
        them frozen and still normalizes with them in eval mode."""
        x = check_channels(x, self.num_features)
        if not self.training and self.running_mean is not None:
            y, self.cache = batch_norm_inference(x, self.running_mean, self.running_var,
                                                 self.gamma, self.beta, self.eps)
            return y
        # every check runs before any state changes: a forward that raises leaves the
        # layer as it was
        updates = self.training and self.track_running_stats
        if updates:
            self.check_running_stats()
        y, self.cache = batch_norm_forward(x, self.gamma, self.beta, self.eps)
        if updates:
            self.update_running_stats(m=x.size // self.num_features)
        return y

    def check_running_stats(self):
        """Raise, naming the array, unless the running statistics can be updated in place."""
        for name in ("running_mean", "running_var"):
            value = getattr(self, name)
            check_channel_vector(value, name, self.num_features)
            if not (isinstance(value, np.ndarray) and value.dtype.kind == "f"
                    and value.flags.writeable):
                raise TypeError(f"{name} must be a writeable floating-point NumPy array "
                                "(it is updated in place)")

    def update_running_stats(self, m):
        """`eq-04-ema` with the unbiased batch variance of the last forward pass (``m``
        values per channel); weight 1/k for the k-th batch when momentum is None
        (`eq-04-cumulative`). Chapter 07 overrides it to plant a known bug."""
        self.num_batches_tracked += 1
        if self.momentum is None:
            weight = 1.0 / self.num_batches_tracked
        else:
            weight = self.momentum
        unbiased_var = self.cache.var * (m / (m - 1))
        self.running_mean *= 1.0 - weight
        self.running_mean += weight * self.cache.mean
        self.running_var *= 1.0 - weight
        self.running_var += weight * unbiased_var

    def backward(self, dy):
        """(N, C, ...) -> dx of the same shape; stores dgamma and dbeta (shape (C,))."""
        self._require_forward("cache")
        dx, dgamma, dbeta = batch_norm_backward(dy, self.cache)
        if self.affine:
            self.dgamma[...] = dgamma
            self.dbeta[...] = dbeta
        return dx
