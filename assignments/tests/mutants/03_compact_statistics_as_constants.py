"""The classic mistake: mu and sigma treated as constants, so dx = gamma * dy / sigma."""

MUST_FAIL = "test_03_backward.py::test_compact_sum_dx_is_zero[m16]"


def compact_backward(dy, x_hat, gamma, inv_std):
    return gamma * inv_std * dy, (dy * x_hat).sum(axis=0), dy.sum(axis=0)
