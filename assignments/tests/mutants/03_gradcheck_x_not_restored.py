"""A central difference that leaves every entry of x at old - h."""

import numpy as np

MUST_FAIL = "test_03_backward.py::test_numerical_gradient_restores_x"


def numerical_gradient(f, x, dy, h=1e-5):
    grad = np.zeros_like(x, dtype=np.float64)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + h
        plus = np.sum(f(x) * dy)
        x[k] = old - h
        grad[k] = (plus - np.sum(f(x) * dy)) / (2 * h)
    return grad
