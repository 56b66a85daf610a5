"""dgamma from the centred input x - mu instead of the normalized x_hat."""

import numpy as np

MUST_FAIL = "test_03_backward.py::test_staged_dgamma_dbeta_match_autograd"


def staged_backward(dy, x, gamma, eps=1e-5):
    m = x.shape[0]
    xmu = x - x.mean(axis=0)
    inv_std = 1.0 / np.sqrt((xmu**2).mean(axis=0) + eps)
    xhat = xmu * inv_std
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    dx = gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma)
    return dx, (dy * xmu).sum(axis=0), dbeta
