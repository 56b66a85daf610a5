"""bn_lib.testing, the PyTorch oracle: its comparison and its checks can fail.

A deliberately wrong implementation, a NaN, a wrong shape or a wrong dtype is reported
as a failure; the composed torch formula that chapter 07 times is Batch Normalization.
"""

import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import bn_lib
from bn_lib import testing


def test_bn_lib_imports_neither_torch_nor_the_oracle():
    code = "import sys, bn_lib; print('torch' in sys.modules, 'bn_lib.testing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_quick_subset_passes_on_cpu():
    result = testing.run_verification(device="cpu", quick=True)
    assert result["passed"], [r for r in result["checks"] if not r["passed"]]
    assert {tuple(r["shape"]) for r in result["checks"]} == set(testing.QUICK_SHAPES)
    # float64 agrees far inside its tolerance: the tolerance is not what makes it pass
    assert max(r["scaled_err"] for r in result["checks"] if r["dtype"] == "float64") < 1e-12


class BiasedRunningVar(bn_lib.BatchNorm):
    """Keras's and Flax's convention, wrong for PyTorch: the running variance updated with
    the biased batch variance."""

    def forward(self, x):
        y = super().forward(x)
        if self.training:
            m = x.size // self.num_features
            weight = self.momentum or 1.0 / self.num_batches_tracked
            self.running_var -= weight * self.cache.var / (m - 1)  # m/(m-1) var -> var
        return y


def implementation(**replaced):
    parts = {"batch_norm_forward": bn_lib.batch_norm_forward,
             "batch_norm_backward": bn_lib.batch_norm_backward, "BatchNorm": bn_lib.BatchNorm}
    return types.SimpleNamespace(**{**parts, **replaced})


def failed_checks(impl, dtypes=testing.DTYPES):
    result = testing.run_verification("cpu", shapes=[(32, 16)], dtypes=dtypes,
                                      implementation=impl)
    return {(r["dtype"], r["check"]) for r in result["checks"] if not r["passed"]}


def test_biased_running_variance_is_caught():
    # the running variance itself, and the eval mode that normalizes with it
    assert failed_checks(implementation(BatchNorm=BiasedRunningVar)) == {
        (dtype, check) for dtype in testing.DTYPES
        for check in ("running_var (momentum 0.1)", "running_var (cumulative)",
                      "eval forward y", "eval backward dx")}


def test_backward_off_by_a_tenth_of_a_percent_is_caught():
    def backward(dy, cache):
        dx, dgamma, dbeta = bn_lib.batch_norm_backward(dy, cache)
        return dx * (1 + 1e-3), dgamma, dbeta

    assert failed_checks(implementation(batch_norm_backward=backward)) == {
        (dtype, "train backward dx") for dtype in testing.DTYPES}


def test_nan_is_caught():
    def forward(x, gamma, beta, eps=1e-5):
        y, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps)
        y[0, 0] = np.nan
        return y, cache

    assert failed_checks(implementation(batch_norm_forward=forward), ("float64",)) == {
        ("float64", "train forward y")}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compare_measures_errors_against_the_tolerance(dtype):
    ref = np.array([[3.0, -4.0], [0.5, 2.0]], dtype=dtype)
    tol = testing.TOLERANCES[dtype]["elementwise"]
    assert testing.compare("y", ref.copy(), torch.from_numpy(ref), dtype)["max_abs_err"] == 0
    ours = ref.copy()
    ours[0, 1] += 4.0 * 10 * tol  # ten times the tolerance, relative to max|ref| = 4
    row = testing.compare("y", ours, ref, dtype)
    assert not row["passed"]
    assert row["max_rel_err"] == pytest.approx(10 * tol, rel=1e-3)


@pytest.mark.parametrize("ours,note", [
    (np.ones((3, 3)), "shape"),
    (np.ones((4, 3), dtype=np.float32), "returned float32"),
    (np.where(np.eye(4, 3) > 0, np.nan, 1.0), "non-finite"),
], ids=["shape", "dtype", "nan"])
def test_compare_rejects(ours, note):
    row = testing.compare("y", ours, np.ones((4, 3)), "float64")
    assert not row["passed"] and note in row["note"]


def test_values_zero_in_exact_arithmetic_are_judged_by_their_absolute_error():
    noise = np.full(3, 1e-7, dtype=np.float32)
    assert testing.compare("dx", noise, 2 * noise, "float32")["passed"]


def test_assert_close_names_the_quantity():
    with pytest.raises(AssertionError, match="dgamma"):
        testing.assert_close(np.ones(3), np.zeros(3), np.float64, what="dgamma")


def test_composed_formula_is_batch_norm(rng):
    x = 5 * rng.standard_normal((6, 3, 4, 4)) + 12
    gamma, beta, dy = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3), rng.standard_normal(x.shape)
    tensors = (torch.from_numpy(a) for a in (x, gamma, beta, dy))
    composed = testing.composed_forward_backward(*tensors)
    y, cache = bn_lib.batch_norm_forward(x, gamma, beta)
    for name, ours, ref in zip(("y", "dx", "dgamma", "dbeta"), composed,
                               (y, *bn_lib.batch_norm_backward(dy, cache))):
        testing.assert_close(ours, ref, "float64", what=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_quick_subset_passes_on_cuda():
    assert testing.run_verification(device="cuda", quick=True)["passed"]
