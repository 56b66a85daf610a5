"""The global sums with the rank's own count m_r in place of the global M in the backward
pass."""

MUST_FAIL = "test_10_sync.py::test_backward_matches_autograd[unequal]"


def sync_backward(dy_r, x_hat_r, gamma, inv_std, sum_dy, sum_dy_x_hat, total_count):
    m = dy_r.shape[0]
    return gamma * inv_std / m * (m * dy_r - sum_dy - x_hat_r * sum_dy_x_hat)
