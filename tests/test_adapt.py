"""Changing BN statistics after training (bn_lib.adapt): FrozenBatchNorm's bad input,
freeze_batchnorm, and update_bn leaving the parameters alone. Against PyTorch:
``test_adapt_torch.py``."""

import copy

import numpy as np
import pytest

import bn_lib


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


def test_update_bn_leaves_parameters_alone(rng):
    model = bn_lib.mlp([5, 6, 3], norm="batch")
    before = [value.copy() for value, _ in model.parameters()]
    bn_lib.update_bn(model, rng.standard_normal((20, 5)))
    for old, (new, _) in zip(before, model.parameters()):
        np.testing.assert_array_equal(old, new)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn_lib.update_bn(model, rng.standard_normal((1, 5)))
