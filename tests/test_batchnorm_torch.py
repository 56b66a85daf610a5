"""Batch Normalization's forward and backward passes against PyTorch, the independent oracle.

Every check of ``bn_lib.verification.check_case`` (training forward and backward against
autograd, running statistics over several steps, eval mode) for 2-D, 3-D and 4-D input in
float64 and float32 on every available device, each check its own test; then the
functional API, the layer with PyTorch's switches, float16, NaN, and PyTorch's own test
cases for ``nn.BatchNorm1d/2d/3d`` and ``F.batch_norm``.

PyTorch's cases come from its repository (shipped in the installed wheel):
``torch/testing/_internal/common_modules.py`` (``module_inputs_torch_nn_BatchNorm1d/2d/3d``)
and ``common_methods_invocations.py`` (``sample_inputs_batch_norm``, the
``nn.functional.batch_norm`` OpInfo). Each keeps its shapes and settings; the inputs are
drawn like ``make_tensor`` draws them (uniform in [-9, 9]) from a seeded generator, in
float64. Left out: ``affine_not_bias`` (bn_lib's BatchNorm has no bias=False) and the
cuda_half, cudnn, channels_last and large-tensor cases of ``test/test_nn.py``.
"""

import numpy as np
import pytest

import bn_lib
from bn_lib.testing import assert_close, to_numpy, to_torch, torch_batch_norm, torch_twin
from bn_lib.verification import check_case

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPES = [(2, 5), (32, 7), (16, 5, 9), (8, 4, 6, 5)]
CHECKS = ["train forward y", "train backward dx", "train backward dgamma",
          "train backward dbeta", "running_mean (momentum 0.1)", "running_var (momentum 0.1)",
          "num_batches_tracked (momentum 0.1)", "running_mean (cumulative)",
          "running_var (cumulative)", "num_batches_tracked (cumulative)", "eval forward y",
          "eval backward dx"]
_cases = {}


def case_rows(shape, dtype, device):
    """check_case once per (shape, dtype, device); each check then asserts its own row."""
    key = (shape, dtype, device)
    if key not in _cases:
        _cases[key] = {row["check"]: row for row in check_case(shape, dtype, device)}
    return _cases[key]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batchnorm_check(shape, dtype, check, device):
    row = case_rows(shape, dtype, device)[check]
    assert row["passed"], row


def uniform(rng, shape, low=-9.0):
    """Like torch.testing.make_tensor for float64: uniform in [low, 9)."""
    return rng.uniform(low, 9.0, shape)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES[1:], ids=str)
def test_functional_api_matches_torch_functional(shape, mode, device, rng):
    c = shape[1]
    x = 3 * rng.standard_normal(shape) - 2
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    dy = rng.standard_normal(shape)
    xt, gt, bt = (to_torch(a, device, requires_grad=True) for a in (x, gamma, beta))
    if mode == "train":
        y, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps=1e-3)
        yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-3)
    else:
        y, cache = bn_lib.batch_norm_inference(x, mean, var, gamma, beta, eps=1e-3)
        yt = F.batch_norm(xt, to_torch(mean, device), to_torch(var, device), gt, bt,
                          training=False, eps=1e-3)
    grads = bn_lib.batch_norm_backward(dy, cache)
    grads_t = torch.autograd.grad(yt, (xt, gt, bt), to_torch(dy, device))
    assert_close(y, yt, "float64", what=f"{mode} y")
    for name, ours, theirs in zip(("dx", "dgamma", "dbeta"), grads, grads_t):
        assert_close(ours, theirs, "float64", what=f"{mode} {name}")


def train_then_eval(ours, theirs, x, dy):
    """One training step and one eval step of a bn_lib layer and its torch twin: y, dx,
    dgamma, dbeta and the running statistics after each."""
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        xt = to_torch(x, requires_grad=True)
        yt = theirs(xt)
        params = [xt] + ([theirs.weight, theirs.bias] if ours.affine else [])
        grads = torch.autograd.grad(yt, params, to_torch(dy))
        assert_close(ours.forward(x), yt, "float64", what=f"{mode} y")
        assert_close(ours.backward(dy), grads[0], "float64", what=f"{mode} dx")
        if ours.affine and mode == "train":
            assert_close(ours.dgamma, grads[1], "float64", "reduction", "dgamma")
            assert_close(ours.dbeta, grads[2], "float64", "reduction", "dbeta")
        assert (ours.running_mean is None) == (theirs.running_mean is None)
        if ours.track_running_stats:
            assert_close(ours.running_mean, theirs.running_mean, "float64", "reduction",
                         f"{mode} running_mean")
            assert_close(ours.running_var, theirs.running_var, "float64", "reduction",
                         f"{mode} running_var")
            assert ours.num_batches_tracked == int(theirs.num_batches_tracked)


