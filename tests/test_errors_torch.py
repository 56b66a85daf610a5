"""bn_lib refuses what PyTorch refuses, with an error that names the argument; where
PyTorch returns something for input bn_lib refuses (an empty batch), both are shown.

Cases from PyTorch's ``common_modules.py`` (``module_error_inputs_torch_nn_*``),
``common_methods_invocations.py`` (``sample_inputs_batch_norm``) and ``test/test_nn.py``
(``TestNNDeviceType``), named at each.
"""

import numpy as np
import pytest

import bn_lib
from bn_lib.testing import to_torch, torch_batch_norm

torch = pytest.importorskip("torch")
F = torch.nn.functional


# common_modules.py, module_error_inputs_torch_nn_BatchNorm1d_2d_3d: eps -1.0 and 0.0
@pytest.mark.parametrize("eps", [-1.0, 0.0])
@pytest.mark.parametrize("shape", [(2, 10), (2, 10, 5, 5), (2, 10, 4, 4, 4)])
def test_module_error_inputs_batchnorm(shape, eps):
    with pytest.raises(ValueError, match="eps must be positive"):
        torch_batch_norm(len(shape), 10, eps=eps)(torch.zeros(shape, dtype=torch.float64))
    # bn_lib refuses a negative eps when the layer is built, eps = 0 at the training forward
    with pytest.raises(ValueError, match="eps must be (positive|non-negative)"):
        bn_lib.BatchNorm(10, eps=eps).forward(np.zeros(shape))


@pytest.mark.parametrize("eps", [0.0, -1.0])
def test_functional_eps_must_be_positive_in_training(eps):
    x = np.ones((4, 3))
    x[:, 1] = np.arange(4)  # channels 0 and 2 are constant: 0/0 with eps = 0
    message = "eps must be positive during training"
    with pytest.raises(ValueError, match=message):
        F.batch_norm(torch.from_numpy(x), None, None, training=True, eps=eps)
    with pytest.raises(ValueError, match=message):
        bn_lib.batch_norm_forward(x, np.ones(3), np.zeros(3), eps=eps)


# common_methods_invocations.py, sample_inputs_batch_norm, shape (0,): a 1-D empty input.
# PyTorch returns an empty tensor; bn_lib asks for (N, C, ...).
@pytest.mark.parametrize("training", [True, False])
def test_sample_inputs_functional_batch_norm_empty_1d(training):
    assert F.batch_norm(torch.zeros(0), torch.zeros(0), torch.ones(0),
                        training=training).shape == (0,)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        if training:
            bn_lib.batch_norm_forward(np.zeros(0), np.ones(0), np.zeros(0))
        else:
            bn_lib.batch_norm_inference(np.zeros(0), np.zeros(0), np.ones(0), np.ones(0),
                                        np.zeros(0))


# test_nn.py, test_batchnorm_raises_error_if_less_than_one_value_per_channel
def test_batchnorm_raises_error_if_less_than_one_value_per_channel():
    x = np.random.default_rng(4).random(10)[None, :, None]
    with pytest.raises(ValueError):
        torch_batch_norm(3, 10)(torch.from_numpy(x))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn_lib.BatchNorm(10).forward(x)


# test_nn.py, test_batchnorm_raises_error_if_{running_mean, running_var, weight,
# bias}_is_not_same_size_as_input (sizes 9 and 11 for 10 channels), and lengths 1 and 2
# for 3 channels: a length-1 vector used to broadcast over every channel, silently
@pytest.mark.parametrize("channels,size", [(10, 9), (10, 11), (3, 1), (3, 2)])
@pytest.mark.parametrize("name", ["running_mean", "running_var", "gamma", "beta"])
def test_eval_mode_refuses_a_vector_of_the_wrong_length(name, channels, size):
    rng = np.random.default_rng(5)
    args = {"running_mean": rng.random(channels), "running_var": rng.random(channels),
            "gamma": rng.random(channels), "beta": rng.random(channels)}
    args[name] = rng.random(size)
    x = rng.random((4, channels))
    torch_names = {"gamma": "weight", "beta": "bias"}
    with pytest.raises(RuntimeError):
        F.batch_norm(to_torch(x), training=False,
                     **{torch_names.get(k, k): to_torch(v) for k, v in args.items()})
    with pytest.raises(ValueError, match=rf"{name} must have shape \({channels},\)"):
        bn_lib.batch_norm_inference(x, **args)
    layer = bn_lib.BatchNorm(channels).eval()
    setattr(layer, name, args[name])
    with pytest.raises(ValueError, match=rf"{name} must have shape \({channels},\)"):
        layer.forward(x)


# common_modules.py, module_error_inputs_torch_nn_GroupNorm
@pytest.mark.parametrize("groups,channels", [(3, 10), (5, 13)])
def test_module_error_inputs_groupnorm(groups, channels):
    match = rf"num_channels \({channels}\) must be divisible by num_groups \({groups}\)"
    with pytest.raises(ValueError, match=match):
        torch.nn.GroupNorm(groups, channels)
    with pytest.raises(ValueError, match=match):
        bn_lib.GroupNorm(groups, channels)


# test_nn.py, test_GroupNorm_raises_error_if_one_value_per_group
def test_groupnorm_raises_error_if_one_value_per_group():
    x = np.random.default_rng(11).random(10)[None, :, None]
    with pytest.raises(ValueError):
        torch.nn.GroupNorm(10, 10)(torch.from_numpy(x))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn_lib.GroupNorm(10, 10).forward(x)


# common_modules.py, module_inputs_torch_nn_LayerNorm, desc "1d_empty_elementwise_affine":
# PyTorch returns an empty output for (0, 5); bn_lib refuses the empty batch.
def test_module_inputs_layernorm_empty():
    assert torch.nn.LayerNorm([5], 1e-3)(torch.zeros(0, 5)).shape == (0, 5)
    with pytest.raises(ValueError, match="empty batch"):
        bn_lib.LayerNorm(5, 1e-3).forward(np.zeros((0, 5)))


# test_nn.py, _test_LayerNorm_general's bad shapes
@pytest.mark.parametrize("norm_size,input_shape", [(2, (1, 2, 3)), (10, (2, 3))])
def test_layernorm_general_bad_shapes(norm_size, input_shape):
    with pytest.raises(RuntimeError):
        torch.nn.LayerNorm(norm_size)(torch.zeros(input_shape))
    with pytest.raises(ValueError, match=f"LayerNorm\\({norm_size}\\) got input of shape"):
        bn_lib.LayerNorm(norm_size).forward(np.zeros(input_shape))
