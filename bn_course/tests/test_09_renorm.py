"""Assignment 09, task "renorm": Batch Renormalization's training step on (N, D) input
(Ioffe 2017; chapter 09, `eq-09-renorm`), forward with the running-statistics update, and
backward with r and d held constant.

Oracle: the formula written in PyTorch, float64, with ``r`` and ``d`` detached, and its
autograd; the running statistics from ``F.batch_norm(training=True)``'s in-place update.
Two more references: unclipped, the output equals eval-mode BN with the running
statistics; with r_max = 1 and d_max = 0 it is BN in training mode.
"""

import numpy as np
import pytest
import torch
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

pytestmark = task("renorm")
# bn_lib's Batch Renorm and its BN core would answer the task for the learner
BN_LIB_NOT_ALLOWED = ("BatchRenorm", "renorm_limits", "BatchNorm", "batch_norm_forward",
                      "batch_norm_backward", "batch_norm_inference", "batch_statistics",
                      "normalize", "input_gradient")
CACHE_KEYS = ("x_hat", "inv_std", "r", "d")
MOMENTUM = 0.3


def case(name):
    """x (8, 6), gamma, beta, running mean and variance, r_max and d_max.

    "clipped": the running statistics are far from the batch's (mean about 12, standard
    deviation about 5), so r is clipped from above in channel 1 and from below in
    channels 2 and 3, and d from above and below in channels 1 and 4; channels 0 and 5
    are not clipped. "unclipped": running statistics near the batch's, wide limits.
    """
    x = batch((8, 6))
    gamma, beta = affine(6)
    if name == "clipped":
        mean = np.array([11.0, 0.0, 30.0, 14.0, 20.0, 12.0])
        var = np.array([30.0, 1.0, 400.0, 150.0, 16.0, 20.0])
        return x, gamma, beta, mean, var, 2.0, 1.0
    return x, gamma, beta, x.mean(axis=0) + 1.0, x.var(axis=0) * 1.5, 3.0, 5.0


def torch_renorm(x, gamma, beta, mean, var, r_max, d_max, dy):
    """eq-09-renorm in PyTorch with r and d detached: y, r, d, dx, dgamma, dbeta."""
    xt, gt, bt = (to_torch(a, requires_grad=True) for a in (x, gamma, beta))
    mean_b, var_b = xt.mean(dim=0), xt.var(dim=0, unbiased=False)
    sigma_b, sigma = torch.sqrt(var_b + EPS), torch.sqrt(to_torch(var) + EPS)
    r = torch.clamp(sigma_b / sigma, 1 / r_max, r_max).detach()
    d = torch.clamp((mean_b - to_torch(mean)) / sigma, -d_max, d_max).detach()
    yt = gt * ((xt - mean_b) / sigma_b * r + d) + bt
    yt.backward(to_torch(dy))
    return tuple(to_numpy(t) for t in (yt, r, d, xt.grad, gt.grad, bt.grad))


def forward(learner, x, gamma, beta, mean, var, r_max, d_max, momentum=MOMENTUM):
    result = learner.call("batch_renorm_forward", x, gamma, beta, mean, var, r_max, d_max,
                          momentum, EPS)
    y, new_mean, new_var, cache = unpack(
        result, ("y", "running_mean", "running_var", "cache"), "batch_renorm_forward")
    if not isinstance(cache, dict) or not set(CACHE_KEYS) <= set(cache):
        raise AssertionError(f"cache must be a dict with keys {CACHE_KEYS}, got "
                             + (f"the keys {sorted(cache)}" if isinstance(cache, dict)
                                else describe(cache)))
    return y, new_mean, new_var, cache


def test_forward_matches_the_formula(learner):
    x, gamma, beta, mean, var, r_max, d_max = case("clipped")
    expected, *_ = torch_renorm(x, gamma, beta, mean, var, r_max, d_max, upstream(x.shape))
    y, *_ = forward(learner, x, gamma, beta, mean, var, r_max, d_max)
    assert_close("y", y, expected, "eq-09-renorm in PyTorch (r_max = 2, d_max = 1)")


