"""Ready-made networks for the experiments, built from bn_lib's layers."""

from __future__ import annotations

import numpy as np

from .batchnorm import BatchNorm
from .layers import Dropout, Linear, ReLU, Sequential, Sigmoid, Tanh
from .norms import GroupNorm, LayerNorm

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
NORMS = (None, "batch", "layer", "group")


def mlp(sizes, activation="relu", norm=None, dropout=0.0, init_scale=None, seed=0,
        momentum=0.1, eps=1e-5, num_groups=4):
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Each hidden layer is Linear -> [norm] -> activation -> [Dropout]. With a norm the
    Linear has no bias (the norm's beta replaces it, chapter 02); the output layer is a
    plain Linear with a bias and no normalization (chapter 02, "Not on the output layer").
    ``norm`` is None, "batch", "layer" or "group" (GroupNorm with ``num_groups`` groups of
    features); ``momentum`` goes to BatchNorm, ``eps`` to whichever norm is used.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "group":
        for width in sizes[1:-1]:
            if width % num_groups or width // num_groups < 2:
                # on (N, width) input a group of one feature normalizes to 0 whatever it is
                raise ValueError(
                    f"norm='group' needs every hidden width divisible by num_groups "
                    f"({num_groups}) into groups of at least 2 features, got width {width}"
                )
    rng = np.random.default_rng(seed)
    layers = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
        layers.append(Linear(fan_in, fan_out, bias=norm is None, init_scale=init_scale,
                             rng=rng))
        if norm == "batch":
            layers.append(BatchNorm(fan_out, eps=eps, momentum=momentum))
        elif norm == "layer":
            layers.append(LayerNorm(fan_out, eps=eps))
        elif norm == "group":
            layers.append(GroupNorm(num_groups, fan_out, eps=eps))
        layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(Dropout(dropout, rng=rng))
    layers.append(Linear(sizes[-2], sizes[-1], init_scale=init_scale, rng=rng))
    return Sequential(*layers)
