"""The one set of input checks, shared by every normalization layer and function.

Each check returns the value it accepted (converted where that is safe) or raises an
exception that names the argument. Layers run all of them before they change any state,
so a call that raises leaves the layer as it was.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def check_input(x, name="x"):
    """Return ``x`` as a floating ndarray of shape (N, C, ...), or raise.

    Integer and boolean arrays are rejected rather than cast: a silent cast would hide a
    wrong dtype (such as pixel values still in 0..255) from the caller.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(
            f"{name} must have at least 2 dimensions (N, C, ...), got shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must be a floating-point array, got dtype {x.dtype}; "
            f"convert it first, e.g. {name}.astype(np.float32)"
        )
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no channels: axis 1 of shape {x.shape} is empty")
    return x


def check_channels(x, num_features):
    """``x`` as a floating (N, C, ...) array with C = ``num_features`` on axis 1, or raise.

    Sequence models often hold (N, L, C) arrays while BatchNorm, like PyTorch's
    BatchNorm1d, wants (N, C, L); the message says so when the last axis would fit
    (chapter 09). When L == C the mistake cannot be seen from the shape.
    """
    x = check_input(x)
    if x.shape[1] != num_features:
        hint = ""
        if x.ndim == 3 and x.shape[2] == num_features:
            hint = ("; the channels seem to be on the last axis: for (N, L, C) input "
                    "pass x.transpose(0, 2, 1), of shape (N, C, L)")
        raise ValueError(f"expected {num_features} channels on axis 1, got input "
                         f"of shape {x.shape}{hint}")
    return x


def check_values_per_channel(m, shape):
    """Training needs more than one value per channel (PyTorch's wording): one value
    normalizes to 0 whatever it is, and its variance is 0."""
    if m <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {shape}"
        )


def check_real(value, name):
    """Return ``value`` as an ndarray of real numbers (ints, floats or bools), or raise.

    A complex array is refused: NumPy would drop its imaginary part with only a warning.
    """
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real-valued array, got dtype {value.dtype}")
    return value


def check_channel_vector(value, name, num_channels):
    """Return ``value`` as a float64 array of shape (num_channels,), or raise naming it."""
    value = check_real(value, name)
    if value.shape != (num_channels,):
        raise ValueError(
            f"{name} must have shape ({num_channels},), one value per channel, "
            f"got shape {value.shape}"
        )
    return value.astype(np.float64, copy=False)


def check_dy(dy, shape):
    """``dy`` as a real array of the forward input's ``shape``, or raise."""
    dy = check_real(dy, "dy")
    if dy.shape != tuple(shape):
        raise ValueError(f"dy has shape {dy.shape} but the forward input had shape "
                         f"{tuple(shape)}")
    return dy


def check_number(value, name, low=-math.inf, high=math.inf):
    """Return ``value`` as a float in [low, high], or raise naming it. NaN, bools,
    strings and None are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not low <= value <= high:  # False for NaN
        if high == math.inf:
            raise ValueError(f"need {name} >= {low:g}, got {value}")
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")
    return float(value)


def check_eps(eps, training, what="batch_norm"):
    """Return ``eps`` as a float, or raise: training mode needs eps > 0 (a constant channel
    has variance 0, and 1 / sqrt(0) is inf), as PyTorch requires; eval mode needs eps >= 0.
    ``what`` names the caller in the message."""
    eps = check_number(eps, f"{what} eps")
    if training and not eps > 0:
        raise ValueError(f"{what} eps must be positive during training, but got {eps}")
    if not eps >= 0:
        raise ValueError(f"{what} eps must be non-negative, but got {eps}")
    return eps


def check_count(value, name, minimum=1):
    """Return ``value`` as an int >= ``minimum``, or raise naming it (2.5 and "3" are
    refused rather than rounded or parsed)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"at least {minimum}")
        raise ValueError(f"{name} must be {kind}, got {value}")
    return int(value)
