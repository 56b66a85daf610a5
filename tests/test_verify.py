"""bn_lib.verify, the re-verification command (chapter 07), tested on the CPU.

The quick subset passes; a deliberately wrong implementation, a NaN, a wrong shape or a
wrong dtype is reported as a failure (so the check can fail); the command line exits 1
on a failure, falls back to the CPU (or exits 2 with --require-device) when CUDA is
missing, and writes both report files.
"""

import json
import subprocess
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
import torch

import bn_lib
from bn_lib import verify


@pytest.fixture(autouse=True)
def one_torch_thread():
    # tiny tensors: a second thread only adds synchronisation (and, on a busy machine,
    # spinning); restore the setting for the other test modules
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_bn_lib_does_not_import_verify_or_torch():
    # bn_lib imports NumPy only; verify (and with it torch) is imported by name
    code = "import sys, bn_lib; print('torch' in sys.modules, 'bn_lib.verify' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_quick_subset_passes_on_cpu():
    report = verify.run_verification(device="cpu", quick=True)
    assert report["passed"], verify.format_checks(report, failed_only=True)
    assert report["device"] == "cpu" and report["fallback"] is None
    shapes = {tuple(r["shape"]) for r in report["checks"]}
    assert shapes == set(verify.QUICK_SHAPES)
    assert {r["dtype"] for r in report["checks"]} == {"float32", "float64"}
    names = {r["check"] for r in report["checks"]}
    for expected in ("train forward y", "train backward dx", "train backward dgamma",
                     "train backward dbeta", "running_mean (momentum 0.1)",
                     "running_var (cumulative)", "eval forward y", "eval backward dx"):
        assert expected in names
    for key in ("device_name", "torch_version", "cuda_version", "numpy_version"):
        assert key in report
    # float64 agrees far inside its tolerance: the tolerance is not what makes it pass
    worst64 = max(r["scaled_err"] for r in report["checks"] if r["dtype"] == "float64")
    assert worst64 < 1e-12


def _biased_running_var_bn():
    class BiasedVar(bn_lib.BatchNorm):
        """A classic bug: the running variance updated with the biased batch variance."""

        def _update_running_stats(self, cache, m):
            # undo the factor m/(m-1) the parent applies
            super()._update_running_stats(replace(cache, var=cache.var * (m - 1) / m), m)

    return types.SimpleNamespace(batch_norm_forward=bn_lib.batch_norm_forward,
                                 batch_norm_backward=bn_lib.batch_norm_backward,
                                 BatchNorm=BiasedVar, __name__="biased running var")


def test_wrong_implementation_is_caught():
    report = verify.run_verification(device="cpu", shapes=[(32, 16)],
                                     implementation=_biased_running_var_bn())
    assert not report["passed"]
    failed = {(r["dtype"], r["check"]) for r in report["checks"] if not r["passed"]}
    for dtype in ("float32", "float64"):
        assert (dtype, "running_var (momentum 0.1)") in failed
        assert (dtype, "running_var (cumulative)") in failed
        assert (dtype, "train forward y") not in failed
    assert report["implementation"] == "biased running var"


