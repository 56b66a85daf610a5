"""The eval forward pass normalizing with the test batch's own statistics."""

import numpy as np

MUST_FAIL = "test_04_test_time.py::test_eval_forward_matches_pytorch"


def batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    return gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps) + beta
