"""BN's compact formula copied into Layer Normalization with gamma taken out of the sums:
right in BN, where gamma is constant over the batch; wrong here, where it varies along the
features the sums run over."""

MUST_FAIL = "test_05_layer_group.py::test_layernorm_backward_matches_autograd"


def layernorm_backward(dy, x_hat, gamma, inv_std):
    d = dy.shape[1]
    sum_dy = dy.sum(axis=1, keepdims=True)
    sum_dy_x_hat = (dy * x_hat).sum(axis=1, keepdims=True)
    dx = gamma * inv_std[:, None] / d * (d * dy - sum_dy - x_hat * sum_dy_x_hat)
    return dx, (dy * x_hat).sum(axis=0), dy.sum(axis=0)
