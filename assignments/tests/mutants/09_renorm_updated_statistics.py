"""r and d computed from the running statistics *after* this batch's update, not from the
ones the batch is corrected toward (the paper updates them last)."""

import numpy as np

MUST_FAIL = "test_09_renorm.py::test_forward_matches_the_formula"


def batch_renorm_forward(x, gamma, beta, running_mean, running_var, r_max, d_max,
                         momentum=0.1, eps=1e-5):
    m = x.shape[0]
    mean, var = x.mean(axis=0), x.var(axis=0)
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    sigma_batch, sigma = np.sqrt(var + eps), np.sqrt(new_var + eps)
    r = np.clip(sigma_batch / sigma, 1 / r_max, r_max)
    d = np.clip((mean - new_mean) / sigma, -d_max, d_max)
    x_hat = (x - mean) / sigma_batch
    return (gamma * (x_hat * r + d) + beta, new_mean, new_var,
            {"x_hat": x_hat, "inv_std": 1 / sigma_batch, "r": r, "d": d})
