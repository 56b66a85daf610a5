"""Finite-difference gradient checks for every layer with parameters, and the loss.

Inputs have a non-zero mean and a non-unit scale (5 * randn + 12, as in CS231n), which
is where a missing term in a BatchNorm backward pass shows up. In float64 with central
differences a correct gradient agrees to ~1e-7 or better; a wrong one is off by ~1.
"""

import numpy as np
import pytest

import bn_lib

THRESHOLD = 1e-6


def shifted_input(rng, shape):
    return 5 * rng.standard_normal(shape) + 12


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 4, 3)])
def test_batchnorm_training(shape, rng):
    layer = bn_lib.BatchNorm(shape[1])
    layer.gamma[...] = rng.uniform(0.5, 2, shape[1])
    layer.beta[...] = rng.standard_normal(shape[1])
    errors = bn_lib.check_module_gradients(layer, shifted_input(rng, shape))
    assert max(errors.values()) < THRESHOLD, errors


def test_batchnorm_eval(rng):
    layer = bn_lib.BatchNorm(3)
    layer.forward(shifted_input(rng, (8, 3)))
    layer.eval()
    errors = bn_lib.check_module_gradients(layer, shifted_input(rng, (5, 3)))
    assert max(errors.values()) < THRESHOLD, errors


def test_linear(rng):
    errors = bn_lib.check_module_gradients(bn_lib.Linear(4, 3, rng=1), shifted_input(rng, (5, 4)))
    assert max(errors.values()) < THRESHOLD, errors


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_conv2d(stride, padding, rng):
    conv = bn_lib.Conv2d(2, 3, 3, stride=stride, padding=padding, rng=1)
    errors = bn_lib.check_module_gradients(conv, shifted_input(rng, (2, 2, 6, 5)))
    assert max(errors.values()) < THRESHOLD, errors


@pytest.mark.parametrize("layer,shape", [
    (bn_lib.LayerNorm(5), (4, 5)), (bn_lib.LayerNorm(5), (2, 3, 5)),
    (bn_lib.GroupNorm(2, 4), (3, 4, 3, 2)), (bn_lib.GroupNorm(4, 4), (3, 4, 3, 2)),
], ids=repr)
def test_layernorm_and_groupnorm(layer, shape, rng):
    layer.gamma[...] = rng.uniform(0.5, 2, layer.gamma.shape)
    layer.beta[...] = rng.standard_normal(layer.beta.shape)
    errors = bn_lib.check_module_gradients(layer, shifted_input(rng, shape))
    assert max(errors.values()) < THRESHOLD, errors


@pytest.mark.parametrize("layer", [bn_lib.Sigmoid(), bn_lib.Tanh()], ids=repr)
def test_activations(layer, rng):
    errors = bn_lib.check_module_gradients(layer, rng.standard_normal((2, 3, 4, 4)))
    assert max(errors.values()) < THRESHOLD, errors


def test_network_with_batchnorm(rng):
    model = bn_lib.mlp([6, 5, 4, 3], activation="tanh", norm="batch", seed=2)
    errors = bn_lib.check_module_gradients(model, shifted_input(rng, (7, 6)))
    assert max(errors.values()) < THRESHOLD, errors


def test_softmax_cross_entropy(rng):
    logits = 3 * rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    _, dlogits = bn_lib.softmax_cross_entropy(logits, labels)
    numeric = bn_lib.numerical_gradient(
        lambda z: bn_lib.softmax_cross_entropy(z, labels)[0], logits)
    assert bn_lib.relative_error(dlogits, numeric) < THRESHOLD


def test_gradient_check_detects_a_wrong_backward(rng):
    """The check itself can fail: treating mu and var as constants is caught."""

    class ConstantStatistics(bn_lib.BatchNorm):
        def backward(self, dy):
            super().backward(dy)
            return dy * self.gamma * self.cache.inv_std  # misses the terms through mu, var

    errors = bn_lib.check_module_gradients(ConstantStatistics(3), shifted_input(rng, (6, 3)))
    assert errors["x"] > 0.1


def test_normwise_error_ignores_noise_on_exact_zeros():
    analytic = np.array([1.0, 0.0])
    numeric = np.array([1.0 + 1e-10, 1e-11])
    assert bn_lib.relative_error(analytic, numeric) == 1.0
    assert bn_lib.relative_error(analytic, numeric, normwise=True) < 1e-9


def test_cache_keeps_the_gamma_of_the_forward_pass(rng):
    layer = bn_lib.BatchNorm(3)
    x, dy = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    layer.forward(x)
    expected = layer.backward(dy)
    layer.forward(x)
    layer.gamma *= 2  # an optimizer step between forward and backward
    np.testing.assert_allclose(layer.backward(dy), expected)
