"""Assignment 04: test time, two tasks (chapter 04).

* "running_stats": the update of the running statistics (momentum 0.1, 0.5 and None, with
  changing batch sizes) and the eval-mode forward pass; oracle: ``nn.BatchNorm1d``.
* "folding": an eval-mode BN folded into the Linear or Conv2d layer before it; oracle:
  ``torch.nn.utils.fusion.fuse_linear_bn_eval`` and ``fuse_conv_bn_eval``.
"""

import numpy as np
import pytest
import torch
from course_helpers import EPS, affine, assert_close, batch, check_array, task, unpack

import bn_lib
from bn_lib.testing import to_numpy, to_torch

# bn_lib's eval-mode pass, running-statistics update and folding: not available to the answers
BN_LIB_NOT_ALLOWED = ("batch_norm_inference", "BatchNorm.update_running_stats",
                      "fold_batchnorm", "fold_sequential", "FrozenBatchNorm", "update_bn")
BATCH_SIZES = (8, 3, 16, 2, 5, 11)  # changing sizes: the m / (m - 1) factor changes too
CHANNELS = 4


def trained_torch_bn(momentum, channels=CHANNELS):
    layer = torch.nn.BatchNorm1d(channels, eps=EPS, momentum=momentum, dtype=torch.float64)
    for step, m in enumerate(BATCH_SIZES):
        layer(to_torch(batch((m, channels), seed=step)))
    return layer


# ----------------------------------------------------------------------------- running stats


@task("running_stats")
@pytest.mark.parametrize("momentum", [0.1, 0.5, None], ids=lambda m: f"momentum={m}")
def test_running_stats_follow_pytorch(learner, momentum):
    reference = torch.nn.BatchNorm1d(CHANNELS, eps=EPS, momentum=momentum,
                                     dtype=torch.float64)
    running_mean, running_var = np.zeros(CHANNELS), np.ones(CHANNELS)
    for step, m in enumerate(BATCH_SIZES, start=1):
        x = batch((m, CHANNELS), seed=step - 1)
        reference(to_torch(x))
        _, cache = bn_lib.batch_norm_forward(x, np.ones(CHANNELS), np.zeros(CHANNELS))
        result = learner.call("update_running_stats", running_mean.copy(), running_var.copy(),
                              cache.mean.copy(), cache.var.copy(), m, momentum, step)
        running_mean, running_var = unpack(result, ("running_mean", "running_var"),
                                           "update_running_stats")
        against = f"BatchNorm1d(momentum={momentum}) after step {step} (batch of {m})"
        assert_close(f"running_mean after step {step}", running_mean,
                     to_numpy(reference.running_mean), against)
        assert_close(f"running_var after step {step}", running_var,
                     to_numpy(reference.running_var), against)
        running_mean = np.asarray(running_mean, dtype=np.float64)
        running_var = np.asarray(running_var, dtype=np.float64)


def eval_case(n, seed):
    layer = trained_torch_bn(0.1)
    gamma, beta = affine(CHANNELS, seed=7)
    with torch.no_grad():
        layer.weight.copy_(to_torch(gamma))
        layer.bias.copy_(to_torch(beta))
    layer.eval()
    x = batch((n, CHANNELS), seed=seed, scale=3.0, shift=10.0)
    expected = to_numpy(layer(to_torch(x)))
    stats = to_numpy(layer.running_mean), to_numpy(layer.running_var)
    return x, stats, gamma, beta, expected


@task("running_stats")
def test_eval_forward_matches_pytorch(learner):
    x, (mean, var), gamma, beta, expected = eval_case(12, seed=100)
    y = learner.call("batchnorm_eval", x.copy(), mean.copy(), var.copy(), gamma, beta, EPS)
    assert_close("y", y, expected, "BatchNorm1d in eval mode")


@task("running_stats")
def test_eval_forward_batch_of_one(learner):
    # a batch of one cannot be normalized by its own statistics; in eval mode it must work
    x, (mean, var), gamma, beta, expected = eval_case(1, seed=101)
    y = learner.call("batchnorm_eval", x.copy(), mean.copy(), var.copy(), gamma, beta, EPS)
    assert_close("y", y, expected, "BatchNorm1d in eval mode, batch of one")


