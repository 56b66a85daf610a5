"""Batch Renorm with r = sigma_B / sigma left unclipped (only d clipped): the correction
of the scale is then unbounded, as in the unclipped identity eq-09-identity."""

import numpy as np

MUST_FAIL = "test_09_renorm.py::test_r_and_d_are_clipped"


def batch_renorm_forward(x, gamma, beta, running_mean, running_var, r_max, d_max,
                         momentum=0.1, eps=1e-5):
    m = x.shape[0]
    mean, var = x.mean(axis=0), x.var(axis=0)
    sigma_batch, sigma = np.sqrt(var + eps), np.sqrt(running_var + eps)
    r = sigma_batch / sigma
    d = np.clip((mean - running_mean) / sigma, -d_max, d_max)
    x_hat = (x - mean) / sigma_batch
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    return (gamma * (x_hat * r + d) + beta, new_mean, new_var,
            {"x_hat": x_hat, "inv_std": 1 / sigma_batch, "r": r, "d": d})
