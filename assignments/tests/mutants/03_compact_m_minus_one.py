"""The compact formula with m - 1 in place of m (the unbiased count leaking into the
gradient): close for large batches, far off on a batch of three."""

MUST_FAIL = "test_03_backward.py::test_compact_equals_staged"


def compact_backward(dy, x_hat, gamma, inv_std):
    m = dy.shape[0] - 1
    dbeta, dgamma = dy.sum(axis=0), (dy * x_hat).sum(axis=0)
    return gamma * inv_std / m * (m * dy - dbeta - x_hat * dgamma), dgamma, dbeta
