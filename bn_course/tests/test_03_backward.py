"""Assignment 03: the backward pass, three tasks (chapter 03).

* "staged_backward": node by node through the nine-step graph; oracles: PyTorch
  autograd and finite differences.
* "compact_backward": the one-formula dx, eq. (3.9); oracles: autograd, a node-by-node
  computation, and the identity sum(dx) = 0.
* "gradient_check": the numerical gradient and the relative error; they must pass a right
  backward pass and flag a planted wrong one.
"""

import numpy as np
import pytest
from course_helpers import (
    EPS,
    affine,
    assert_close,
    batch,
    bn_cache,
    check_array,
    check_number,
    task,
    torch_batch_norm,
    unpack,
    upstream,
)

import bn_lib

GRADS = ("dx", "dgamma", "dbeta")
# bn_lib's backward pass and its gradient check: not available to the answers
BN_LIB_NOT_ALLOWED = ("batch_norm_backward", "input_gradient", "sync_batch_norm_backward",
                      "numerical_gradient", "relative_error", "check_module_gradients")
CS231N_FLOOR = 1e-8  # CS231n's rel_error: max |a - b| / max(|a| + |b|, 1e-8)


def cs231n_relative_error(a, b):
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), CS231N_FLOOR)))


def case(shape, seed=0):
    x = batch(shape, seed)
    gamma, beta = affine(shape[1], seed + 1)
    return x, gamma, beta, upstream(shape, seed + 2)


def staged(learner, dy, x, gamma, eps=EPS):
    result = learner.call("staged_backward", dy.copy(), x.copy(), gamma.copy(), eps)
    return unpack(result, GRADS, "staged_backward")


def compact(learner, dy, x, gamma, beta, eps=EPS):
    x_hat, inv_std = bn_cache(x, gamma, beta, eps)
    result = learner.call("compact_backward", dy.copy(), x_hat, gamma.copy(), inv_std)
    return unpack(result, GRADS, "compact_backward")


def node_by_node(dy, x, gamma, eps):
    """The nine-step graph of chapter 03, backwards: the reference for "equal to staged"."""
    m = x.shape[0]
    mu = x.mean(axis=0)
    xmu = x - mu
    sigma = np.sqrt((xmu**2).mean(axis=0) + eps)
    xhat = xmu / sigma
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    dxhat = gamma * dy
    dv = (dxhat * xmu).sum(axis=0)
    dvar = -dv / sigma**2 / (2 * sigma)
    dxmu = dxhat / sigma + 2 * xmu * dvar / m
    return dxmu - dxmu.sum(axis=0) / m, dgamma, dbeta


# ----------------------------------------------------------------------------- staged


@task("staged_backward")
def test_staged_dx_matches_autograd(learner):
    x, gamma, beta, dy = case((16, 5))
    dx, _, _ = staged(learner, dy, x, gamma)
    _, expected, _, _ = torch_batch_norm(x, gamma, beta, dy)
    assert_close("dx", dx, expected, "PyTorch autograd")


@task("staged_backward")
def test_staged_dgamma_dbeta_match_autograd(learner):
    x, gamma, beta, dy = case((16, 5))
    _, dgamma, dbeta = staged(learner, dy, x, gamma)
    _, _, expected_dgamma, expected_dbeta = torch_batch_norm(x, gamma, beta, dy)
    assert_close("dgamma", dgamma, expected_dgamma, "PyTorch autograd")
    assert_close("dbeta", dbeta, expected_dbeta, "PyTorch autograd")


@task("staged_backward")
def test_staged_matches_finite_differences(learner):
    x, gamma, beta, dy = case((6, 3), seed=10)
    dx, _, _ = staged(learner, dy, x, gamma)
    numeric = bn_lib.numerical_gradient(
        lambda a: bn_lib.batch_norm_forward(a, gamma, beta)[0], x.copy(), dy)
    error = bn_lib.relative_error(check_array("dx", dx, x.shape), numeric)
    assert error < 1e-6, (f"dx differs from central finite differences: relative error "
                          f"{error:.1e} (a right gradient gives below 1e-6)")


@task("staged_backward")
def test_staged_smallest_batch(learner):
    x, gamma, beta, dy = case((2, 4), seed=20)
    grads = staged(learner, dy, x, gamma)
    _, *expected = torch_batch_norm(x, gamma, beta, dy)
    for name, ours, theirs in zip(GRADS, grads, expected):
        assert_close(name, ours, theirs, "PyTorch autograd (m = 2)")


# ----------------------------------------------------------------------------- compact


@task("compact_backward")
def test_compact_dx_matches_autograd(learner):
    x, gamma, beta, dy = case((16, 5))
    dx, _, _ = compact(learner, dy, x, gamma, beta)
    _, expected, _, _ = torch_batch_norm(x, gamma, beta, dy)
    assert_close("dx", dx, expected, "PyTorch autograd")


@task("compact_backward")
def test_compact_dgamma_dbeta_match_autograd(learner):
    x, gamma, beta, dy = case((16, 5))
    _, dgamma, dbeta = compact(learner, dy, x, gamma, beta)
    _, _, expected_dgamma, expected_dbeta = torch_batch_norm(x, gamma, beta, dy)
    assert_close("dgamma", dgamma, expected_dgamma, "PyTorch autograd")
    assert_close("dbeta", dbeta, expected_dbeta, "PyTorch autograd")


