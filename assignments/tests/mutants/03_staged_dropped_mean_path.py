"""The staged backward pass without the route through the mean (step 1): dx lacks dmu / m."""

import numpy as np

MUST_FAIL = "test_03_backward.py::test_staged_dx_matches_autograd"


def staged_backward(dy, x, gamma, eps=1e-5):
    m = x.shape[0]
    xmu = x - x.mean(axis=0)
    sigma = np.sqrt((xmu**2).mean(axis=0) + eps)
    v = 1.0 / sigma
    xhat = xmu * v
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    dxhat = gamma * dy
    dv = (dxhat * xmu).sum(axis=0)
    dvar = -dv / sigma**2 / (2 * sigma)
    dx1 = dxhat * v + 2 * xmu * dvar / m
    return dx1, dgamma, dbeta  # the mean's contribution dmu / m is missing
