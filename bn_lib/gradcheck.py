"""Finite-difference gradient checks (chapter 03), in the manner of CS231n.

Central differences have error O(h^2); in float64 with h = 1e-5 a correct analytic
gradient agrees to a relative error near 1e-8 or better, while a wrong one is off by
order 1.
"""

from __future__ import annotations

import numpy as np


def relative_error(a, b, normwise=False):
    """Relative error between two gradients, the project's one meaning of the term.

    Elementwise (the default, as CS231n reports it): max |a - b| / max(|a| + |b|, tiny).
    An entry whose true gradient is exactly 0 then compares rounding noise with rounding
    noise and can score up to 1; ``normwise=True`` gives ||a - b|| / (||a|| + ||b||),
    which weighs each entry by its size and suits gradients with exact zeros (such as the
    weights of an input pixel that is constant across a batch, chapter 03).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if normwise:
        return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12)))


def numerical_gradient(f, x, dy=None, h=1e-5):
    """Central-difference gradient of ``sum(f(x) * dy)`` with respect to ``x``.

    ``x`` is perturbed in place, one entry at a time, and restored. ``f`` may return an
    array (then ``dy`` weights it; default all ones) or a scalar.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        diff = np.asarray(plus, dtype=np.float64) - np.asarray(minus, dtype=np.float64)
        grad[i] = np.sum(diff * (1.0 if dy is None else dy)) / (2 * h)
    return grad


def check_module_gradients(module, x, seed=0, h=1e-5, normwise=False):
    """Compare ``module.backward`` with finite differences, for the input and every
    parameter. Uses the loss L = sum(module(x) * dy) for a random ``dy``.

    Returns ``{"x": err, name: err, ...}`` of relative errors (``normwise`` as in
    :func:`relative_error`). Run the module in float64;
    in training mode a BatchNorm's running statistics change on every call, which is
    harmless here (the output does not depend on them).
    """
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)
    dy = rng.standard_normal(module.forward(x).shape)
    dx = module.backward(dy)  # the cache of that forward pass is still the module's
    numeric_dx = numerical_gradient(module.forward, x, dy, h)
    errors = {"x": relative_error(dx, numeric_dx, normwise)}
    for name, value, grad in module.named_parameters():
        analytic = grad.copy()
        numeric = numerical_gradient(lambda _: module.forward(x), value, dy, h)
        errors[name] = relative_error(analytic, numeric, normwise)
    return errors
