"""``python -m tools.verify``: reports, exit status and the CUDA fallback, on the CPU."""

import json

import numpy as np
import pytest
import torch

import bn_lib
from benchmarks.bandwidth import measure_bandwidth
from tools import verify


def test_writes_both_reports_and_exits_0(tmp_path, capsys):
    prefix = str(tmp_path / "out" / "verification_{device}")
    assert verify.main(["--device", "cpu", "--quick", "--report", prefix]) == 0
    data = json.loads((tmp_path / "out" / "verification_cpu.json").read_text())
    assert data["passed"] and data["command"].startswith("python -m tools.verify")
    assert "torch_version" in data and "device_name" in data
    md = (tmp_path / "out" / "verification_cpu.md").read_text()
    assert "PASSED" in md and "| (2, 5) | float64 | train forward y |" in md
    assert "PASSED" in capsys.readouterr().out


def test_exits_1_and_writes_strict_json_on_failure(tmp_path, monkeypatch):
    right_forward = bn_lib.batch_norm_forward

    def nan_forward(x, gamma, beta, eps=1e-5):
        y, cache = right_forward(x, gamma, beta, eps)
        y[0, 0] = np.nan
        return y, cache

    monkeypatch.setattr(bn_lib, "batch_norm_forward", nan_forward)
    assert verify.main(["--device", "cpu", "--quick", "--report", str(tmp_path / "r")]) == 1

    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    data = json.loads((tmp_path / "r.json").read_text(), parse_constant=reject)
    assert not data["passed"] and data["n_failed"] > 0
    assert "**NO** (non-finite values)" in (tmp_path / "r.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the fallback without CUDA")
def test_cuda_request_without_cuda_falls_back_or_exits_2(tmp_path):
    assert verify.main(["--device", "cuda", "--quick", "--report",
                        str(tmp_path / "v_{device}")]) == 0
    data = json.loads((tmp_path / "v_cpu.json").read_text())
    assert data["requested_device"] == "cuda" and "CUDA was requested" in data["fallback"]
    assert verify.main(["--device", "cuda", "--quick", "--require-device"]) == 2


def test_bandwidth_measurement_times_batch_norm():
    bw = measure_bandwidth("cpu", shapes=[(8, 4, 8, 8)], compile="off", copy_mib=1,
                           min_time=0.002, trials=2)
    assert {(r["implementation"].split()[0], r["pass"]) for r in bw["rows"]} == {
        (impl, p) for impl in ("fused", "composed") for p in ("forward", "forward+backward")}
    for r in bw["rows"]:
        assert r["model_bytes"] == (2 if r["pass"] == "forward" else 5) * 8 * 4 * 8 * 8 * 4
        assert r["composed_vs_fused_rel_err"] < 1e-5  # the timed formula is BN
