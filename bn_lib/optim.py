"""Optimizers that update parameters in place from the gradients beside them.

BatchNorm's gamma and beta are ordinary parameters: any of these updates them (the seed
notes' "gamma and beta are learned by gradient descent, momentum, RMSProp or Adam").
Each takes ``module.parameters()``, a list of ``(value, grad)`` array pairs.
"""

from __future__ import annotations

import numpy as np


class Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.lr = lr

    def step(self):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """v = momentum * v + grad; value -= lr * v (PyTorch's form)."""

    def __init__(self, params, lr=0.1, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity = [np.zeros_like(v) for v, _ in self.params]

    def step(self):
        for (value, grad), v in zip(self.params, self.velocity):
            g = grad + self.weight_decay * value if self.weight_decay else grad
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            value -= self.lr * g


class RMSProp(Optimizer):
    """s = alpha * s + (1 - alpha) * grad**2; value -= lr * grad / (sqrt(s) + eps)."""

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8):
        super().__init__(params, lr)
        self.alpha, self.eps = alpha, eps
        self.square_avg = [np.zeros_like(v) for v, _ in self.params]

    def step(self):
        for (value, grad), s in zip(self.params, self.square_avg):
            s *= self.alpha
            s += (1 - self.alpha) * grad**2
            value -= self.lr * grad / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015), as ``torch.optim.Adam``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.t = 0
        self.m = [np.zeros_like(v) for v, _ in self.params]
        self.v = [np.zeros_like(v) for v, _ in self.params]

    def step(self):
        self.t += 1
        c1 = 1 - self.beta1**self.t
        c2 = 1 - self.beta2**self.t
        for (value, grad), m, v in zip(self.params, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * grad
            v *= self.beta2
            v += (1 - self.beta2) * grad**2
            value -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
