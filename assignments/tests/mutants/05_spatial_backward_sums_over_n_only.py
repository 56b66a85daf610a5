"""dgamma and dbeta summed over the batch axis only: one per channel and position."""

MUST_FAIL = "test_05_spatial.py::test_backward_matches_autograd[3d]"


def spatial_batchnorm_backward(dy, x_hat, gamma, inv_std):
    shape = (1, -1) + (1,) * (dy.ndim - 2)
    m = dy.size // dy.shape[1]
    dbeta, dgamma = dy.sum(axis=0), (dy * x_hat).sum(axis=0)
    scale = (gamma * inv_std / m).reshape(shape)
    return scale * (m * dy - dbeta - x_hat * dgamma), dgamma, dbeta
