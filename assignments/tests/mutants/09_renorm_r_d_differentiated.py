"""r and d differentiated instead of held constant: unclipped, the forward pass is
(x - mu) / sigma with the running statistics, and its gradient gamma * dy / sigma drops
the batch-statistics terms (the situation the stop-gradient exists to avoid)."""

MUST_FAIL = "test_09_renorm.py::test_backward_matches_autograd[unclipped]"


def batch_renorm_backward(dy, x_hat, gamma, inv_std, r, d):
    dx = gamma * r * inv_std * dy  # r / sigma_B = 1 / sigma where r is not clipped
    return dx, (dy * (x_hat * r + d)).sum(axis=0), dy.sum(axis=0)
