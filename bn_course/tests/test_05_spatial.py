"""Assignment 05, task "spatial": Batch Normalization of (N, C, L) and (N, C, H, W) input.

Oracle: ``nn.BatchNorm1d`` and ``nn.BatchNorm2d`` in training mode, with autograd
(chapter 05: statistics per channel over m' = N * L or N * H * W values).
"""

import pytest
import torch
from course_helpers import (
    affine,
    assert_close,
    batch,
    bn_cache,
    describe,
    task,
    torch_batch_stats,
    torch_bn_layer,
    unpack,
    upstream,
)

from bn_lib.testing import to_numpy, to_torch

pytestmark = task("spatial")
# bn_lib's forward and backward passes, and every layer built on them: not available
BN_LIB_NOT_ALLOWED = ("batch_norm_forward", "batch_norm_backward", "batch_statistics",
                      "normalize", "input_gradient", "channel_sum", "channel_dot",
                      "BatchNorm", "BatchRenorm", "SyncBatchNorm", "sync_batch_norm_forward",
                      "sync_batch_norm_backward")
SHAPES = {"3d": (6, 4, 9), "4d": (5, 3, 4, 6)}


def torch_layer_grads(x, gamma, beta, dy):
    """BatchNorm1d/2d in training mode: y and (dx, dgamma, dbeta) by autograd."""
    layer = torch_bn_layer(x.ndim, x.shape[1])
    with torch.no_grad():
        layer.weight.copy_(to_torch(gamma))
        layer.bias.copy_(to_torch(beta))
    xt = to_torch(x, requires_grad=True)
    yt = layer(xt)
    yt.backward(to_torch(dy))
    return (to_numpy(yt), to_numpy(xt.grad), to_numpy(layer.weight.grad),
            to_numpy(layer.bias.grad))


def forward(learner, x, gamma, beta):
    result = learner.call("spatial_batchnorm_forward", x.copy(), gamma.copy(), beta.copy())
    y, cache = unpack(result, ("y", "cache"), "spatial_batchnorm_forward")
    if not isinstance(cache, dict) or not {"mean", "var"} <= set(cache):
        raise AssertionError("cache must be a dict with keys x_hat, mean, var, inv_std, "
                             f"got {describe(cache)}")
    return y, cache


@pytest.mark.parametrize("layout", ["3d", "4d"])
def test_forward_matches_pytorch(learner, layout):
    x = batch(SHAPES[layout])
    gamma, beta = affine(x.shape[1])
    y, _ = forward(learner, x, gamma, beta)
    expected, *_ = torch_layer_grads(x, gamma, beta, upstream(x.shape))
    name = "BatchNorm2d" if x.ndim == 4 else "BatchNorm1d"
    assert_close("y", y, expected, f"{name} in training mode")


def test_statistics_per_channel(learner):
    x = batch(SHAPES["4d"])
    _, cache = forward(learner, x, *affine(x.shape[1]))
    mean, var = torch_batch_stats(x)
    assert_close("cache['mean']", cache["mean"], mean, "the mean over (N, H, W)")
    assert_close("cache['var']", cache["var"], var, "the biased variance over (N, H, W)")


@pytest.mark.parametrize("layout", ["3d", "4d"])
def test_backward_matches_autograd(learner, layout):
    x = batch(SHAPES[layout])
    gamma, beta = affine(x.shape[1])
    dy = upstream(x.shape)
    x_hat, inv_std = bn_cache(x, gamma, beta)
    result = learner.call("spatial_batchnorm_backward", dy, x_hat, gamma, inv_std)
    dx, dgamma, dbeta = unpack(result, ("dx", "dgamma", "dbeta"), "spatial_batchnorm_backward")
    _, *expected = torch_layer_grads(x, gamma, beta, dy)
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), (dx, dgamma, dbeta), expected):
        assert_close(name, ours, theirs, "PyTorch autograd")
