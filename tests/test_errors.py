"""Bad input raises a clear exception naming the problem, never a silent wrong number."""

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
