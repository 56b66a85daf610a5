"""The staged backward pass without the route through the variance: xmu feeds steps 3 and
7, and only step 7's contribution is collected."""

import numpy as np

MUST_FAIL = "test_03_backward.py::test_staged_matches_finite_differences"


def staged_backward(dy, x, gamma, eps=1e-5):
    m = x.shape[0]
    xmu = x - x.mean(axis=0)
    v = 1.0 / np.sqrt((xmu**2).mean(axis=0) + eps)
    xhat = xmu * v
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    dxmu1 = gamma * dy * v
    dmu = -dxmu1.sum(axis=0)
    return dxmu1 + dmu / m, dgamma, dbeta
