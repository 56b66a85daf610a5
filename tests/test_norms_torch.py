"""LayerNorm, GroupNorm and InstanceNorm (GroupNorm with one channel per group) against
PyTorch: y, dx, dgamma and dbeta, and the statistics of their outputs.

Cases from PyTorch's ``common_modules.py`` (``module_inputs_torch_nn_GroupNorm``,
``module_inputs_torch_nn_LayerNorm``, the one-axis normalized shapes) and ``test/test_nn.py``
(``_test_LayerNorm_general``, ``_test_GroupNorm_general``, ``_test_InstanceNorm_general``).
Left out: LayerNorm over several trailing axes (bn_lib's LayerNorm normalizes the last
axis only) and the functional ``group_norm``/``layer_norm`` OpInfos (bn_lib has the
layers only).
"""

import numpy as np
import pytest

import bn_lib
from bn_lib.testing import assert_close, to_torch, torch_twin

torch = pytest.importorskip("torch")


def uniform(rng, shape, low=-9.0):
    """Like torch.testing.make_tensor for float64: uniform in [low, 9)."""
    return rng.uniform(low, 9.0, shape)


def assert_matches(ours, theirs, x, dy, params=("gamma", "beta")):
    """y and dx of ``ours`` against the torch module ``theirs``, and the gradients of the
    parameters named in ``params`` (gamma is theirs.weight, beta theirs.bias)."""
    xt = to_torch(x, requires_grad=True)
    yt = theirs(xt)
    torch_params = [getattr(theirs, {"gamma": "weight", "beta": "bias"}[p]) for p in params]
    grads = torch.autograd.grad(yt, [xt, *torch_params], to_torch(dy))
    assert_close(ours.forward(x), yt, "float64", what="y")
    assert_close(ours.backward(dy), grads[0], "float64", what="dx")
    for name, grad in zip(params, grads[1:]):
        assert_close(getattr(ours, "d" + name), grad, "float64", "reduction", "d" + name)


@pytest.mark.parametrize("ours,shape", [
    (bn_lib.LayerNorm(6), (4, 6)),
    (bn_lib.LayerNorm(6), (2, 5, 6)),
    (bn_lib.GroupNorm(2, 4), (3, 4, 5, 2)),
    (bn_lib.GroupNorm(4, 4), (3, 4, 5, 2)),
], ids=lambda v: repr(v) if isinstance(v, bn_lib.Module) else str(v))
def test_layernorm_and_groupnorm_match_torch(ours, shape, rng):
    ours.gamma[...] = rng.uniform(0.5, 2, ours.gamma.shape)
    ours.beta[...] = rng.standard_normal(ours.beta.shape)
    x, dy = 3 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
    assert_matches(ours, torch_twin(ours), x, dy)


# common_modules.py, module_inputs_torch_nn_GroupNorm: (desc, num_groups, num_channels,
# eps, affine, bias, input shape). bn_lib's GroupNorm is always affine; PyTorch's
# affine=False is gamma = 1, beta = 0, and bias=False is beta = 0.
GROUPNORM_MODULE_INPUTS = [
    ("1d_affine", 3, 6, 1e-3, True, True, (4, 6, 5)),
    ("1d_affine_not_bias", 3, 6, 1e-3, True, False, (4, 6, 5)),
    ("1d_affine_GN", 3, 12, 1e-3, True, True, (4, 12)),
    ("1d_affine_large_batch", 1, 6, 1e-3, True, True, (150, 6)),
    ("1d_no_affine_IN", 5, 5, 1e-3, False, True, (4, 5, 5)),
    ("1d_no_affine_LN", 1, 10, 1e-3, False, True, (4, 10)),
    ("2d_affine", 3, 6, 1e-3, True, True, (4, 6, 2, 3)),
    ("2d_affine_not_bias", 3, 9, 1e-3, True, False, (4, 9, 2, 3)),
    ("2d_no_affine_IN", 3, 3, 1e-3, False, True, (4, 3, 2, 3)),
    ("2d_no_affine_LN", 1, 3, 1e-3, False, True, (4, 3, 2, 3)),
]


@pytest.mark.parametrize("desc,groups,channels,eps,affine,bias,shape", GROUPNORM_MODULE_INPUTS,
                         ids=[case[0] for case in GROUPNORM_MODULE_INPUTS])
def test_module_inputs_groupnorm(desc, groups, channels, eps, affine, bias, shape):
    rng = np.random.default_rng(2)
    x, dy = uniform(rng, shape), uniform(rng, shape)
    theirs = torch.nn.GroupNorm(groups, channels, eps, affine=affine,
                                bias=bias if affine else True).double()
    ours = bn_lib.GroupNorm(groups, channels, eps)
    if affine:
        ours.gamma[...] = uniform(rng, channels)
        ours.beta[...] = uniform(rng, channels) if bias else 0.0
        with torch.no_grad():
            theirs.weight.copy_(to_torch(ours.gamma))
            if bias:
                theirs.bias.copy_(to_torch(ours.beta))
    params = ("gamma", "beta") if affine and bias else ("gamma",) if affine else ()
    assert_matches(ours, theirs, x, dy, params)


