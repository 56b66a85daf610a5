"""Changing BN statistics after training (bn_lib.adapt): FrozenBatchNorm against
PyTorch's eval-mode BatchNorm, update_bn against torch.optim.swa_utils.update_bn, and
freeze_batchnorm."""

import copy

import numpy as np
import pytest
import torch

import bn_lib
from bn_lib.testing import assert_close, to_torch


def trained_bn(rng, c=4):
    bn = bn_lib.BatchNorm(c)
    for _ in range(3):
        bn.forward(3 * rng.standard_normal((10, c)) + 2)
    bn.gamma[...], bn.beta[...] = rng.uniform(0.5, 2, c), rng.standard_normal(c)
    return bn


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 6), (2, 4, 3, 3)], ids=str)
def test_frozen_batchnorm_matches_pytorch_eval_in_both_modes(shape, device, rng):
    bn = trained_bn(rng)
    frozen = bn_lib.FrozenBatchNorm.from_batchnorm(bn)
    theirs = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(
        4, dtype=torch.float64, device=device).eval()
    with torch.no_grad():
        for tensor, value in ((theirs.weight, bn.gamma), (theirs.bias, bn.beta),
                              (theirs.running_mean, bn.running_mean),
                              (theirs.running_var, bn.running_var)):
            tensor.copy_(to_torch(value, device))
    before = {k: getattr(frozen, k).copy() for k in ("gamma", "beta", "running_mean",
                                                    "running_var")}
    for mode in (True, False):
        frozen.train(mode)
        x, dy = 2 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
        xt = to_torch(x, device, requires_grad=True)
        yt = theirs(xt)
        (dxt,) = torch.autograd.grad(yt, (xt,), to_torch(dy, device))
        assert_close(frozen.forward(x), yt, "float64", what="y")
        assert_close(frozen.backward(dy), dxt, "float64", what="dx")
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(frozen, name), value, err_msg=name)
    assert frozen.num_parameters() == 0


def test_frozen_batchnorm_bad_input():
    with pytest.raises(ValueError, match="no running statistics"):
        bn_lib.FrozenBatchNorm.from_batchnorm(bn_lib.BatchNorm(3, track_running_stats=False))
    with pytest.raises(ValueError, match="expected 3 channels on axis 1"):
        bn_lib.FrozenBatchNorm(3).forward(np.ones((4, 5)))
    with pytest.raises(TypeError, match="floating-point"):
        bn_lib.FrozenBatchNorm(3).forward(np.ones((4, 3), dtype=int))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        bn_lib.FrozenBatchNorm(3).backward(np.ones((4, 3)))


def test_freeze_batchnorm_replaces_every_layer_and_keeps_the_function(rng):
    model = bn_lib.residual_mlp(6, 5, 3, num_blocks=2)
    x = rng.standard_normal((16, 6))
    bn_lib.update_bn(model, x)
    y_eval = model.eval().forward(x)
    frozen = bn_lib.freeze_batchnorm(copy.deepcopy(model)).train()
    assert not any(isinstance(layer, bn_lib.BatchNorm) for layer in _all_layers(frozen))
    assert sum(isinstance(layer, bn_lib.FrozenBatchNorm) for layer in _all_layers(frozen)) == 5
    np.testing.assert_allclose(frozen.forward(x), y_eval, rtol=0, atol=1e-12)
    assert frozen.num_parameters() == model.num_parameters() - 2 * 5 * 5


def _all_layers(module):
    found = [module]
    for child in module.children():
        found += _all_layers(child)
    return found


def torch_mlp(model):
    layers = []
    for layer in model.layers:
        if isinstance(layer, bn_lib.Linear):
            t = torch.nn.Linear(layer.W.shape[1], layer.W.shape[0], bias=layer.has_bias,
                                dtype=torch.float64)
        elif isinstance(layer, bn_lib.BatchNorm):
            t = torch.nn.BatchNorm1d(layer.num_features, momentum=layer.momentum,
                                     dtype=torch.float64)
        else:
            t = torch.nn.ReLU()
        with torch.no_grad():
            for tensor, (value, _) in zip(t.parameters(), layer.parameters()):
                tensor.copy_(to_torch(value))
        layers.append(t)
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("batch_size", [16, 8])  # 8: a last batch of 2
def test_update_bn_matches_torch_swa_utils(batch_size, rng):
    model = bn_lib.mlp([5, 6, 6, 3], norm="batch", seed=1)
    theirs = torch_mlp(model)
    x = 2 * rng.standard_normal((50, 5)) + 1
    for bn in model.layers:  # some stale statistics, to be replaced
        if isinstance(bn, bn_lib.BatchNorm):
            bn.running_mean[...] = 5.0
    model.eval()
    assert bn_lib.update_bn(model, x, batch_size=batch_size) == 2
    loader = torch.utils.data.DataLoader(to_torch(x), batch_size=batch_size)
    torch.optim.swa_utils.update_bn(loader, theirs)
    assert not model.training
    for ours, t in zip(model.layers, theirs):
        if isinstance(ours, bn_lib.BatchNorm):
            assert ours.momentum == t.momentum == 0.1
            assert_close(ours.running_mean, t.running_mean, "float64", "reduction", "mean")
            assert_close(ours.running_var, t.running_var, "float64", "reduction", "var")


def test_update_bn_leaves_parameters_alone(rng):
    model = bn_lib.mlp([5, 6, 3], norm="batch")
    before = [value.copy() for value, _ in model.parameters()]
    bn_lib.update_bn(model, rng.standard_normal((20, 5)))
    for old, (new, _) in zip(before, model.parameters()):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(ValueError, match="at least 2 examples"):
        bn_lib.update_bn(model, rng.standard_normal((1, 5)))