def test_r_and_d_are_clipped(learner):
    x, gamma, beta, mean, var, r_max, d_max = case("clipped")
    _, r, d, *_ = torch_renorm(x, gamma, beta, mean, var, r_max, d_max, upstream(x.shape))
    _, _, _, cache = forward(learner, x, gamma, beta, mean, var, r_max, d_max)
    assert_close("cache['r']", cache["r"], r, "clip(sigma_B / sigma, 1/2, 2)")
    assert_close("cache['d']", cache["d"], d, "clip((mu_B - mu) / sigma, -1, 1)")


def test_unclipped_equals_eval_mode(learner):
    # eq-09-identity: with nothing clipped, training output = eval output
    x, gamma, beta, mean, var, r_max, d_max = case("unclipped")
    expected = F.batch_norm(to_torch(x), to_torch(mean), to_torch(var), to_torch(gamma),
                            to_torch(beta), training=False, eps=EPS)
    y, *_ = forward(learner, x, gamma, beta, mean, var, r_max, d_max)
    assert_close("y", y, to_numpy(expected), "BN in eval mode with the running statistics")


def test_no_room_to_correct_is_batch_norm(learner):
    # r_max = 1 and d_max = 0 force r = 1 and d = 0: plain BN in training mode
    x, gamma, beta, mean, var, _, _ = case("clipped")
    expected = F.batch_norm(to_torch(x), None, None, to_torch(gamma), to_torch(beta),
                            training=True, eps=EPS)
    y, *_ = forward(learner, x, gamma, beta, mean, var, 1.0, 0.0)
    assert_close("y", y, to_numpy(expected), "F.batch_norm(training=True)")


def test_running_statistics_update(learner):
    x, gamma, beta, mean, var, r_max, d_max = case("clipped")
    x = x[:5]  # m = 5: the unbiased variance is 5/4 of the biased one
    running_mean, running_var = to_torch(mean), to_torch(var)  # updated in place by torch
    F.batch_norm(to_torch(x), running_mean, running_var, training=True, momentum=MOMENTUM,
                 eps=EPS)
    _, new_mean, new_var, _ = forward(learner, x, gamma, beta, mean, var, r_max, d_max)
    against = f"F.batch_norm's update (momentum={MOMENTUM}, batch of 5)"
    assert_close("running_mean", new_mean, to_numpy(running_mean), against)
    assert_close("running_var", new_var, to_numpy(running_var), against)


def test_arguments_are_not_modified(learner):
    # the new running statistics are new arrays: the caller's are left as they are
    arguments = case("clipped")
    _, after, _ = learner.call_with_arguments("batch_renorm_forward", *arguments, MOMENTUM,
                                              EPS)
    names = ("x", "gamma", "beta", "running_mean", "running_var")
    for name, before, now in zip(names, arguments, after):
        assert_close(f"{name} after the call", now, before,
                     f"{name} before the call (return new arrays)", tol=0)


@pytest.mark.parametrize("name", ["clipped", "unclipped"])
def test_backward_matches_autograd(learner, name):
    x, gamma, beta, mean, var, r_max, d_max = case(name)
    dy = upstream(x.shape)
    _, r, d, *expected = torch_renorm(x, gamma, beta, mean, var, r_max, d_max, dy)
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + EPS)
    x_hat = (x - x.mean(axis=0)) * inv_std
    result = learner.call("batch_renorm_backward", dy, x_hat, gamma, inv_std, r, d)
    dx, dgamma, dbeta = unpack(result, ("dx", "dgamma", "dbeta"), "batch_renorm_backward")
    against = "PyTorch autograd with r and d detached"
    for label, ours, theirs in zip(("dx", "dgamma", "dbeta"), (dx, dgamma, dbeta), expected):
        assert_close(label, ours, theirs, against)
