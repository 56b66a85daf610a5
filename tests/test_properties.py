"""Property-based tests (hypothesis) of Batch Normalization's invariants."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import bn_lib

EPS = 1e-5


@st.composite
def batches(draw):
    """A float64 batch (N, C) or (N, C, H, W) whose channels are not constant."""
    ndim = draw(st.sampled_from([2, 4]))
    n = draw(st.integers(2, 9))
    c = draw(st.integers(1, 4))
    shape = (n, c) if ndim == 2 else (n, c, draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    x = draw(arrays(np.float64, shape, elements=st.floats(-100, 100, width=64)))
    # keep each channel's spread well above the rounding error of its values
    axes = (0,) + tuple(range(2, ndim))
    spread = x.max(axis=axes) - x.min(axis=axes)
    if np.any(spread < 1e-3):
        x = x + np.linspace(0, 1, x.size).reshape(shape)
    return x


def channel_axes(x):
    return (0,) + tuple(range(2, x.ndim))


@settings(max_examples=60, deadline=None)
@given(batches())
def test_output_has_zero_mean_and_variance_var_over_var_plus_eps(x):
    c = x.shape[1]
    y, _ = bn_lib.batch_norm_forward(x, np.ones(c), np.zeros(c), eps=EPS)
    axes = channel_axes(x)
    var = x.var(axis=axes)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-9)
    np.testing.assert_allclose(y.var(axis=axes), var / (var + EPS), rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(batches(), st.floats(0.01, 100), st.floats(-1000, 1000))
def test_invariant_to_positive_scale_and_shift(x, scale, shift):
    """BN(scale * x + shift) with eps * scale**2 equals BN(x) with eps: the output ignores
    the input's scale and shift up to eps (bn_lib, like PyTorch, refuses eps = 0)."""
    c = x.shape[1]
    gamma = np.linspace(0.5, 2, c)
    beta = np.linspace(-1, 1, c)
    y, _ = bn_lib.batch_norm_forward(x, gamma, beta, eps=EPS)
    y2, _ = bn_lib.batch_norm_forward(scale * x + shift, gamma, beta, eps=EPS * scale**2)
    np.testing.assert_allclose(y2, y, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(batches(), st.integers(0, 2**32 - 1))
def test_gradient_sums_to_zero_per_channel(x, seed):
    """sum(dx) = 0 and sum(dx * x_hat) = gamma * inv_std * dgamma * eps / (var + eps)
    (chapter 03's two identities; the second is 0 at eps = 0)."""
    c = x.shape[1]
    gamma = np.linspace(0.5, 2, c)
    dy = np.random.default_rng(seed).standard_normal(x.shape)
    y, cache = bn_lib.batch_norm_forward(x, gamma, np.zeros(c), eps=EPS)
    dx, dgamma, _ = bn_lib.batch_norm_backward(dy, cache)
    axes = channel_axes(x)
    scale = np.abs(dy).sum(axis=axes) * cache.inv_std * 2
    assert np.all(np.abs(dx.sum(axis=axes)) <= 1e-9 * scale)
    along_x_hat = gamma * cache.inv_std * dgamma * EPS / (cache.var + EPS)
    assert np.all(np.abs((dx * cache.x_hat).sum(axis=axes) - along_x_hat) <= 1e-8 * scale)


@settings(max_examples=40, deadline=None)
@given(batches())
def test_identity_recovered_by_gamma_sqrt_var_and_beta_mu(x):
    """gamma = sqrt(var + eps), beta = mu undoes the normalization (chapter 02)."""
    axes = channel_axes(x)
    mu, var = x.mean(axis=axes), x.var(axis=axes)
    y, _ = bn_lib.batch_norm_forward(x, np.sqrt(var + EPS), mu, eps=EPS)
    np.testing.assert_allclose(y, x, atol=1e-9 * max(1.0, np.abs(x).max()))