def test_wrong_backward_is_caught():
    def backward(dy, cache):
        dx, dgamma, dbeta = bn_lib.batch_norm_backward(dy, cache)
        return dx * (1 + 1e-3), dgamma, dbeta  # 0.1 % off: above both tolerances

    impl = types.SimpleNamespace(batch_norm_forward=bn_lib.batch_norm_forward,
                                 batch_norm_backward=backward, BatchNorm=bn_lib.BatchNorm)
    report = verify.run_verification(device="cpu", shapes=[(32, 16)], implementation=impl)
    failed = {r["check"] for r in report["checks"] if not r["passed"]}
    assert failed == {"train backward dx"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compare_errors_and_tolerance(dtype):
    ref = np.array([[3.0, -4.0], [0.5, 2.0]], dtype=dtype)
    tol = verify.TOLERANCES[dtype]["elementwise"]
    row = verify.compare("y", ref.copy(), torch.from_numpy(ref), dtype, "elementwise")
    assert row["passed"] and row["max_abs_err"] == 0.0
    ours = ref.copy()
    ours[0, 1] += 4.0 * 10 * tol  # ten times the tolerance, relative to max|ref| = 4
    row = verify.compare("y", ours, ref, dtype, "elementwise")
    assert not row["passed"]
    assert row["max_rel_err"] == pytest.approx(10 * tol, rel=1e-3)
    assert row["max_abs_err"] == pytest.approx(40 * tol, rel=1e-3)


def test_compare_rejects_nan_shape_and_dtype():
    ref = np.ones((4, 3))
    bad = ref.copy()
    bad[1, 2] = np.nan
    assert not verify.compare("y", bad, ref, "float64", "elementwise")["passed"]
    assert not verify.compare("y", ref[:3], ref, "float64", "elementwise")["passed"]
    row = verify.compare("y", ref, ref.astype(np.float32), "float32", "elementwise")
    assert not row["passed"] and "float64" in row["note"]
    # values that are zero in exact arithmetic are judged by their absolute error
    noise = np.full(3, 1e-7, dtype=np.float32)
    assert verify.compare("dx", noise, 2 * noise, "float32", "elementwise")["passed"]


def test_cli_writes_reports_and_exit_status(tmp_path, capsys):
    prefix = str(tmp_path / "out" / "verification_{device}")
    assert verify.main(["--device", "cpu", "--quick", "--report", prefix]) == 0
    data = json.loads((tmp_path / "out" / "verification_cpu.json").read_text())
    assert data["passed"] and data["command"].startswith("python -m bn_lib.verify")
    md = (tmp_path / "out" / "verification_cpu.md").read_text()
    assert "PASSED" in md and "| (2, 5) | float64 | train forward y |" in md
    assert "PASSED" in capsys.readouterr().out


def test_cli_exit_status_1_on_failure(tmp_path, monkeypatch, capsys):
    right_forward = bn_lib.batch_norm_forward

    def wrong_forward(x, gamma, beta, eps=1e-5):
        return right_forward(x, gamma, beta, eps=10 * eps)

    monkeypatch.setattr(bn_lib, "batch_norm_forward", wrong_forward)
    status = verify.main(["--device", "cpu", "--quick", "--report", str(tmp_path / "r")])
    assert status == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert not data["passed"] and data["n_failed"] > 0
    assert "FAILED" in capsys.readouterr().out


def test_nan_fails_and_report_is_strict_json(tmp_path):
    def nan_forward(x, gamma, beta, eps=1e-5):
        y, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps)
        y[0, 0] = np.nan
        return y, cache

    impl = types.SimpleNamespace(batch_norm_forward=nan_forward,
                                 batch_norm_backward=bn_lib.batch_norm_backward,
                                 BatchNorm=bn_lib.BatchNorm)
    report = verify.run_verification(device="cpu", shapes=[(4, 3)], dtypes=("float64",),
                                     implementation=impl)
    bad = [r for r in report["checks"] if not r["passed"]]
    assert [r["check"] for r in bad] == ["train forward y"]
    assert bad[0]["note"] == "non-finite values"
    json_path, md_path = verify.write_report(report, str(tmp_path / "nan"))

    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    data = json.loads(open(json_path).read(), parse_constant=reject)
    assert data["checks"][0]["max_abs_err"] == "nan"
    assert "**NO** (non-finite values)" in open(md_path).read()


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback without CUDA")
def test_cuda_request_without_cuda(tmp_path, capsys):
    assert verify.main(["--device", "cuda", "--quick", "--report",
                        str(tmp_path / "v_{device}")]) == 0
    data = json.loads((tmp_path / "v_cpu.json").read_text())
    assert data["requested_device"] == "cuda" and data["device"] == "cpu"
    assert "CUDA was requested" in data["fallback"]
    assert "CUDA was requested" in capsys.readouterr().out
    assert verify.main(["--device", "cuda", "--quick", "--require-device"]) == 2


def test_bandwidth_measurement_runs():
    bw = verify.measure_bandwidth("cpu", shapes=[(8, 4, 8, 8)], compile="off", copy_mib=1,
                                  min_time=0.002, trials=2)
    assert bw["copy_gbps"] > 0 and bw["compile"]["enabled"] is False
    rows = bw["rows"]
    assert {(r["implementation"].split()[0], r["pass"]) for r in rows} == {
        (impl, p) for impl in ("fused", "composed") for p in ("forward", "forward+backward")}
    size = 8 * 4 * 8 * 8 * 4
    for r in rows:
        assert r["fraction_of_copy"] > 0
        assert r["model_bytes"] == (2 if r["pass"] == "forward" else 5) * size
        assert r["composed_vs_fused_rel_err"] < 1e-5  # the timed formula is BN


def test_composed_formula_matches_bn_lib():
    rng = np.random.default_rng(0)
    x = 5 * rng.standard_normal((6, 3, 4, 4)) + 12
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    dy = rng.standard_normal(x.shape)
    y, dx, dgamma, dbeta = verify.composed_forward_backward(
        *(torch.from_numpy(a) for a in (x, gamma, beta, dy)))
    y_ref, cache = bn_lib.batch_norm_forward(x, gamma, beta)
    dx_ref, dgamma_ref, dbeta_ref = bn_lib.batch_norm_backward(dy, cache)
    for ours, ref in ((y, y_ref), (dx, dx_ref), (dgamma, dgamma_ref), (dbeta, dbeta_ref)):
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_quick_subset_passes_on_cuda():
    report = verify.run_verification(device="cuda", quick=True)
    assert report["device"] == "cuda" and report["passed"]
