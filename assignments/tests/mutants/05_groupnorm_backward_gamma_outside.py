"""The Group Normalization backward pass with gamma applied after the group sums, as BN's
compact formula allows: but a group holds several channels, each with its own gamma."""

MUST_FAIL = "test_05_layer_group.py::test_groupnorm_backward_matches_autograd[G=2]"


def groupnorm_backward(dy, x_hat, gamma, inv_std, G):
    n = dy.shape[0]
    rows, x_rows = dy.reshape(n, G, -1), x_hat.reshape(n, G, -1)
    m = rows.shape[2]
    dx = inv_std[:, :, None] / m * (m * rows - rows.sum(axis=2, keepdims=True)
                                    - x_rows * (rows * x_rows).sum(axis=2, keepdims=True))
    dx = gamma.reshape(1, -1, 1, 1) * dx.reshape(dy.shape)
    return dx, (dy * x_hat).sum(axis=(0, 2, 3)), dy.sum(axis=(0, 2, 3))