# ----------------------------------------------------------------------------- folding


def trained_bn_lib_bn(channels, x_shape, seed=0):
    """A bn_lib BatchNorm after a few training steps, switched to eval mode."""
    bn = bn_lib.BatchNorm(channels)
    bn.gamma[...], bn.beta[...] = affine(channels, seed=seed + 1)
    for step in range(3):
        bn.forward(batch(x_shape, seed=seed + 10 + step))
    return bn.eval()


def torch_bn_copy(bn, conv=False):
    cls = torch.nn.BatchNorm2d if conv else torch.nn.BatchNorm1d
    layer = cls(bn.num_features, eps=bn.eps, dtype=torch.float64)
    with torch.no_grad():
        for name, value in (("weight", bn.gamma), ("bias", bn.beta),
                            ("running_mean", bn.running_mean), ("running_var", bn.running_var)):
            getattr(layer, name).copy_(to_torch(value))
    return layer.eval()


def fold(learner, name, W, b, bn):
    result = learner.call(name, W.copy(), None if b is None else b.copy(), bn)
    return unpack(result, ("W_folded", "b_folded"), name)


def torch_fused_linear(W, b, bn):
    linear = torch.nn.Linear(W.shape[1], W.shape[0], bias=b is not None, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(to_torch(W))
        if b is not None:
            linear.bias.copy_(to_torch(b))
    fused = torch.nn.utils.fusion.fuse_linear_bn_eval(linear.eval(), torch_bn_copy(bn))
    return to_numpy(fused.weight), to_numpy(fused.bias)


@task("folding")
@pytest.mark.parametrize("bias", [True, False], ids=["with_bias", "without_bias"])
def test_fold_linear_matches_torch_fuse(learner, bias):
    rng = np.random.default_rng(200)
    W = rng.standard_normal((5, 3))
    b = rng.standard_normal(5) if bias else None
    bn = trained_bn_lib_bn(5, (16, 5), seed=201)
    W_folded, b_folded = fold(learner, "fold_linear_bn", W, b, bn)
    expected_W, expected_b = torch_fused_linear(W, b, bn)
    assert_close("W_folded", W_folded, expected_W, "fuse_linear_bn_eval")
    assert_close("b_folded", b_folded, expected_b, "fuse_linear_bn_eval")


@task("folding")
def test_folded_linear_computes_linear_then_bn(learner):
    rng = np.random.default_rng(210)
    W, b = rng.standard_normal((4, 6)), rng.standard_normal(4)
    bn = trained_bn_lib_bn(4, (16, 4), seed=211)
    W_folded, b_folded = fold(learner, "fold_linear_bn", W, b, bn)
    x = rng.standard_normal((10, 6))
    expected = bn.forward(x @ W.T + b)  # eval mode: the running statistics
    W_folded = check_array("W_folded", W_folded, W.shape)
    b_folded = check_array("b_folded", b_folded, b.shape)
    ours = x @ W_folded.T + b_folded
    assert_close("x @ W_folded.T + b_folded", ours, expected,
                 "BatchNorm (eval) after the Linear layer")


@task("folding")
@pytest.mark.parametrize("bias", [True, False], ids=["with_bias", "without_bias"])
def test_fold_conv_matches_torch_fuse(learner, bias):
    rng = np.random.default_rng(220)
    W = rng.standard_normal((5, 3, 3, 3))  # (C_out, C_in, kh, kw)
    b = rng.standard_normal(5) if bias else None
    bn = trained_bn_lib_bn(5, (4, 5, 6, 6), seed=221)
    W_folded, b_folded = fold(learner, "fold_conv_bn", W, b, bn)
    conv = torch.nn.Conv2d(3, 5, 3, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(to_torch(W))
        if bias:
            conv.bias.copy_(to_torch(b))
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), torch_bn_copy(bn, conv=True))
    assert_close("W_folded", W_folded, to_numpy(fused.weight), "fuse_conv_bn_eval")
    assert_close("b_folded", b_folded, to_numpy(fused.bias), "fuse_conv_bn_eval")
