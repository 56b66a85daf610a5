"""The biased batch variance (divide by m_k) averaged: the running variance of PyTorch,
and of update_bn, uses the unbiased one, m_k / (m_k - 1) times larger."""

import numpy as np

MUST_FAIL = "test_09_recalibrate.py::test_matches_update_bn[equal_batches]"


def recalibrate(batches):
    axes = [(0,) + tuple(range(2, x.ndim)) for x in batches]
    return (np.mean([x.mean(axis=a) for x, a in zip(batches, axes)], axis=0),
            np.mean([x.var(axis=a) for x, a in zip(batches, axes)], axis=0))
