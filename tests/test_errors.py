"""Bad input raises a clear exception naming the problem, never a silent wrong number."""

import copy

import numpy as np
import pytest

import bn_lib


def test_fewer_than_two_dimensions():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        bn_lib.batch_norm_forward(np.ones(5), np.ones(5), np.zeros(5))


@pytest.mark.parametrize("gamma,beta,name", [(np.ones(2), np.zeros(3), "gamma"),
                                             (np.ones(3), np.zeros(4), "beta")])
def test_gamma_beta_of_wrong_length(gamma, beta, name):
    x = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match=rf"{name} must have shape \(3,\)"):
        bn_lib.batch_norm_forward(x, gamma, beta)


@pytest.mark.parametrize("mean,var,name", [(np.zeros(2), np.ones(3), "running_mean"),
                                           (np.zeros(3), np.ones(5), "running_var")])
def test_running_statistics_of_wrong_length(mean, var, name):
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=name):
        bn_lib.batch_norm_inference(x, mean, var, np.ones(3), np.zeros(3))


def test_layer_with_wrong_channel_count():
    with pytest.raises(ValueError, match="expected 4 channels"):
        bn_lib.BatchNorm(4).forward(np.ones((5, 3)))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_one_value_per_channel_in_training(shape):
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        bn_lib.BatchNorm(3).forward(np.ones(shape))


def test_one_value_per_channel_is_fine_in_eval():
    layer = bn_lib.BatchNorm(3).eval()
    assert layer.forward(np.ones((1, 3))).shape == (1, 3)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_non_floating_input_is_rejected(dtype):
    with pytest.raises(TypeError, match="floating-point"):
        bn_lib.batch_norm_forward(np.ones((4, 3), dtype=dtype), np.ones(3), np.zeros(3))


@pytest.mark.parametrize("layer", [bn_lib.BatchNorm(3), bn_lib.Linear(3, 2), bn_lib.ReLU(),
                                   bn_lib.Conv2d(3, 2, 3), bn_lib.LayerNorm(3)], ids=repr)
def test_backward_before_forward(layer):
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(np.ones((2, 3)))


def test_dy_of_the_wrong_shape():
    _, cache = bn_lib.batch_norm_forward(np.arange(12.0).reshape(4, 3), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="dy has shape"):
        bn_lib.batch_norm_backward(np.ones((4, 2)), cache)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_features": 0}, "positive integer"),
    ({"num_features": 3, "momentum": 1.5}, "momentum"),
    ({"num_features": 3, "eps": -1.0}, "eps"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bn_lib.BatchNorm(**kwargs)


@pytest.mark.parametrize("call,match", [
    (lambda: bn_lib.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 1, 4])), "labels"),
    (lambda: bn_lib.Linear(3, 2).forward(np.ones((2, 4))), "Linear expects"),
    (lambda: bn_lib.GroupNorm(3, 4), "divisible"),
    (lambda: bn_lib.SGD(bn_lib.Linear(2, 2).parameters(), lr=0.0), "learning rate"),
    (lambda: bn_lib.fold_batchnorm(bn_lib.Linear(2, 2), bn_lib.BatchNorm(
        2, track_running_stats=False)), "track_running_stats"),
], ids=["labels", "linear", "groupnorm", "sgd", "fold"])
def test_bad_arguments_elsewhere(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_groupnorm_with_one_value_per_group():
    # torch.nn.GroupNorm returns beta here; bn_lib refuses to normalize a single value
    with pytest.raises(ValueError, match="more than 1 value"):
        bn_lib.GroupNorm(4, 4).forward(np.ones((2, 4)))


def test_channels_last_sequence_input_is_named():
    # (N, L, C) = (8, 5, 3) given to BatchNorm(3), which wants (N, C, L) (chapter 09)
    with pytest.raises(ValueError, match=r"channels seem to be on the last axis.*transpose"):
        bn_lib.BatchNorm(3).forward(np.ones((8, 5, 3)))


def test_dy_of_the_wrong_shape_for_layernorm_and_groupnorm():
    """The same size in another shape used to be reshaped silently: a wrong gradient."""
    cases = [(bn_lib.LayerNorm(6), (4, 6), (6, 4)), (bn_lib.LayerNorm(6), (4, 6), (24,)),
             (bn_lib.GroupNorm(2, 4), (3, 4, 2), (3, 2, 4))]
    for layer, shape, wrong in cases:
        layer.forward(np.random.default_rng(5).standard_normal(shape))
        with pytest.raises(ValueError, match="dy has shape"):
            layer.backward(np.ones(wrong))


def test_mlp_refuses_groups_of_one_feature():
    with pytest.raises(ValueError, match="groups of at least 2"):
        bn_lib.mlp([8, 4, 3], norm="group")


@pytest.mark.parametrize("shape,groups", [((1, 2, 3, 4), 3), ((2, 3, 10), 2),
                                          ((3, 1, 1, 1, 2), 10), ((2, 6, 4, 2, 2), 4)])
def test_groupnorm_bad_group_counts(shape, groups):
    # test_nn.py, _test_GroupNorm_general's bad shapes
    with pytest.raises(ValueError, match="must be divisible by num_groups"):
        bn_lib.GroupNorm(groups, shape[1])


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
def test_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- a call that raises leaves the layer's state unchanged ----------------------------------

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


def test_layer_with_eps_zero_refuses_training_and_keeps_its_state():
    layer = trained_layer()
    layer.eps = 0.0  # as a chapter might set it after construction
    before = snapshot(layer)
    with pytest.raises(ValueError, match="eps must be positive during training"):
        layer.forward(np.ones((4, 3)))
    assert_unchanged(layer, before)
    # eval mode divides by sqrt(running_var + 0), which PyTorch accepts too
    assert np.isfinite(layer.eval().forward(np.ones((4, 3)))).all()


@pytest.mark.parametrize("name,length", [("running_mean", 2), ("running_var", 2),
                                         ("gamma", 4)])
def test_vector_of_the_wrong_length_in_training_leaves_state_unchanged(name, length):
    layer = trained_layer()
    setattr(layer, name, np.ones(length))
    before = snapshot(layer)
    with pytest.raises(ValueError, match=rf"{name} must have shape \(3,\)"):
        layer.forward(np.random.default_rng(2).standard_normal((5, 3)))
    assert_unchanged(layer, before)


@pytest.mark.parametrize("shape", [(0, 5, 9), (0, 5, 2, 2), (0, 5, 2, 2, 2)])
def test_zero_batch_is_refused_in_training_and_passes_in_eval(shape):
    # PyTorch returns an empty output in training too (common_modules.py, "zero_batch")
    layer = bn_lib.BatchNorm(5, 1e-3, 0.3, False)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        layer.forward(np.zeros(shape))
    assert layer.num_batches_tracked == 0 and layer.cache is None
    assert layer.eval().forward(np.zeros(shape)).shape == shape
