"""bn_lib's Batch Normalization against PyTorch, the independent oracle.

Every check of ``bn_lib.testing.check_case`` (training forward and backward against
autograd, running statistics over several steps, eval mode) for 2-D, 3-D and 4-D input in
float64 and float32 on every available device, each check its own test; then running
statistics with batches of changing size for momentum 0.1, 0.5 and None, the functional
API, PyTorch's switches, and float16.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bn_lib
from bn_lib.testing import assert_close, check_case, to_numpy, to_torch

SHAPES = [(2, 5), (32, 7), (16, 5, 9), (8, 4, 6, 5)]
CHECKS = ["train forward y", "train backward dx", "train backward dgamma",
          "train backward dbeta", "running_mean (momentum 0.1)", "running_var (momentum 0.1)",
          "num_batches_tracked (momentum 0.1)", "running_mean (cumulative)",
          "running_var (cumulative)", "num_batches_tracked (cumulative)", "eval forward y",
          "eval backward dx"]
_cases = {}


def case_rows(shape, dtype, device):
    """check_case once per (shape, dtype, device); each check then asserts its own row."""
    key = (shape, dtype, device)
    if key not in _cases:
        _cases[key] = {row["check"]: row for row in check_case(shape, dtype, device)}
    return _cases[key]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batchnorm_check(shape, dtype, check, device):
    row = case_rows(shape, dtype, device)[check]
    assert row["passed"], row


def torch_batchnorm(shape, momentum, gamma, beta, device, **switches):
    cls = torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d
    layer = cls(shape[1], momentum=momentum, dtype=torch.float64, device=device, **switches)
    if layer.affine:
        with torch.no_grad():
            layer.weight.copy_(to_torch(gamma, device))
            layer.bias.copy_(to_torch(beta, device))
    return layer


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_running_statistics_with_changing_batch_sizes(shape, momentum, device, rng):
    c = shape[1]
    ours = bn_lib.BatchNorm(c, momentum=momentum)
    ours.gamma[...], ours.beta[...] = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
    theirs = torch_batchnorm(shape, momentum, ours.gamma, ours.beta, device)
    for step, n in enumerate([shape[0], 3, shape[0] + 5, 2]):
        x = rng.uniform(0.5, 3) * rng.standard_normal((n,) + shape[1:]) + step
        ours.forward(x)
        theirs(to_torch(x, device))
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == 4
    assert_close(ours.running_mean, theirs.running_mean, "float64", "reduction", "running_mean")
    assert_close(ours.running_var, theirs.running_var, "float64", "reduction", "running_var")


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_functional_api_matches_torch_functional(shape, mode, device, rng):
    c = shape[1]
    x = 3 * rng.standard_normal(shape) - 2
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    dy = rng.standard_normal(shape)
    xt, gt, bt = (to_torch(a, device, requires_grad=True) for a in (x, gamma, beta))
    if mode == "train":
        y, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps=1e-3)
        yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-3)
    else:
        y, cache = bn_lib.batch_norm_inference(x, mean, var, gamma, beta, eps=1e-3)
        yt = F.batch_norm(xt, to_torch(mean, device), to_torch(var, device), gt, bt,
                          training=False, eps=1e-3)
    grads = bn_lib.batch_norm_backward(dy, cache)
    grads_t = torch.autograd.grad(yt, (xt, gt, bt), to_torch(dy, device))
    assert_close(y, yt, "float64", what=f"{mode} y")
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), grads, grads_t):
        assert_close(ours, theirs, "float64", what=f"{mode} {name}")


@pytest.mark.parametrize("switches", [{"affine": False}, {"track_running_stats": False},
                                      {"affine": False, "track_running_stats": False}],
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_pytorch_switches(switches, device, rng):
    shape = (6, 3, 4, 4)
    ours = bn_lib.BatchNorm(3, **switches)
    theirs = torch_batchnorm(shape, 0.1, ours.gamma, ours.beta, device, **switches)
    assert (ours.running_mean is None) == (theirs.running_mean is None)
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    for mode in ("train", "eval", "train"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        x, dy = 2 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
        xt = to_torch(x, device, requires_grad=True)
        yt = theirs(xt)
        (dxt,) = torch.autograd.grad(yt, (xt,), to_torch(dy, device))
        assert_close(ours.forward(x), yt, "float64", what=f"{mode} y")
        assert_close(ours.backward(dy), dxt, "float64", what=f"{mode} dx")
    if ours.track_running_stats:
        assert_close(ours.running_var, theirs.running_var, "float64", "reduction",
                     "running_var")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_float16_input_gives_float16_output(mode, rng):
    x = (3 * rng.standard_normal((16, 3)) + 1).astype(np.float16)
    layer = bn_lib.BatchNorm(3).train(mode == "train")
    y = layer.forward(x)
    theirs = torch.nn.BatchNorm1d(3).train(mode == "train")
    yt = theirs(torch.tensor(x, dtype=torch.float32))
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), to_numpy(yt), atol=5e-3)
    assert layer.backward(np.ones_like(x)).dtype == np.float16
