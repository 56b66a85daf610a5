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


@pytest.mark.parametrize("shape", [(2_000_000, 2), (1, 2, 1024, 1024)])
def test_float32_statistics_over_millions_of_values_match_float64(shape):
    """The per-channel sums accumulate in float64 (as the docstrings say), so float32 input
    with m = 2,000,000 or 1,048,576 values per channel keeps float32's precision: the
    variance to a few float32 roundings, y to 1e-5. Sums of squares kept in float32 (the
    audited ``channel_dot``) were off by 1e-3 of the variance, y by 3.6e-3 on (2e6, 2)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= 2.0
    x += 3.0
    c = shape[1]
    y, cache = bn_lib.batch_norm_forward(x, np.ones(c), np.zeros(c))
    y64, cache64 = bn_lib.batch_norm_forward(x.astype(np.float64), np.ones(c), np.zeros(c))
    assert np.max(np.abs(cache.var / cache64.var - 1)) < 1e-6
    assert np.max(np.abs(y - y64)) < 1e-5
    # dgamma = sum(dy * x_hat): judged against the sum of its terms' sizes
    dy = rng.standard_normal(shape, dtype=np.float32)
    _, dgamma, dbeta = bn_lib.batch_norm_backward(dy, cache)
    _, dgamma64, dbeta64 = bn_lib.batch_norm_backward(dy.astype(np.float64), cache64)
    axes = (0,) + tuple(range(2, x.ndim))
    size = np.abs(dy * cache64.x_hat).sum(axis=axes)
    assert np.max(np.abs(dgamma - dgamma64) / size) < 1e-9
    assert np.max(np.abs(dbeta - dbeta64) / np.abs(dy).sum(axis=axes)) < 1e-9


@pytest.mark.parametrize("shape", [(65536, 4), (2**20, 2), (16, 2, 64, 80), (65536, 3, 5)],
                         ids=str)
def test_float32_statistics_do_not_degrade_with_batch_size(shape):
    """Mean 1000, std 1 in float32, m = 65536 and more values per channel: the batch mean
    and variance (the cache's float64 vectors) within 1e-4 standard deviations and 1e-3
    of the variance of float64 ones.

    A float32 accumulator over the whole batch (np.cumsum's running sum, strictly one
    value after another) misses by more than 1e-3 standard deviations here, so the
    bound can fail.
    """
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) + 1000).astype(np.float32)
    c, m = shape[1], x.size // shape[1]
    x64 = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    mean64, var64 = x64.mean(axis=axes), x64.var(axis=axes)

    y, cache = bn_lib.batch_norm_forward(x, np.ones(c), np.zeros(c))
    assert cache.mean.shape == (c,)
    assert np.max(np.abs(cache.mean - mean64) / np.sqrt(var64)) < 1e-4
    assert np.max(np.abs(cache.var - var64) / var64) < 1e-3
    reference, _ = bn_lib.batch_norm_forward(x64, np.ones(c), np.zeros(c))
    assert np.max(np.abs(y - reference)) < 2e-4

    per_channel_values = np.moveaxis(x, 1, -1).reshape(-1, c)
    running = np.cumsum(per_channel_values, axis=0, dtype=np.float32)[-1] / m
    assert np.max(np.abs(running - mean64) / np.sqrt(var64)) > 1e-3


@pytest.mark.parametrize("mean", [1e3, 1e4, 1e5])
@pytest.mark.parametrize("shape", [(256, 1024), (4099, 64), (1030, 16, 2, 2)], ids=str)
def test_float32_batch_mean_stays_within_a_unit_of_the_data(shape, mean):
    """Wide float32 input with short columns (chapter 10's mean-1e4 case): the batch mean
    stays within one unit in the last place of the data (np.spacing of the mean, 1e-3 at
    mean 1e4). A float32 accumulator down each whole column, which is what one BLAS
    product would be, misses by 3 to 40 units here, so the bound can fail."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) + mean).astype(np.float32)
    c, m = shape[1], x.size // shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    mean64 = x.astype(np.float64).mean(axis=axes)
    unit = float(np.spacing(np.float32(mean)))
    _, cache = bn_lib.batch_norm_forward(x, np.ones(c), np.zeros(c))
    assert np.max(np.abs(cache.mean - mean64)) < unit
    down_the_column = np.cumsum(x.reshape(shape[0], -1), axis=0, dtype=np.float32)[-1]
    whole = down_the_column.reshape(c, -1).sum(axis=1, dtype=np.float64) / m
    assert np.max(np.abs(whole - mean64)) > unit


@pytest.mark.parametrize("shape", [(7, 3), (300, 5), (9, 4, 3), (5, 3, 70), (2, 2, 4500),
                                   (10, 3, 4, 5), (3, 2, 100, 100)], ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_per_channel_sums_match_float64_sums(shape, dtype):
    """The statistics and dgamma, dbeta (sums over m values per channel) of every layout
    and dtype, against float64 sums of the same values."""
    rng = np.random.default_rng(4)
    x = (2 * rng.standard_normal(shape) + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    _, cache = bn_lib.batch_norm_forward(x, np.ones(c), np.zeros(c))
    np.testing.assert_allclose(cache.mean, x64.mean(axis=axes), atol=tol * 3, rtol=tol)
    np.testing.assert_allclose(cache.var, x64.var(axis=axes), atol=tol * 3, rtol=tol)
    _, dgamma, dbeta = bn_lib.batch_norm_backward(dy, cache)
    x_hat = (x64 - x64.mean(axis=axes, keepdims=True)) * cache.inv_std.reshape(
        (1, c) + (1,) * (x.ndim - 2))
    m = x.size // c
    tol = max(tol, float(np.finfo(dbeta.dtype).eps))  # the sums are rounded to their dtype
    np.testing.assert_allclose(np.asarray(dbeta, np.float64) / m, dy64.sum(axis=axes) / m,
                               atol=tol * 3, rtol=tol)
    np.testing.assert_allclose(np.asarray(dgamma, np.float64) / m,
                               (dy64 * x_hat).sum(axis=axes) / m, atol=tol * 3, rtol=tol)
