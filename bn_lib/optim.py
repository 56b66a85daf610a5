"""Optimizers that update parameters in place from the gradients beside them.

BatchNorm's gamma and beta are ordinary parameters: any of these updates them (the seed
notes' "gamma and beta are learned by gradient descent, momentum, RMSProp or Adam").
Each takes ``module.parameters()``, a list of ``(value, grad)`` array pairs, and checks
its settings as ``torch.optim`` does (with PyTorch's messages), so that a setting out of
range raises instead of turning every parameter into NaN at the first step.
"""

from __future__ import annotations

import numpy as np


def check_setting(name, value, low, high=None, high_open=False):
    """``value`` as a float in [low, high] ([low, high) with ``high_open``), or raise
    naming it, in PyTorch's words ("Invalid momentum value: -0.5")."""
    if isinstance(value, (bool, np.bool_)) or np.ndim(value) != 0:
        raise TypeError(f"{name.removesuffix(' value')} must be a single number, "
                        f"got {value!r}")
    value = float(value)
    above = high is not None and (value >= high if high_open else value > high)
    if not value >= low or above:  # `not >=` also catches NaN
        interval = f"[{low}, {high}{')' if high_open else ']'}" if high is not None \
            else f">= {low}"
        raise ValueError(f"Invalid {name}: {value} (must be {interval})")
    return value


def check_params(params, optimizer):
    """The list of ``(value, grad)`` pairs from ``module.parameters()``, or raise."""
    if hasattr(params, "parameters") or isinstance(params, np.ndarray):
        raise TypeError(
            f"{optimizer} expects an iterable of (value, grad) array pairs such as "
            f"model.parameters(), got a {type(params).__name__}: "
            f"write {optimizer}(model.parameters())"
        )
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    seen = set()
    for i, pair in enumerate(params):
        if not (isinstance(pair, tuple) and len(pair) == 2
                and all(isinstance(a, np.ndarray) for a in pair)):
            raise TypeError(f"parameter {i} must be a (value, grad) pair of NumPy arrays, "
                            f"got {type(pair).__name__}")
        value, grad = pair
        if value.shape != grad.shape:
            raise ValueError(f"parameter {i}: value has shape {value.shape} but its gradient "
                             f"has shape {grad.shape}")
        if value.dtype.kind != "f" or not value.flags.writeable:
            raise TypeError(f"parameter {i} must be a writeable floating-point array "
                            f"(it is updated in place), got dtype {value.dtype}")
        if id(value) in seen:
            # it would be updated twice per step
            raise ValueError(f"parameter {i} appears more than once in the parameter list")
        seen.add(id(value))
    return params


class Optimizer:
    """Holds the parameters and the settings every optimizer shares: ``weight_decay`` adds
    weight_decay * value to the gradient (L2, as in torch.optim)."""

    def __init__(self, params, lr, weight_decay=0.0):
        self.params = check_params(params, type(self).__name__)
        self.lr = check_setting("learning rate", lr, 0.0)
        if self.lr == 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.weight_decay = check_setting("weight_decay value", weight_decay, 0.0)

    def gradient(self, value, grad):
        """The gradient the update uses: the loss's, plus the decay."""
        return grad + self.weight_decay * value if self.weight_decay else grad

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """v = momentum * v + grad; value -= lr * v (PyTorch's form)."""

    def __init__(self, params, lr=0.1, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = check_setting("momentum value", momentum, 0.0)
        self.velocity = [np.zeros_like(v) for v, _ in self.params]

    def step(self):
        for (value, grad), v in zip(self.params, self.velocity):
            g = self.gradient(value, grad)
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            value -= self.lr * g


class RMSProp(Optimizer):
    """s = alpha * s + (1 - alpha) * grad**2; value -= lr * grad / (sqrt(s) + eps)."""

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        # alpha > 1 would make the average of squares negative, and its sqrt NaN
        self.alpha = check_setting("alpha value", alpha, 0.0, 1.0)
        self.eps = check_setting("epsilon value", eps, 0.0)
        self.square_avg = [np.zeros_like(v) for v, _ in self.params]

    def step(self):
        for (value, grad), s in zip(self.params, self.square_avg):
            grad = self.gradient(value, grad)
            s *= self.alpha
            s += (1 - self.alpha) * grad**2
            value -= self.lr * grad / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015), as ``torch.optim.Adam``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        if np.ndim(betas) != 1 or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.beta1, self.beta2 = (check_setting(f"beta parameter at index {i}", beta, 0.0,
                                                1.0, high_open=True)
                                  for i, beta in enumerate(betas))
        self.eps = check_setting("epsilon value", eps, 0.0)
        self.t = 0
        self.m = [np.zeros_like(v) for v, _ in self.params]
        self.v = [np.zeros_like(v) for v, _ in self.params]

    def step(self):
        self.t += 1
        c1 = 1 - self.beta1**self.t
        c2 = 1 - self.beta2**self.t
        for (value, grad), m, v in zip(self.params, self.m, self.v):
            grad = self.gradient(value, grad)
            m *= self.beta1
            m += (1 - self.beta1) * grad
            v *= self.beta2
            v += (1 - self.beta2) * grad**2
            value -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
