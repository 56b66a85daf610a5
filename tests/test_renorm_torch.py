"""Batch Renormalization (bn_lib.renorm) against an independent PyTorch version of Ioffe
(2017), Algorithm 1, with r and d detached (the paper's stop-gradient)."""

import numpy as np
import pytest
from test_renorm import SHAPES, renorm_layer, shifted_input

from bn_lib.testing import assert_close, to_torch

torch = pytest.importorskip("torch")


def torch_batch_renorm(x, gamma, beta, running_mean, running_var, r_max, d_max, eps=1e-5):
    """Algorithm 1 of the paper in PyTorch, written from the paper, not from bn_lib."""
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    sigma_batch = torch.sqrt(var + eps)
    sigma = torch.sqrt(running_var + eps)
    r = (sigma_batch / sigma).clamp(1 / r_max, r_max).detach()
    d = ((mean - running_mean) / sigma).clamp(-d_max, d_max).detach()
    x_hat = (x - mean.view(shape)) / sigma_batch.view(shape)
    y = gamma.view(shape) * (x_hat * r.view(shape) + d.view(shape)) + beta.view(shape)
    return y, r, d, mean.detach(), x.var(dims, unbiased=True).detach()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_pytorch_over_steps(shape, device, rng):
    c = shape[1]
    ours = renorm_layer(c, rng, r_max=1.5, d_max=0.5)
    gamma, beta = (to_torch(v, device, requires_grad=True) for v in (ours.gamma, ours.beta))
    mean_t, var_t = to_torch(ours.running_mean, device), to_torch(ours.running_var, device)
    clipped = free = 0
    for _ in range(3):
        x, dy = shifted_input(rng, shape), rng.standard_normal(shape)
        xt = to_torch(x, device, requires_grad=True)
        yt, r, d, batch_mean, batch_var = torch_batch_renorm(xt, gamma, beta, mean_t, var_t,
                                                             1.5, 0.5)
        grads = torch.autograd.grad(yt, (xt, gamma, beta), to_torch(dy, device))
        y = ours.forward(x)
        dx = ours.backward(dy)
        assert_close(y, yt, "float64", what="y")
        assert_close(ours.r, r, "float64", what="r")
        assert_close(ours.d, d, "float64", what="d")
        for name, value, ref in zip(("dx", "dgamma", "dbeta"), (dx, ours.dgamma, ours.dbeta),
                                    grads):
            assert_close(value, ref, "float64", what=name)
        at_limit = (np.isclose(ours.r, 1 / 1.5) | np.isclose(ours.r, 1.5)
                    | np.isclose(np.abs(ours.d), 0.5))
        clipped += at_limit.sum()
        free += (~at_limit).sum()
        mean_t = 0.9 * mean_t + 0.1 * batch_mean
        var_t = 0.9 * var_t + 0.1 * batch_var
        assert_close(ours.running_mean, mean_t, "float64", "reduction", "running_mean")
        assert_close(ours.running_var, var_t, "float64", "reduction", "running_var")
    assert clipped > 0 and free > 0  # both branches of the clipping were exercised