# common_modules.py, module_inputs_torch_nn_LayerNorm, the cases with a one-axis
# normalized_shape [5]: (desc, elementwise_affine, input shape)
LAYERNORM_MODULE_INPUTS = [
    ("1d_elementwise_affine", True, (4, 5, 5)),
    ("1d_elementwise_affine_large_batch", True, (128, 5, 5)),
    ("1d_no_elementwise_affine", False, (4, 5, 5)),
]


@pytest.mark.parametrize("desc,affine,shape", LAYERNORM_MODULE_INPUTS,
                         ids=[case[0] for case in LAYERNORM_MODULE_INPUTS])
def test_module_inputs_layernorm(desc, affine, shape):
    rng = np.random.default_rng(3)
    x, dy = uniform(rng, shape), uniform(rng, shape)
    ours = bn_lib.LayerNorm(5, 1e-3)
    if affine:
        ours.gamma[...], ours.beta[...] = uniform(rng, 5), uniform(rng, 5)
        theirs = torch_twin(ours)
    else:
        theirs = torch.nn.LayerNorm([5], 1e-3, elementwise_affine=False).double()
    assert_matches(ours, theirs, x, dy, ("gamma", "beta") if affine else ())


# test_nn.py, _test_LayerNorm_general, one-axis normalized shapes: LayerNorm gives mean 0
# and variance 1 per row (to 1e-5), then applies weight and bias. PyTorch's test uses
# eps = 0, which bn_lib refuses (as BatchNorm in training does); eps = 1e-5 moves the
# variance by var / (var + eps) - 1, about 1e-6 here.
@pytest.mark.parametrize("ndim", [2, 3, 4, 5])
def test_layernorm_general(ndim):
    rng = np.random.default_rng(9 + ndim)
    shape = tuple(rng.integers(3, 6, ndim))
    x = rng.uniform(0, 10, shape)
    with pytest.raises(ValueError, match="LayerNorm eps must be positive"):
        bn_lib.LayerNorm(shape[-1], eps=0.0)
    ours = bn_lib.LayerNorm(shape[-1], eps=1e-5)
    y = ours.forward(x)
    assert_close(y, torch_twin(ours)(to_torch(x)), "float64", what="y")
    assert np.abs(y.mean(axis=-1)).mean() < 1e-5
    assert abs(y.var(axis=-1).mean() - 1) < 1e-5
    scale, bias = rng.uniform(0.2, 2, 2)
    ours.gamma[...], ours.beta[...] = scale, bias
    y = ours.forward(x)
    assert abs(y.mean(axis=-1).mean() - bias) < 1e-5
    assert abs(y.var(axis=-1).mean() - scale**2) < 1e-5


# test_nn.py, _test_GroupNorm_general: good shapes normalize each group to mean 0,
# variance 1 (to 1e-3; eps = 1e-5 where PyTorch's test uses 0, which bn_lib refuses),
# then apply per-channel weight and bias
@pytest.mark.parametrize("shape,groups", [((1, 2, 3, 4), 2), ((2, 3, 10), 3),
                                          ((3, 1, 1, 1, 2), 1), ((2, 6, 4, 2, 2), 3),
                                          ((1, 256, 1, 1), 32)])
def test_groupnorm_general(shape, groups):
    rng = np.random.default_rng(10)
    x, dy = rng.uniform(0, 10, shape), rng.standard_normal(shape)
    b, c = shape[:2]
    with pytest.raises(ValueError, match="GroupNorm eps must be positive"):
        bn_lib.GroupNorm(groups, c, eps=0.0)
    ours = bn_lib.GroupNorm(groups, c, eps=1e-5)
    ours.gamma[...] = rng.uniform(0.2, 2, c)
    ours.beta[...] = rng.uniform(0.2, 2, c)
    assert_matches(ours, torch_twin(ours), x, dy, params=())
    bshape = (1, c) + (1,) * (len(shape) - 2)
    normed = ((ours.forward(x) - ours.beta.reshape(bshape)) / ours.gamma.reshape(bshape))
    normed = normed.reshape(b, groups, -1)
    assert np.abs(normed.mean(axis=-1)).mean() < 1e-3
    assert abs(normed.var(axis=-1).mean() - 1) < 1e-3


# test_nn.py, _test_InstanceNorm_general (track_running_stats=False): each (example,
# channel) normalized to mean 0 and variance 1 (to 1e-5; eps = 1e-5 where PyTorch's test
# uses 0), and eval mode the same as training.
@pytest.mark.parametrize("shape", [(3, 4, 9), (3, 4, 3, 3), (3, 4, 2, 2, 2)])
def test_instancenorm_general(shape):
    rng = np.random.default_rng(12)
    x, dy = rng.uniform(-9, 9, shape), rng.standard_normal(shape)
    b, c = shape[:2]
    instance_norm = {3: torch.nn.InstanceNorm1d, 4: torch.nn.InstanceNorm2d,
                     5: torch.nn.InstanceNorm3d}[len(shape)]
    ours = bn_lib.GroupNorm(c, c, eps=1e-5)
    assert_matches(ours, instance_norm(c, eps=1e-5).double(), x, dy, params=())
    y = ours.forward(x)
    rows = y.reshape(b * c, -1)
    assert np.abs(rows.mean(axis=1)).mean() < 1e-5 and abs(rows.var(axis=1).mean() - 1) < 1e-5
    np.testing.assert_array_equal(ours.eval().forward(x), y)
