"""Assignment 02, task "forward": training-mode Batch Normalization of (N, D) input.

Oracle: PyTorch's ``F.batch_norm(training=True)`` in float64 (chapter 02, eqs. (2.1)-(2.4)).
"""

import numpy as np
from course_helpers import (
    EPS,
    affine,
    assert_close,
    batch,
    describe,
    task,
    torch_batch_norm,
    torch_batch_stats,
    unpack,
)

pytestmark = task("forward")
# bn_lib's own forward pass, and every layer built on it: not available to the answer
BN_LIB_NOT_ALLOWED = ("batch_norm_forward", "batch_statistics", "normalize", "BatchNorm",
                      "BatchRenorm", "SyncBatchNorm", "sync_batch_norm_forward")
CACHE_KEYS = ("x_hat", "mean", "var", "inv_std")


def forward(learner, x, gamma, beta, eps=EPS):
    """The learner's (y, cache), checked for the form the assignment asks for."""
    result = learner.call("batchnorm_forward", x.copy(), gamma.copy(), beta.copy(), eps)
    y, cache = unpack(result, ("y", "cache"), "batchnorm_forward")
    if not isinstance(cache, dict):
        raise AssertionError(f"cache must be a dict with keys {CACHE_KEYS}, "
                             f"got {describe(cache)}")
    missing = [key for key in CACHE_KEYS if key not in cache]
    if missing:
        raise AssertionError(f"cache lacks the keys {missing}")
    return y, cache


def test_output_matches_pytorch(learner):
    x, (gamma, beta) = batch((32, 6)), affine(6)
    y, _ = forward(learner, x, gamma, beta)
    assert_close("y", y, torch_batch_norm(x, gamma, beta), "F.batch_norm(training=True)")


def test_smallest_batch(learner):
    # m = 2: the biased variance is half the unbiased one, so the two cannot be confused
    x, (gamma, beta) = batch((2, 3)), affine(3)
    y, _ = forward(learner, x, gamma, beta)
    assert_close("y", y, torch_batch_norm(x, gamma, beta), "F.batch_norm(training=True)")


def test_batch_statistics(learner):
    x, (gamma, beta) = batch((20, 4)), affine(4)
    _, cache = forward(learner, x, gamma, beta)
    mean, var = torch_batch_stats(x)
    assert_close("cache['mean']", cache["mean"], mean, "the batch mean")
    assert_close("cache['var']", cache["var"], var, "the biased batch variance (divide by m)")


def test_cache_for_the_backward_pass(learner):
    x, (gamma, beta) = batch((20, 4)), affine(4)
    _, cache = forward(learner, x, gamma, beta)
    ones, zeros = np.ones(4), np.zeros(4)
    assert_close("cache['x_hat']", cache["x_hat"], torch_batch_norm(x, ones, zeros),
                 "F.batch_norm with gamma = 1, beta = 0")
    _, var = torch_batch_stats(x)
    assert_close("cache['inv_std']", cache["inv_std"], 1 / np.sqrt(var + EPS),
                 "1 / sqrt(var + eps)")


def test_eps_inside_the_square_root(learner):
    # a feature whose variance (1e-6) is small next to eps: where eps goes now matters
    x = batch((16, 3))
    x[:, 1] = 7.0 + 1e-3 * np.random.default_rng(3).standard_normal(16)
    gamma, beta = affine(3)
    y, _ = forward(learner, x, gamma, beta, eps=1e-3)
    assert_close("y", y, torch_batch_norm(x, gamma, beta, eps=1e-3),
                 "F.batch_norm(training=True, eps=1e-3)")


def test_input_is_not_modified(learner):
    x, (gamma, beta) = batch((8, 3)), affine(3)
    _, (x_after, *_), _ = learner.call_with_arguments("batchnorm_forward", x, gamma, beta, EPS)
    assert_close("x after the call", x_after, x, "x before the call (work on a copy)", tol=0)
