"""The defects an adversarial audit of bn_lib found (issue 16), one test each.

Each was a silent wrong number or an unclear error; each test fails on the audited code
and checks that bn_lib now matches PyTorch or raises an exception naming the argument and
the problem, leaving the layer's state unchanged. Only bn_lib's public names and torch are
used, so the file also runs against older versions of bn_lib.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bn_lib


def snapshot(layer):
    """Everything a forward pass may change, for 'the state is unchanged' checks."""
    return (copy.deepcopy(layer.running_mean), copy.deepcopy(layer.running_var),
            layer.num_batches_tracked, layer.cache)


def assert_unchanged(layer, before):
    mean, var, tracked, cache = before
    np.testing.assert_array_equal(layer.running_mean, mean)
    np.testing.assert_array_equal(layer.running_var, var)
    assert layer.num_batches_tracked == tracked
    assert layer.cache is cache


def trained_layer(c=3):
    layer = bn_lib.BatchNorm(c)
    layer.forward(np.random.default_rng(0).standard_normal((6, c)))
    return layer


# --- eps = 0 ------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, -1.0])
def test_eps_must_be_positive_in_training(eps):
    x = np.ones((4, 3))
    x[:, 1] = np.arange(4)  # channels 0 and 2 are constant: 0/0 with eps = 0
    message = "eps must be positive during training"
    with pytest.raises(ValueError, match=message):
        F.batch_norm(torch.from_numpy(x), None, None, training=True, eps=eps)
    with pytest.raises(ValueError, match=message):
        bn_lib.batch_norm_forward(x, np.ones(3), np.zeros(3), eps=eps)


def test_layer_with_eps_zero_refuses_training_and_keeps_its_state():
    layer = trained_layer()
    layer.eps = 0.0  # as a chapter might set it after construction
    before = snapshot(layer)
    with pytest.raises(ValueError, match="eps must be positive during training"):
        layer.forward(np.ones((4, 3)))
    assert_unchanged(layer, before)
    # eval mode divides by sqrt(running_var + 0), which PyTorch accepts too
    y = layer.eval().forward(np.ones((4, 3)))
    assert np.isfinite(y).all()


# --- eval-mode vector lengths -----------------------------------------------------------

@pytest.mark.parametrize("length", [1, 2])
@pytest.mark.parametrize("name", ["gamma", "beta", "running_mean", "running_var"])
def test_eval_mode_checks_vector_lengths(name, length):
    """A length-1 vector used to broadcast over every channel: a wrong output, no error."""
    x = np.random.default_rng(1).standard_normal((4, 3))
    torch_args = {"running_mean": torch.zeros(3), "running_var": torch.ones(3),
                  "weight": torch.ones(3), "bias": torch.zeros(3)}
    torch_args[{"gamma": "weight", "beta": "bias"}.get(name, name)] = torch.ones(length)
    with pytest.raises(RuntimeError):
        F.batch_norm(torch.from_numpy(x).float(), training=False, **torch_args)
    layer = trained_layer().eval()
    setattr(layer, name, np.ones(length))
    with pytest.raises(ValueError, match=rf"{name} must have shape \(3,\)"):
        layer.forward(x)


# --- wrong-length running statistic in training -----------------------------------------

@pytest.mark.parametrize("name", ["running_mean", "running_var"])
def test_wrong_length_running_stat_in_training_leaves_state_unchanged(name):
    layer = trained_layer()
    setattr(layer, name, np.ones(2))
    before = snapshot(layer)
    with pytest.raises(ValueError, match=rf"{name} must have shape \(3,\)"):
        layer.forward(np.random.default_rng(2).standard_normal((5, 3)))
    assert_unchanged(layer, before)


def test_wrong_length_gamma_in_training_leaves_state_unchanged():
    layer = trained_layer()
    layer.gamma = np.ones(4)
    before = snapshot(layer)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        layer.forward(np.random.default_rng(2).standard_normal((5, 3)))
    assert_unchanged(layer, before)


# --- float16 ------------------------------------------------------------------------------

@pytest.mark.parametrize("running_var", [1e-4, 1e-2])
def test_float16_inference_matches_torch(running_var):
    """Computed in float16, (x - 1000) * gamma / sqrt(1e-4) overflowed to NaN."""
    rng = np.random.default_rng(3)
    x = (1000 + rng.standard_normal((16, 3))).astype(np.float16)
    mean, var = np.full(3, 1000.0), np.full(3, running_var)
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    ref = F.batch_norm(torch.from_numpy(x), *(torch.tensor(a, dtype=torch.float32)
                                              for a in (mean, var, gamma, beta)),
                       training=False).numpy()
    y = bn_lib.batch_norm_inference(x, mean, var, gamma, beta)
    y = y[0] if isinstance(y, tuple) else y  # the audited version returned y alone
    assert y.dtype == np.float16 and np.isfinite(y).all()
    assert np.abs(y.astype(np.float64) - ref).max() <= 0.006 * max(1.0, np.abs(ref).max())


def test_float16_backward_returns_float16_like_torch():
    rng = np.random.default_rng(4)
    x = (3 * rng.standard_normal((32, 4)) + 2).astype(np.float16)
    dy = rng.standard_normal((32, 4)).astype(np.float16)
    xt = torch.from_numpy(x).requires_grad_()
    yt = F.batch_norm(xt, None, None, training=True)
    (dxt,) = torch.autograd.grad(yt, xt, torch.from_numpy(dy))
    _, cache = bn_lib.batch_norm_forward(x, np.ones(4), np.zeros(4))
    dx, _, _ = bn_lib.batch_norm_backward(dy, cache)
    assert dx.dtype == dxt.numpy().dtype == np.float16
    np.testing.assert_allclose(dx.astype(np.float64), dxt.numpy().astype(np.float64),
                               atol=5e-3 * max(1.0, np.abs(dxt.numpy()).max()))


# --- LayerNorm / GroupNorm ----------------------------------------------------------------

@pytest.mark.parametrize("layer,shape,wrong", [
    (bn_lib.LayerNorm(6), (4, 6), (6, 4)),
    (bn_lib.LayerNorm(6), (4, 6), (24,)),
    (bn_lib.GroupNorm(2, 4), (3, 4, 2), (3, 2, 4)),
], ids=["layernorm-transposed", "layernorm-flat", "groupnorm-transposed"])
def test_norm_backward_refuses_dy_of_the_wrong_shape(layer, shape, wrong):
    """The same size in another shape used to be reshaped silently: a wrong gradient."""
    layer.forward(np.random.default_rng(5).standard_normal(shape))
    with pytest.raises(ValueError, match="dy has shape"):
        layer.backward(np.ones(wrong))


def test_groupnorm_with_one_value_per_group_raises():
    """One value per group normalizes to 0 whatever it is: all-zero outputs, silently."""
    x = np.random.default_rng(6).standard_normal((5, 4))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn_lib.GroupNorm(4, 4).forward(x)
    with pytest.raises(ValueError, match="groups of at least 2"):
        bn_lib.mlp([8, 4, 3], norm="group")


# --- ReLU(NaN) ------------------------------------------------------------------------------

def test_relu_propagates_nan_like_torch():
    x = np.array([[np.nan, -1.0, 0.0, 2.0, np.inf, -np.inf]])
    expected = torch.relu(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(bn_lib.ReLU().forward(x), expected)
    assert np.isnan(bn_lib.ReLU().forward(x.astype(np.float32))[0, 0])


# --- optimizer settings ---------------------------------------------------------------------

@pytest.mark.parametrize("ours,theirs,kwargs,match", [
    (bn_lib.Adam, torch.optim.Adam, {"betas": (1.0, 0.0)}, "Invalid beta parameter at index 0"),
    (bn_lib.Adam, torch.optim.Adam, {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1"),
    (bn_lib.Adam, torch.optim.Adam, {"eps": -1e-8}, "Invalid epsilon value"),
    (bn_lib.RMSProp, torch.optim.RMSprop, {"eps": -1e-8}, "Invalid epsilon value"),
    (bn_lib.RMSProp, torch.optim.RMSprop, {"alpha": -0.5}, "Invalid alpha value"),
    (bn_lib.SGD, torch.optim.SGD, {"momentum": -0.5}, "Invalid momentum value: -0.5"),
    (bn_lib.SGD, torch.optim.SGD, {"weight_decay": -1.0}, "Invalid weight_decay value"),
    (bn_lib.SGD, torch.optim.SGD, {"lr": -0.1}, "Invalid learning rate"),
], ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_optimizer_settings_are_range_checked_like_torch(ours, theirs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        theirs([torch.nn.Parameter(torch.ones(2))], **kwargs)
    with pytest.raises(ValueError, match=match):
        ours(bn_lib.Linear(2, 2).parameters(), **kwargs)


def test_rmsprop_alpha_above_one_is_refused():
    """alpha = 1.5 makes the average of squares negative and every parameter NaN at the
    first step; torch.optim.RMSprop checks only alpha >= 0, bn_lib also alpha <= 1."""
    with pytest.raises(ValueError, match="Invalid alpha value: 1.5"):
        bn_lib.RMSProp(bn_lib.Linear(2, 2).parameters(), alpha=1.5)


# --- unclear errors ---------------------------------------------------------------------------

def _complex_backward():
    _, cache = bn_lib.batch_norm_forward(np.arange(12.0).reshape(4, 3), np.ones(3), np.zeros(3))
    bn_lib.batch_norm_backward(np.ones((4, 3)) * (1 + 1j), cache)


@pytest.mark.parametrize("call,error,match", [
    (lambda: bn_lib.batch_norm_forward(np.ones((4, 0)), np.ones(0), np.zeros(0)),
     ValueError, "no channels"),
    (lambda: bn_lib.batch_norm_backward(np.ones((4, 3)), None),
     TypeError, "cache must be the BatchNormCache"),
    (lambda: bn_lib.BatchNorm(3, dtype=np.int64), TypeError, "dtype must be a floating"),
    (lambda: bn_lib.SGD(bn_lib.Linear(2, 2)), TypeError, r"model\.parameters\(\)"),
    (lambda: bn_lib.batch_norm_forward(np.ones((4, 3)), np.ones(3) * (1 + 1j), np.zeros(3)),
     TypeError, "gamma must be a real-valued array"),
    (lambda: bn_lib.batch_norm_inference(np.ones((4, 3)), np.zeros(3) + 0j, np.ones(3),
                                         np.ones(3), np.zeros(3)),
     TypeError, "running_mean must be a real-valued array"),
    (_complex_backward, TypeError, "dy must be a real-valued array"),
], ids=["zero-channels", "missing-cache", "int64-layer", "sgd-of-model", "complex-gamma",
        "complex-running-mean", "complex-dy"])
def test_unclear_errors_are_now_clear(call, error, match):
    with pytest.raises(error, match=match):
        call()
