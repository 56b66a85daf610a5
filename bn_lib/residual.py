"""Residual connections (chapter 08): ``y = x + branch(x)``, and a residual MLP.

Where BN sits in a residual block, and why the last gamma of each branch is often set to
zero at initialization (Goyal et al. 2017; torchvision's ``zero_init_residual``), is
chapter 08's first section; networks without BN that start their branches at zero
(Fixup, SkipInit) its last.
"""

from __future__ import annotations

import numpy as np

from .batchnorm import BatchNorm
from .layers import Linear, ReLU, Sequential
from .module import Module

__all__ = ["Residual", "residual_mlp"]


class Residual(Module):
    """``y = x + branch(x)`` for a ``branch`` that keeps the shape; the
    gradient is ``dx = dy + branch.backward(dy)`` (chapter 08,
    `eq-08-residual`)."""

    def __init__(self, branch):
        super().__init__()
        self.branch = branch

    def __repr__(self):
        inner = repr(self.branch).replace("\n", "\n  ")
        return f"Residual({inner})"

    def children(self):
        return [self.branch]

    def set_children(self, children):
        (self.branch,) = children

    def forward(self, x):
        out = self.branch.forward(x)
        if out.shape != np.shape(x):
            raise ValueError("the residual branch changed the shape "
                             f"{np.shape(x)} to {out.shape}")
        return x + out

    def backward(self, dy):
        return dy + self.branch.backward(dy)


def residual_mlp(in_features, width, num_classes, num_blocks, norm="batch",
                 zero_init_residual=False, seed=0):
    """A residual MLP: Linear -> [BN] -> ReLU, then ``num_blocks`` blocks, then Linear.

    Each block is ResNet's basic block on vectors (He et al. 2016, post-activation):
    ``ReLU(x + branch(x))`` with branch = Linear -> [BN] -> ReLU -> Linear -> [BN].
    ``norm`` is "batch" or None (then the Linear layers have biases instead).
    ``zero_init_residual=True`` starts every branch at zero, so every block starts as
    the identity: with BN by gamma = 0 in the branch's last BN (torchvision's switch),
    without BN by zero weights in the branch's last Linear (Fixup's zero init).
    Input (N, in_features) -> logits (N, num_classes).
    """
    if norm not in ("batch", None):
        raise ValueError(f"norm must be 'batch' or None, got {norm!r}")
    rng = np.random.default_rng(seed)

    def linear_norm(fan_in, fan_out):
        linear = Linear(fan_in, fan_out, bias=norm is None, rng=rng)
        return [linear, BatchNorm(fan_out)] if norm else [linear]

    layers = linear_norm(in_features, width) + [ReLU()]
    for _ in range(num_blocks):
        last = linear_norm(width, width)
        if zero_init_residual and norm:
            last[-1].gamma[...] = 0.0
        elif zero_init_residual:
            last[-1].W[...] = 0.0
        branch = Sequential(*linear_norm(width, width), ReLU(), *last)
        layers += [Residual(branch), ReLU()]
    layers.append(Linear(width, num_classes, rng=rng))
    return Sequential(*layers)