# common_modules.py, module_inputs_torch_nn_BatchNorm1d / 2d / 3d: (desc, constructor
# args as (num_features, eps, momentum, affine, track_running_stats), input shape)
BATCHNORM_MODULE_INPUTS = [
    ("BatchNorm1d affine", (10,), (4, 10)),
    ("BatchNorm1d 3d_input", (5,), (4, 5, 3)),
    ("BatchNorm1d affine_simple_average", (10, 1e-3, None), (4, 10)),
    ("BatchNorm1d not_affine", (10, 1e-3, 0.3, False), (4, 10)),
    ("BatchNorm1d not_tracking_stats", (10, 1e-3, 0.3, True, False), (4, 10)),
    ("BatchNorm1d 3d_input_not_affine", (5, 1e-3, 0.3, False), (4, 5, 3)),
    ("BatchNorm2d", (3,), (2, 3, 6, 6)),
    ("BatchNorm2d 2d_simple_average", (3, 1e-3, None), (2, 3, 6, 6)),
    ("BatchNorm2d momentum", (3, 1e-3, 0.8), (2, 3, 6, 6)),
    ("BatchNorm2d not_affine", (3, 1e-3, 0.8, False), (2, 3, 6, 6)),
    ("BatchNorm2d not_tracking_stats", (3, 1e-3, 0.8, True, False), (2, 3, 6, 6)),
    ("BatchNorm3d", (3,), (2, 3, 4, 4, 4)),
    ("BatchNorm3d 3d_simple_average", (3, 1e-3, None), (2, 3, 4, 4, 4)),
    ("BatchNorm3d momentum", (3, 1e-3, 0.7), (2, 3, 4, 4, 4)),
    ("BatchNorm3d not_affine", (3, 1e-3, 0.7, False), (2, 3, 4, 4, 4)),
    ("BatchNorm3d not_tracking_stats", (3, 1e-3, 0.7, True, False), (2, 3, 4, 4, 4)),
]


@pytest.mark.parametrize("desc,args,shape", BATCHNORM_MODULE_INPUTS,
                         ids=[case[0] for case in BATCHNORM_MODULE_INPUTS])
def test_module_inputs_batchnorm(desc, args, shape):
    rng = np.random.default_rng(0)
    x, dy = uniform(rng, shape), uniform(rng, shape)
    ours = bn_lib.BatchNorm(*args)
    if ours.affine:  # non-trivial parameters, the same on both sides
        ours.gamma[...], ours.beta[...] = uniform(rng, args[0]), uniform(rng, args[0])
    train_then_eval(ours, torch_twin(ours, ndim=len(shape)), x, dy)