@task("compact_backward")
def test_compact_equals_staged(learner):
    # m = 3 and a large eps, where sum(x_hat**2) is far from m: no shortcut survives
    x, gamma, beta, dy = case((3, 4), seed=30)
    x[:, 2] = 1.0 + 0.05 * x[:, 2]
    eps = 0.5
    grads = compact(learner, dy, x, gamma, beta, eps)
    for name, ours, theirs in zip(GRADS, grads, node_by_node(dy, x, gamma, eps)):
        assert_close(name, ours, theirs, "the nine staged steps (eps = 0.5)")


@task("compact_backward")
@pytest.mark.parametrize("shape", [(16, 5), (2, 3)], ids=["m16", "m2"])
def test_compact_sum_dx_is_zero(learner, shape):
    x, gamma, beta, dy = case(shape, seed=40)
    dx, _, _ = compact(learner, dy, x, gamma, beta)
    assert_close("sum(dx) over the batch", np.sum(check_array("dx", dx, shape), axis=0),
                 np.zeros(shape[1]), "0 (chapter 3: the identity sum(dx) = 0)", tol=1e-10)


# ----------------------------------------------------------------------------- gradient check


def numerical(learner, f, x, dy, h=1e-5):
    # f runs in the grader's process: the learner's code gets its values, not its code
    result = learner.call("numerical_gradient", f, x, dy, h)
    return check_array("the numerical gradient", result, x.shape)


@task("gradient_check")
def test_numerical_gradient_of_a_cubic(learner):
    rng = np.random.default_rng(50)
    x, dy = rng.uniform(0.5, 2.0, (4, 3)), rng.standard_normal((4, 3))
    grad = numerical(learner, lambda a: a**3, x.copy(), dy)
    # a central difference is exact up to h**2 * f''' / 6 = 1e-10 here
    assert_close("the numerical gradient of sum(x**3 * dy)", grad, 3 * x**2 * dy,
                 "3 x**2 dy", tol=1e-8)


@task("gradient_check")
def test_numerical_gradient_of_batch_norm(learner):
    x, gamma, beta, dy = case((5, 3), seed=60)
    grad = numerical(learner, lambda a: bn_lib.batch_norm_forward(a, gamma, beta)[0],
                     x.copy(), dy)
    _, expected, _, _ = torch_batch_norm(x, gamma, beta, dy)
    assert_close("the numerical dx", grad, expected, "PyTorch autograd", tol=1e-7)


@task("gradient_check")
def test_numerical_gradient_restores_x(learner):
    x, dy = batch((3, 2), seed=70), upstream((3, 2), seed=71)
    _, (_, x_after, *_), _ = learner.call_with_arguments("numerical_gradient", np.tanh, x, dy,
                                                         1e-5)
    assert_close("x after numerical_gradient", x_after, x,
                 "x before it (put each entry back after nudging it)", tol=0)


@task("gradient_check")
def test_relative_error_values(learner):
    rng = np.random.default_rng(80)
    cases = [(np.array([1.0, 2.0]), np.array([1.0, 2.0])),
             (np.array([1.0, 3.0]), np.array([1.0, 1.0])),
             (np.array([2e-3, -1e-3]), np.array([-2e-3, -1e-3])),
             (np.zeros(3), np.zeros(3)),
             (np.array([1e-10, 0.0]), np.zeros(2)),  # below the floor: 1e-10 / 1e-8
             (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))]
    for a, b in cases:
        ours = check_number("relative_error's result",
                            learner.call("relative_error", a.copy(), b.copy()))
        expected = cs231n_relative_error(a, b)
        shown = ", ".join(f"[{', '.join(f'{v:.4g}' for v in array.ravel())}]"
                          for array in (a, b))
        assert abs(ours - expected) <= 1e-12, (
            f"relative_error({shown}) is {ours:.6g}, expected "
            f"max |a - b| / max(|a| + |b|, 1e-8) = {expected:.6g}")


@task("gradient_check")
def test_check_tells_right_from_wrong(learner):
    x, gamma, beta, dy = case((6, 4), seed=90)
    numeric = numerical(learner, lambda a: bn_lib.batch_norm_forward(a, gamma, beta)[0],
                        x.copy(), dy)
    x_hat, inv_std = bn_cache(x, gamma, beta)
    dbeta, dgamma = dy.sum(axis=0), (dy * x_hat).sum(axis=0)
    right = gamma * inv_std / 6 * (6 * dy - dbeta - x_hat * dgamma)
    planted = gamma * inv_std / 6 * (6 * dy - dbeta)  # the x_hat * dgamma term is missing
    right_error = check_number("relative_error's result",
                               learner.call("relative_error", right, numeric))
    wrong_error = check_number("relative_error's result",
                               learner.call("relative_error", planted, numeric))
    assert right_error < 1e-7, f"the right dx scored a relative error {right_error:.1e}"
    assert wrong_error > 1e-2, f"the planted wrong dx scored only {wrong_error:.1e}"
