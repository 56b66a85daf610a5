"""A one-sided (forward) difference (L(x + h) - L(x)) / h: its error is of order h, not h**2."""

import numpy as np

MUST_FAIL = "test_03_backward.py::test_numerical_gradient_of_a_cubic"


def numerical_gradient(f, x, dy, h=1e-5):
    grad = np.zeros_like(x, dtype=np.float64)
    base = np.sum(f(x) * dy)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + h
        grad[k] = (np.sum(f(x) * dy) - base) / h
        x[k] = old
    return grad