@pytest.mark.parametrize("switches", [{"affine": False}, {"track_running_stats": False},
                                      {"affine": False, "track_running_stats": False}],
                         ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_pytorch_switches(switches, device, rng):
    """affine=False has no parameters; track_running_stats=False normalizes with batch
    statistics in eval mode too; back to training after eval."""
    shape = (6, 3, 4, 4)
    ours = bn_lib.BatchNorm(3, **switches)
    theirs = torch_twin(ours, ndim=4, device=device)
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    for mode in ("train", "eval", "train"):
        ours.train(mode == "train")
        theirs.train(mode == "train")
        x, dy = 2 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
        xt = to_torch(x, device, requires_grad=True)
        yt = theirs(xt)
        (dxt,) = torch.autograd.grad(yt, (xt,), to_torch(dy, device))
        assert_close(ours.forward(x), yt, "float64", what=f"{mode} y")
        assert_close(ours.backward(dy), dxt, "float64", what=f"{mode} dx")
    if ours.track_running_stats:
        assert_close(ours.running_var, theirs.running_var, "float64", "reduction",
                     "running_var")


# common_methods_invocations.py, sample_inputs_batch_norm (OpInfo nn.functional.batch_norm):
# (input shape, kwargs); the args are running_mean, running_var (make_tensor low=0),
# weight, bias of shape (C,). S = 5.
FUNCTIONAL_BATCH_NORM_SAMPLES = [
    ((5, 5, 5), {"training": True, "momentum": 0.5, "eps": 0.6}),
    ((3, 2, 4), {"training": False, "momentum": -1.2}),
    ((3, 1), {"training": True, "momentum": 0.0}),
    ((3, 2, 3, 4), {"training": True, "momentum": -1.0, "eps": 0.5}),
    ((3, 2, 3, 4), {"training": False, "momentum": -1.0, "eps": 0.5}),
    ((2, 1), {}),
    # the "permutations" loop: the last shape again, training True, then False
    ((2, 1), {"training": True}),
    ((2, 1), {"training": False}),
    # "no optional kwargs": no running statistics, weight or bias
    ((1, 2, 3), {"training": True, "no_optional": True}),
]


@pytest.mark.parametrize("shape,kwargs", FUNCTIONAL_BATCH_NORM_SAMPLES,
                         ids=[f"{s}-{k}" for s, k in FUNCTIONAL_BATCH_NORM_SAMPLES])
def test_sample_inputs_functional_batch_norm(shape, kwargs):
    kwargs = dict(kwargs)
    no_optional = kwargs.pop("no_optional", False)
    training, momentum = kwargs.get("training", False), kwargs.get("momentum", 0.1)
    eps = kwargs.get("eps", 1e-5)
    rng = np.random.default_rng(1)
    c = shape[1]
    x = uniform(rng, shape)
    mean, var = uniform(rng, c, low=0.0), uniform(rng, c, low=0.0)
    gamma, beta = (np.ones(c), np.zeros(c)) if no_optional else (uniform(rng, c),
                                                                  uniform(rng, c))
    stats = [None, None] if no_optional else [to_torch(mean), to_torch(var)]
    yt = F.batch_norm(to_torch(x), *stats, None if no_optional else to_torch(gamma),
                      None if no_optional else to_torch(beta), **kwargs)
    if not training:
        y, _ = bn_lib.batch_norm_inference(x, mean, var, gamma, beta, eps)
        assert_close(y, yt, "float64", what="eval y")
        return
    y, _ = bn_lib.batch_norm_forward(x, gamma, beta, eps)
    assert_close(y, yt, "float64", what="train y")
    if no_optional:
        return
    # F.batch_norm updated stats[0] and stats[1] in place; bn_lib's layer keeps them, and
    # refuses a momentum outside [0, 1] (PyTorch accepts it)
    if not 0 <= momentum <= 1:
        with pytest.raises(ValueError, match="momentum must be in"):
            bn_lib.BatchNorm(c, eps=eps, momentum=momentum)
        return
    layer = bn_lib.BatchNorm(c, eps=eps, momentum=momentum)
    layer.running_mean[...], layer.running_var[...] = mean, var
    layer.gamma[...], layer.beta[...] = gamma, beta
    assert_close(layer.forward(x), yt, "float64", what="layer y")
    assert_close(layer.running_mean, stats[0], "float64", "reduction", "running_mean")
    assert_close(layer.running_var, stats[1], "float64", "reduction", "running_var")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_float16_input_gives_float16_output(mode, rng):
    x = (3 * rng.standard_normal((16, 3)) + 1).astype(np.float16)
    layer = bn_lib.BatchNorm(3).train(mode == "train")
    theirs = torch_batch_norm(2, 3, dtype="float32").train(mode == "train")
    y = layer.forward(x)
    yt = theirs(torch.tensor(x, dtype=torch.float32))
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), to_numpy(yt), atol=5e-3)
    assert layer.backward(np.ones_like(x)).dtype == np.float16


@pytest.mark.parametrize("running_var", [1e-4, 1e-2])
def test_float16_inference_with_a_small_variance_matches_torch(running_var):
    """Computed in float16, (x - 1000) * gamma / sqrt(1e-4) overflowed to NaN."""
    rng = np.random.default_rng(3)
    x = (1000 + rng.standard_normal((16, 3))).astype(np.float16)
    mean, var = np.full(3, 1000.0), np.full(3, running_var)
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    ref = F.batch_norm(torch.from_numpy(x), *(torch.tensor(a, dtype=torch.float32)
                                              for a in (mean, var, gamma, beta)),
                       training=False).numpy()
    y, _ = bn_lib.batch_norm_inference(x, mean, var, gamma, beta)
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
    assert_close(dx, dxt, "float16", what="dx")


def test_batchnorm_propagates_nan_to_its_channel_only():
    """A NaN in one channel turns that channel into NaN and leaves the others as PyTorch
    computes them (after test_nn.py's test_nonlinearity_propagate_nan)."""
    x = np.random.default_rng(14).standard_normal((6, 3))
    x[2, 1] = np.nan
    yt = F.batch_norm(to_torch(x), None, None, training=True)
    y, _ = bn_lib.batch_norm_forward(x, np.ones(3), np.zeros(3))
    assert np.isnan(y[:, 1]).all() and np.isnan(to_numpy(yt)[:, 1]).all()
    assert_close(y[:, [0, 2]], yt[:, [0, 2]], "float64", what="the other channels")
