"""dgamma from BN's formula, sum(dy * x_hat), forgetting that gamma multiplies
x_hat * r + d: the r and the d term are lost."""

MUST_FAIL = "test_09_renorm.py::test_backward_matches_autograd[clipped]"


def batch_renorm_backward(dy, x_hat, gamma, inv_std, r, d):
    m = dy.shape[0]
    dbeta, dscale = dy.sum(axis=0), (dy * x_hat).sum(axis=0)
    dx = gamma * r * inv_std / m * (m * dy - dbeta - x_hat * dscale)
    return dx, dscale, dbeta
