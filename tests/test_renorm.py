"""Batch Renormalization (bn_lib.renorm): finite-difference checks, the two limits where
it must equal Batch Normalization, the r/d schedule and bad input. Against an independent
PyTorch version of Ioffe (2017): ``test_renorm_torch.py``."""

import numpy as np
import pytest

import bn_lib

SHAPES = [(6, 4), (5, 4, 3), (3, 4, 3, 2)]


def renorm_layer(c, rng, momentum=0.1, **limits):
    layer = bn_lib.BatchRenorm(c, momentum=momentum, **limits)
    layer.gamma[...], layer.beta[...] = rng.uniform(0.5, 2, c), rng.standard_normal(c)
    # running statistics some way off the batches below, so some r and d are clipped
    layer.running_mean[...] = rng.normal(3, 2, c)
    layer.running_var[...] = rng.uniform(0.5, 60, c)
    return layer


def shifted_input(rng, shape):
    return 5 * rng.standard_normal(shape) + 3


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_limits_one_and_zero_are_batch_norm(shape, rng):
    renorm = renorm_layer(shape[1], rng, r_max=1.0, d_max=0.0)
    bn = bn_lib.BatchNorm(shape[1])
    for name in ("gamma", "beta", "running_mean", "running_var"):
        getattr(bn, name)[...] = getattr(renorm, name)
    for mode in ("train", "train", "eval"):
        renorm.train(mode == "train")
        bn.train(mode == "train")
        x, dy = shifted_input(rng, shape), rng.standard_normal(shape)
        np.testing.assert_allclose(renorm.forward(x), bn.forward(x), rtol=0, atol=1e-12)
        np.testing.assert_allclose(renorm.backward(dy), bn.backward(dy), rtol=0, atol=1e-12)
        np.testing.assert_allclose(renorm.dgamma, bn.dgamma, rtol=0, atol=1e-12)
        np.testing.assert_allclose(renorm.dbeta, bn.dbeta, rtol=0, atol=1e-12)
        np.testing.assert_allclose(renorm.running_var, bn.running_var, rtol=1e-14)


def test_unclipped_training_output_equals_eval_output(rng):
    layer = renorm_layer(4, rng, momentum=0.0, r_max=1e3, d_max=1e3)
    x = shifted_input(rng, (7, 4))
    y_train = layer.forward(x)
    assert np.all((layer.r > 1e-3) & (layer.r < 1e3) & (np.abs(layer.d) < 1e3))
    np.testing.assert_allclose(y_train, layer.eval().forward(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradients_with_r_and_d_held_fixed(shape, rng):
    """Finite differences of gamma * (x_hat * r + d) + beta with r and d constants,
    written from scratch, against the layer's backward pass."""
    layer = renorm_layer(shape[1], rng, momentum=0.0)
    x, dy = shifted_input(rng, shape), rng.standard_normal(shape)
    layer.forward(x)
    dx = layer.backward(dy)
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, -1) + (1,) * (len(shape) - 2)
    r, d = layer.r.reshape(bshape), layer.d.reshape(bshape)

    def f(x, gamma=layer.gamma, beta=layer.beta):
        x_hat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(
            x.var(axis=axes, keepdims=True) + layer.eps)
        return gamma.reshape(bshape) * (x_hat * r + d) + beta.reshape(bshape)

    gamma, beta = layer.gamma.copy(), layer.beta.copy()
    numeric = {"x": bn_lib.numerical_gradient(f, x.copy(), dy),
               "gamma": bn_lib.numerical_gradient(lambda g: f(x, gamma=g), gamma, dy),
               "beta": bn_lib.numerical_gradient(lambda b: f(x, beta=b), beta, dy)}
    for name, analytic in (("x", dx), ("gamma", layer.dgamma), ("beta", layer.dbeta)):
        assert bn_lib.relative_error(analytic, numeric[name]) < 1e-6, name


def test_stop_gradient_is_real_unless_clipped(rng):
    """With r and d clipped on every channel they do not depend on x, so the layer's
    own finite differences agree; unclipped, they differ by the dropped terms."""
    clipped = renorm_layer(3, rng, momentum=0.0, r_max=1.0001, d_max=1e-4)
    x = shifted_input(rng, (6, 3))
    errors = bn_lib.check_module_gradients(clipped, x)
    assert max(errors.values()) < 1e-6, errors
    free = renorm_layer(3, rng, momentum=0.0, r_max=1e3, d_max=1e3)
    assert bn_lib.check_module_gradients(free, x)["x"] > 1e-2


def test_schedule():
    assert bn_lib.renorm_limits(4, 3.0, 5.0, warmup_steps=5, ramp_steps=10) == (1.0, 0.0)
    assert bn_lib.renorm_limits(9, 3.0, 5.0, warmup_steps=5, ramp_steps=10) == (2.0, 2.5)
    assert bn_lib.renorm_limits(100, 3.0, 5.0, warmup_steps=5, ramp_steps=10) == (3.0, 5.0)
    layer = bn_lib.BatchRenorm(2, r_max=3.0, d_max=5.0, warmup_steps=1, ramp_steps=2)
    seen = []
    for _ in range(4):
        seen.append(layer.limits())
        layer.forward(np.random.default_rng(0).standard_normal((4, 2)))
    assert seen == [(1.0, 0.0), (2.0, 2.5), (3.0, 5.0), (3.0, 5.0)]


def test_bad_input():
    with pytest.raises(ValueError, match="r_max >= 1"):
        bn_lib.BatchRenorm(3, r_max=0.5)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn_lib.BatchRenorm(3).forward(np.ones((1, 3)))
    with pytest.raises(ValueError, match="expected 3 channels"):
        bn_lib.BatchRenorm(3).forward(np.ones((4, 2)))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        bn_lib.BatchRenorm(3).backward(np.ones((4, 3)))


def test_float32_in_float32_out(rng):
    layer = bn_lib.BatchRenorm(3)
    x = shifted_input(rng, (8, 3)).astype(np.float32)
    assert layer.forward(x).dtype == np.float32
    assert layer.backward(np.ones_like(x)).dtype == np.float32
