"""bn_lib.testing, the PyTorch oracle: its comparison and its checks can fail, and its
torch twins compute what the bn_lib layers compute.

A deliberately wrong implementation, a NaN, a wrong shape or a wrong dtype is reported
as a failure; the composed torch formula that chapter 07 times is Batch Normalization.
"""

import types

import numpy as np
import pytest

import bn_lib
from bn_lib import testing, verification

torch = pytest.importorskip("torch")


def test_quick_subset_passes_on_cpu():
    result = verification.run_verification(device="cpu", quick=True)
    assert result["passed"], [r for r in result["checks"] if not r["passed"]]
    assert {tuple(r["shape"]) for r in result["checks"]} == set(verification.QUICK_SHAPES)
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


def failed_checks(impl, dtypes=verification.DTYPES):
    result = verification.run_verification("cpu", shapes=[(32, 16)], dtypes=dtypes,
                                      implementation=impl)
    return {(r["dtype"], r["check"]) for r in result["checks"] if not r["passed"]}


def test_biased_running_variance_is_caught():
    # the running variance itself, and the eval mode that normalizes with it
    assert failed_checks(implementation(BatchNorm=BiasedRunningVar)) == {
        (dtype, check) for dtype in verification.DTYPES
        for check in ("running_var (momentum 0.1)", "running_var (cumulative)",
                      "eval forward y", "eval backward dx")}


def test_backward_off_by_a_tenth_of_a_percent_is_caught():
    def backward(dy, cache):
        dx, dgamma, dbeta = bn_lib.batch_norm_backward(dy, cache)
        return dx * (1 + 1e-3), dgamma, dbeta

    assert failed_checks(implementation(batch_norm_backward=backward)) == {
        (dtype, "train backward dx") for dtype in verification.DTYPES}


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
    assert row["err_over_max_ref"] == pytest.approx(10 * tol, rel=1e-3)
    assert row["scaled_err"] == testing.scaled_error(ours, ref) == row["err_over_max_ref"]


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
    row = testing.compare("dx", noise, 2 * noise, "float32")
    assert row["passed"] and row["err_over_max_ref"] == pytest.approx(0.5)


@pytest.mark.parametrize("dtype,tolerance", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3)])
def test_half_precision_tensors_are_judged_by_their_row(dtype, tolerance):
    ref = torch.linspace(-3, 3, 7, dtype=torch.float64)
    ours = ref.to(dtype)  # rounded on store, as a kernel's output is
    assert testing.assert_close(ours, ref, dtype)["tolerance"] == tolerance
    with pytest.raises(AssertionError, match=f"returned {str(dtype)[6:]} for float64"):
        testing.assert_close(ours, ref, "float64")
    with pytest.raises(AssertionError, match="scaled error"):
        testing.assert_close((ref * (1 + 10 * tolerance)).to(dtype), ref, dtype)


def test_assert_close_names_the_quantity():
    with pytest.raises(AssertionError, match="dgamma"):
        testing.assert_close(np.ones(3), np.zeros(3), np.float64, what="dgamma")


def test_composed_formula_is_batch_norm(rng):
    x = 5 * rng.standard_normal((6, 3, 4, 4)) + 12
    gamma, beta, dy = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3), rng.standard_normal(x.shape)
    tensors = (torch.from_numpy(a) for a in (x, gamma, beta, dy))
    composed = verification.composed_forward_backward(*tensors)
    y, cache = bn_lib.batch_norm_forward(x, gamma, beta)
    for name, ours, ref in zip(("y", "dx", "dgamma", "dbeta"), composed,
                               (y, *bn_lib.batch_norm_backward(dy, cache))):
        testing.assert_close(ours, ref, "float64", what=name)


@pytest.mark.parametrize("ndim,name", [(2, "BatchNorm1d"), (3, "BatchNorm1d"),
                                       (4, "BatchNorm2d"), (5, "BatchNorm3d")])
def test_torch_batch_norm_picks_the_class_for_the_input(ndim, name):
    layer = testing.torch_batch_norm(ndim, 3, eps=1e-3, momentum=None, affine=False)
    assert type(layer).__name__ == name and layer.weight is None
    assert layer.eps == 1e-3 and layer.momentum is None
    assert layer.running_mean.dtype == torch.float64
    with pytest.raises(ValueError, match="2 to 5 axes"):
        testing.torch_batch_norm(1, 3)


def test_torch_twin_of_a_convolutional_network(rng):
    model = bn_lib.Sequential(bn_lib.Conv2d(1, 3, 3, padding=1, rng=1), bn_lib.BatchNorm(3),
                              bn_lib.ReLU(), bn_lib.Flatten(), bn_lib.Linear(3 * 4 * 4, 5),
                              bn_lib.BatchNorm(5), bn_lib.Sigmoid())
    x = rng.standard_normal((6, 1, 4, 4))
    model.forward(x)  # running statistics and the counter off their start
    twin = testing.torch_twin(model)
    assert [type(t).__name__ for t in twin][1::4] == ["BatchNorm2d", "BatchNorm1d"]
    assert int(twin[1].num_batches_tracked) == 1 and twin.training
    testing.assert_close(model.forward(x), twin(testing.to_torch(x)), "float64", what="train y")
    model.eval()
    twin = testing.torch_twin(model)
    assert not twin.training
    testing.assert_close(model.forward(x), twin(testing.to_torch(x)), "float64", what="eval y")


def test_torch_twin_refuses_what_it_cannot_copy():
    with pytest.raises(TypeError, match="no PyTorch counterpart for BatchRenorm"):
        testing.torch_twin(bn_lib.Sequential(bn_lib.BatchRenorm(3)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_quick_subset_passes_on_cuda():
    assert verification.run_verification(device="cuda", quick=True)["passed"]
