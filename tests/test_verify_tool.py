"""``python -m tools.verify``: reports, exit status and the CUDA fallback, on the CPU; and
what it shares with the benchmarks: the timing engine, the bytes-moved model, and an
import graph in which ``tools`` depends on ``benchmarks`` and not the other way round."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import bn_lib  # noqa: E402
from benchmarks import timing  # noqa: E402
from benchmarks.bandwidth import bytes_moved, measure_bandwidth, two_pass_ceiling  # noqa: E402
from tools import verify  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


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


def test_a_time_limit_during_the_bandwidth_keeps_the_parity_report(tmp_path, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the session's time limit stopped the command here

    monkeypatch.setattr(verify, "measure_bandwidth", killed)
    with pytest.raises(KeyboardInterrupt):
        verify.main(["--device", "cpu", "--quick", "--bandwidth", "--report",
                     str(tmp_path / "v_{device}")])
    data = json.loads((tmp_path / "v_cpu.json").read_text())
    assert data["passed"] and "bandwidth" not in data


def imported_top_level_names(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_benchmarks_never_import_tools():
    """One direction only: tools/verify.py uses benchmarks/ (timing, bandwidth, reports)."""
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        assert "tools" not in imported_top_level_names(path), path.name
    assert "benchmarks" in imported_top_level_names(ROOT / "tools" / "verify.py")


@pytest.mark.parametrize("dtype, itemsize", [("float32", 4), (np.float64, 8),
                                             ("bfloat16", 2), (torch.float16, 2)])
def test_bytes_moved_model(dtype, itemsize):
    s = 8 * 4 * 8 * 8 * itemsize  # the size of x
    assert bytes_moved((8, 4, 8, 8), dtype, "forward") == 2 * s
    assert bytes_moved((8, 4, 8, 8), dtype, "forward+backward") == 5 * s
    assert bytes_moved((8, 4, 8, 8), dtype, "forward+backward", two_pass=True) == 8 * s
    assert two_pass_ceiling("forward") == pytest.approx(2 / 3)
    assert two_pass_ceiling("forward+backward") == pytest.approx(5 / 8)


@pytest.mark.parametrize("min_time, warmup, calls", [(0, False, 3), (0, True, 4),
                                                     (1e-9, True, 5)])
def test_timing_engine_calls_warmup_sizing_and_trials(min_time, warmup, calls):
    """Warm-up call, one call to size the trials (when min_time > 0), then the trials:
    here 3 trials of one call each (a call lasts longer than 1e-9 s)."""
    made = []
    times = timing.seconds_per_call(lambda: made.append(1), trials=3, min_time=min_time,
                                    warmup=warmup)
    assert len(times) == 3 and all(t >= 0 for t in times) and len(made) == calls


def test_interleaved_rounds_rotate_the_order():
    order = []
    contenders = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = timing.interleaved(contenders, rounds=3)
    assert {name: len(ts) for name, ts in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert order == list("abc" + "abc" + "bca" + "cab")  # an untimed round, then three


def test_past_its_budget_the_bandwidth_measurement_compiles_nothing():
    bw = measure_bandwidth("cpu", shapes=[(8, 4), (16, 4)], compile="on", copy_mib=1,
                           min_time=0.001, trials=1, budget_s=0)
    assert {r["implementation"].split()[0] for r in bw["rows"]} == {"fused", "composed"}
    assert bw["notes"] == [f"torch.compile skipped for {s}: past the budget of 0 s"
                           for s in [(8, 4), (16, 4)]]
