"""Assignment 05, tasks "layernorm" and "groupnorm": Layer and Group Normalization,
forward and backward, in CS231n's form (chapter 05, `eq-05-sets`).

* "layernorm": x of shape (N, D), statistics per example over its D features, gamma and
  beta per feature; oracle: ``F.layer_norm`` with autograd.
* "groupnorm": x of shape (N, C, H, W), statistics per example over each group of C/G
  consecutive channels and all positions, gamma and beta per channel; oracle:
  ``F.group_norm`` with autograd.

Both in float64. The backward tests hand the learner x_hat and 1/sigma computed here.
"""

import numpy as np
import pytest
import torch.nn.functional as F
from course_helpers import (
    EPS,
    affine,
    assert_close,
    batch,
    describe,
    task,
    unpack,
    upstream,
)

from bn_lib.testing import to_numpy, to_torch

# bn_lib's layers and its BN core would answer these tasks for the learner
BN_LIB_NOT_ALLOWED = ("LayerNorm", "GroupNorm", "normalize_groups", "normalize_groups_backward",
                      "BatchNorm", "batch_norm_forward", "batch_norm_backward")
CACHE_KEYS = ("x_hat", "mean", "var", "inv_std")
LN_SHAPES = {"batch_of_6": (6, 5), "batch_of_1": (1, 7)}
GN_SHAPE = (3, 6, 4, 5)  # (N, C, H, W)


def torch_norm(kind, x, gamma, beta, dy, groups=None):
    """``F.layer_norm`` over the last axis or ``F.group_norm``: (y, dx, dgamma, dbeta)."""
    xt, gt, bt = (to_torch(a, requires_grad=True) for a in (x, gamma, beta))
    if kind == "layer":
        yt = F.layer_norm(xt, (x.shape[-1],), gt, bt, eps=EPS)
    else:
        yt = F.group_norm(xt, groups, gt, bt, eps=EPS)
    yt.backward(to_torch(dy))
    return tuple(to_numpy(t) for t in (yt, xt.grad, gt.grad, bt.grad))


def torch_group_stats(x, groups):
    """Mean and biased variance of each (example, group): shape (N, G), by PyTorch."""
    values = to_torch(x).reshape(x.shape[0], groups, -1)
    return to_numpy(values.mean(dim=-1)), to_numpy(values.var(dim=-1, unbiased=False))


def normalized(x, groups):
    """x_hat (like x) and 1/sigma, shape (N, G), for the backward tests (by PyTorch)."""
    mean, var = torch_group_stats(x, groups)
    inv_std = 1.0 / np.sqrt(var + EPS)
    rows = x.reshape(x.shape[0], groups, -1)
    return ((rows - mean[..., None]) * inv_std[..., None]).reshape(x.shape), inv_std


def forward(learner, name, *args):
    y, cache = unpack(learner.call(name, *args), ("y", "cache"), name)
    if not isinstance(cache, dict) or not set(CACHE_KEYS) <= set(cache):
        raise AssertionError(f"{name}'s cache must be a dict with keys {CACHE_KEYS}, got "
                             + (f"the keys {sorted(cache)}" if isinstance(cache, dict)
                                else describe(cache)))
    return y, cache


def check_gradients(result, name, expected, against):
    dx, dgamma, dbeta = unpack(result, ("dx", "dgamma", "dbeta"), name)
    for label, ours, theirs in zip(("dx", "dgamma", "dbeta"), (dx, dgamma, dbeta), expected):
        assert_close(label, ours, theirs, against)


# ----------------------------------------------------------------------------- layernorm


@task("layernorm")
@pytest.mark.parametrize("case", list(LN_SHAPES))
def test_layernorm_forward_matches_pytorch(learner, case):
    # a batch of one too: each example is normalized on its own
    x = batch(LN_SHAPES[case])
    gamma, beta = affine(x.shape[1])
    expected, *_ = torch_norm("layer", x, gamma, beta, upstream(x.shape))
    y, _ = forward(learner, "layernorm_forward", x, gamma, beta, EPS)
    assert_close("y", y, expected, "F.layer_norm over the features")


@task("layernorm")
def test_layernorm_statistics_per_example(learner):
    x = batch((8, 5))
    mean, var = torch_group_stats(x, 1)
    _, cache = forward(learner, "layernorm_forward", x, *affine(5), EPS)
    assert_close("cache['mean']", cache["mean"], mean[:, 0], "the mean of each example")
    assert_close("cache['var']", cache["var"], var[:, 0],
                 "the biased variance of each example")


@task("layernorm")
def test_layernorm_backward_matches_autograd(learner):
    x = batch((6, 5))
    gamma, beta = affine(5)
    dy = upstream(x.shape)
    x_hat, inv_std = normalized(x, 1)
    _, *expected = torch_norm("layer", x, gamma, beta, dy)
    result = learner.call("layernorm_backward", dy, x_hat, gamma, inv_std[:, 0])
    check_gradients(result, "layernorm_backward", expected, "F.layer_norm's autograd")


# ----------------------------------------------------------------------------- groupnorm


@task("groupnorm")
@pytest.mark.parametrize("groups", [2, 1, 6], ids=lambda g: f"G={g}")
def test_groupnorm_forward_matches_pytorch(learner, groups):
    # G = 1 is a LayerNorm over (C, H, W), G = C an InstanceNorm
    x = batch(GN_SHAPE)
    gamma, beta = affine(x.shape[1])
    expected, *_ = torch_norm("group", x, gamma, beta, upstream(x.shape), groups)
    y, _ = forward(learner, "groupnorm_forward", x, gamma, beta, groups, EPS)
    assert_close("y", y, expected, f"F.group_norm with {groups} group(s)")


@task("groupnorm")
def test_groupnorm_statistics_per_group(learner):
    # N = 4 examples, G = 3 groups: a cache laid out (G, N) fails on its shape
    x, groups = batch((4,) + GN_SHAPE[1:]), 3
    mean, var = torch_group_stats(x, groups)
    _, cache = forward(learner, "groupnorm_forward", x, *affine(x.shape[1]), groups, EPS)
    assert_close("cache['mean']", cache["mean"], mean,
                 "the mean of each (example, group of consecutive channels)")
    assert_close("cache['var']", cache["var"], var, "the biased variance of each group")


@task("groupnorm")
@pytest.mark.parametrize("groups", [2, 3], ids=lambda g: f"G={g}")
def test_groupnorm_backward_matches_autograd(learner, groups):
    x = batch(GN_SHAPE)
    gamma, beta = affine(x.shape[1])
    dy = upstream(x.shape)
    x_hat, inv_std = normalized(x, groups)
    _, *expected = torch_norm("group", x, gamma, beta, dy, groups)
    result = learner.call("groupnorm_backward", dy, x_hat, gamma, inv_std, groups)
    check_gradients(result, "groupnorm_backward", expected, "F.group_norm's autograd")
