"""bn_lib's Batch Normalization against PyTorch, the independent oracle.

Forward, backward (against autograd), running statistics over several steps with batches
of different sizes, and eval mode; 2-D, 3-D and 4-D input; float64 to 1e-10 and float32
to 1e-4 relative to the scale of the values; momentum 0.1, 0.5 and None; on every
available device.
"""

import numpy as np
import pytest
import torch
from conftest import to_numpy, to_torch

import bn_lib

SHAPES = [(32, 7), (16, 5, 9), (8, 4, 6, 5)]
# float32: bn_lib sums in NumPy, PyTorch in its own kernels; both round at ~1e-7 per
# operation, and the compact backward adds a few sums over m values: 1e-4 is loose
# enough for every order of summation and tight enough to catch a wrong formula.
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def torch_bn(num_features, ndim, momentum, dtype, device, gamma, beta):
    cls = torch.nn.BatchNorm2d if ndim == 4 else torch.nn.BatchNorm1d
    layer = cls(num_features, momentum=momentum).to(device=device, dtype=_torch_dtype(dtype))
    with torch.no_grad():
        layer.weight.copy_(to_torch(gamma, device))
        layer.bias.copy_(to_torch(beta, device))
    return layer


def _torch_dtype(dtype):
    return torch.float64 if dtype == np.float64 else torch.float32


def assert_close(ours, theirs, dtype, what):
    theirs = np.asarray(theirs)
    scale = max(1.0, float(np.max(np.abs(theirs))))
    err = float(np.max(np.abs(np.asarray(ours, dtype=np.float64) - theirs)))
    assert err <= TOLERANCE[dtype] * scale, f"{what}: max abs error {err:.3g}"


def make_layers(shape, momentum, dtype, device, rng):
    c = shape[1]
    ours = bn_lib.BatchNorm(c, momentum=momentum)
    ours.gamma[...] = rng.uniform(0.5, 2.0, c)
    ours.beta[...] = rng.standard_normal(c)
    theirs = torch_bn(c, len(shape), momentum, dtype, device, ours.gamma.astype(dtype),
                      ours.beta.astype(dtype))
    return ours, theirs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward(shape, dtype, device, rng):
    ours, theirs = make_layers(shape, 0.1, dtype, device, rng)
    x = (5 * rng.standard_normal(shape) + 12).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)

    y = ours.forward(x)
    dx = ours.backward(dy)
    assert y.dtype == dtype and dx.dtype == dtype

    xt = to_torch(x, device, requires_grad=True)
    yt = theirs(xt)
    yt.backward(to_torch(dy, device))
    assert_close(y, to_numpy(yt), dtype, "forward")
    assert_close(dx, to_numpy(xt.grad), dtype, "dx")
    assert_close(ours.dgamma, to_numpy(theirs.weight.grad), dtype, "dgamma")
    assert_close(ours.dbeta, to_numpy(theirs.bias.grad), dtype, "dbeta")


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("shape", SHAPES)
def test_running_statistics_and_eval(shape, momentum, device, rng):
    dtype = np.float64
    ours, theirs = make_layers(shape, momentum, dtype, device, rng)
    # batches of different sizes, each with its own mean and scale
    for step, n in enumerate([shape[0], 3, shape[0] + 5, 2]):
        x = (rng.uniform(0.5, 3) * rng.standard_normal((n,) + shape[1:]) + step).astype(dtype)
        ours.forward(x)
        theirs(to_torch(x, device))
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == 4
    assert_close(ours.running_mean, to_numpy(theirs.running_mean), dtype, "running_mean")
    assert_close(ours.running_var, to_numpy(theirs.running_var), dtype, "running_var")

    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    xt = to_torch(x, device, requires_grad=True)
    yt = theirs(xt)
    yt.backward(to_torch(dy, device))
    assert_close(ours.forward(x), to_numpy(yt), dtype, "eval forward")
    assert_close(ours.backward(dy), to_numpy(xt.grad), dtype, "eval dx")
    assert_close(ours.dgamma, to_numpy(theirs.weight.grad), dtype, "eval dgamma")


@pytest.mark.parametrize("shape", SHAPES)
def test_functional_api_matches_torch_functional(shape, device, rng):
    c = shape[1]
    x = 3 * rng.standard_normal(shape) - 2
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    y, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps=1e-3)
    yt = torch.nn.functional.batch_norm(
        to_torch(x, device), None, None, to_torch(gamma, device), to_torch(beta, device),
        training=True, eps=1e-3)
    assert_close(y, to_numpy(yt), np.float64, "functional forward")
    y_eval = bn_lib.batch_norm_inference(x, mean, var, gamma, beta, eps=1e-3)
    yt_eval = torch.nn.functional.batch_norm(
        to_torch(x, device), to_torch(mean, device), to_torch(var, device),
        to_torch(gamma, device), to_torch(beta, device), training=False, eps=1e-3)
    assert_close(y_eval, to_numpy(yt_eval), np.float64, "functional inference")


def test_float16_input_gives_float16_output(rng):
    x = rng.standard_normal((16, 3)).astype(np.float16)
    y, _ = bn_lib.batch_norm_forward(x, np.ones(3), np.zeros(3))
    yt = torch.nn.functional.batch_norm(torch.tensor(x, dtype=torch.float32), None, None,
                                        training=True)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), yt.numpy(), atol=5e-3)
