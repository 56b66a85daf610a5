"""Residual blocks (bn_lib.residual): gradients, PyTorch parity of a residual block, and
zero_init_residual starting every block as the identity."""

import numpy as np
import pytest
import torch

import bn_lib
from bn_lib.testing import assert_close, to_torch


def test_residual_gradients(rng):
    branch = bn_lib.Sequential(bn_lib.Linear(4, 4, rng=1), bn_lib.Tanh(),
                               bn_lib.Linear(4, 4, rng=2))
    errors = bn_lib.check_module_gradients(bn_lib.Residual(branch),
                                           rng.standard_normal((5, 4)))
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("norm", ["batch", None])
def test_residual_mlp_gradients(norm, rng):
    model = bn_lib.residual_mlp(5, 4, 3, num_blocks=2, norm=norm, seed=3)
    errors = bn_lib.check_module_gradients(model, rng.standard_normal((6, 5)), normwise=True)
    assert max(errors.values()) < 1e-6, errors


def test_residual_block_matches_pytorch(device, rng):
    model = bn_lib.residual_mlp(5, 4, 3, num_blocks=1, seed=2)
    linears = [layer for layer in model.layers if isinstance(layer, bn_lib.Linear)]
    branch_linears = [layer for layer in model[3].branch.layers
                      if isinstance(layer, bn_lib.Linear)]

    def t_linear(layer):
        t = torch.nn.Linear(*layer.W.T.shape, bias=layer.has_bias, dtype=torch.float64,
                            device=device)
        with torch.no_grad():
            t.weight.copy_(to_torch(layer.W, device))
            if layer.has_bias:
                t.bias.copy_(to_torch(layer.b, device))
        return t

    def t_bn():
        return torch.nn.BatchNorm1d(4, dtype=torch.float64, device=device)

    stem = torch.nn.Sequential(t_linear(linears[0]), t_bn(), torch.nn.ReLU())
    branch = torch.nn.Sequential(t_linear(branch_linears[0]), t_bn(), torch.nn.ReLU(),
                                 t_linear(branch_linears[1]), t_bn())
    head = t_linear(linears[-1])
    x, dy = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
    xt = to_torch(x, device, requires_grad=True)
    h = stem(xt)
    yt = head(torch.relu(h + branch(h)))
    (dxt,) = torch.autograd.grad(yt, (xt,), to_torch(dy, device))
    assert_close(model.forward(x), yt, "float64", what="y")
    assert_close(model.backward(dy), dxt, "float64", what="dx")


@pytest.mark.parametrize("norm", ["batch", None])
def test_zero_init_residual_makes_every_block_the_identity(norm, rng):
    model = bn_lib.residual_mlp(6, 5, 3, num_blocks=3, norm=norm, zero_init_residual=True)
    x = rng.standard_normal((10, 6))
    h = x
    for layer in model.layers[:3 if norm else 2]:  # the stem
        h = layer.forward(h)
    shallow = model.layers[-1].forward(h)  # stem then head, no blocks
    np.testing.assert_allclose(model.forward(x), shallow, rtol=0, atol=1e-12)


def test_branch_must_keep_the_shape():
    block = bn_lib.Residual(bn_lib.Linear(4, 3))
    with pytest.raises(ValueError, match="changed the shape"):
        block.forward(np.ones((2, 4)))
