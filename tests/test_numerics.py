"""Numerical behaviour: stable statistics, dtypes and the cumulative average."""

import numpy as np
import pytest

import bn_lib


@pytest.mark.parametrize("shape", [(4096, 8), (64, 8, 16, 16)])
def test_float32_with_large_mean_is_stable(shape):
    """Mean 1000, std 1 in float32: within 2e-3 of a float64 reference.

    The one-pass formula var = E[x^2] - E[x]^2 loses every significant digit here
    (x^2 ~ 1e6 while var ~ 1), which this test shows too, so it can fail.
    """
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) + 1000).astype(np.float32)
    c = shape[1]
    y, _ = bn_lib.batch_norm_forward(x, np.ones(c), np.zeros(c))
    reference, _ = bn_lib.batch_norm_forward(x.astype(np.float64), np.ones(c), np.zeros(c))
    assert y.dtype == np.float32
    assert np.max(np.abs(y - reference)) < 2e-3

    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    naive_var = (x * x).mean(axis=axes, keepdims=True) - mean * mean
    naive = (x - mean) / np.sqrt(np.maximum(naive_var, 0) + 1e-5)
    assert np.max(np.abs(naive - reference)) > 0.1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved_through_layer(dtype):
    rng = np.random.default_rng(1)
    layer = bn_lib.BatchNorm(3)
    x = rng.standard_normal((5, 3, 2)).astype(dtype)
    assert layer.forward(x).dtype == dtype
    assert layer.backward(x).dtype == dtype
    layer.eval()
    assert layer.forward(x).dtype == dtype


def test_momentum_none_is_the_cumulative_average():
    rng = np.random.default_rng(2)
    layer = bn_lib.BatchNorm(2, momentum=None)
    batches = [rng.standard_normal((6, 2)) * (k + 1) + k for k in range(5)]
    for x in batches:
        layer.forward(x)
    np.testing.assert_allclose(layer.running_mean, np.mean([b.mean(0) for b in batches], 0))
    np.testing.assert_allclose(layer.running_var,
                               np.mean([b.var(0, ddof=1) for b in batches], 0))
