"""benchmarks/bench_triton.py, the GPU measurement of chapter 07, run on tiny shapes.

On the CPU the Triton kernels run in the interpreter (switched on below, before triton is
first imported), so the times mean nothing; what is tested is that every implementation is
checked against float64 before it is timed, that a wrong one is flagged, and that the
report and its targets are written.
"""

import json
import os

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    # the interpreter must be on before triton's first import, or the kernels need a GPU
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed: `make test` installs "
                    "requirements-triton.txt")

import bn_triton  # noqa: E402
from benchmarks import bench_triton  # noqa: E402

pytestmark = pytest.mark.skipif(not bn_triton.INTERPRETED,
                                reason="runs the CPU path (Triton's interpreter)")
IMPLEMENTATIONS = {"fused (F.batch_norm)", "composed (separate ops)", "triton (bn_triton)"}


def test_every_implementation_is_checked_then_timed(tmp_path):
    report = bench_triton.run("cpu", shapes=[(4, 4, 3, 3)], dtypes=("float32", "bfloat16"))
    rows = report["rows"]
    assert {r["implementation"] for r in rows} == IMPLEMENTATIONS  # no compile on the CPU
    assert {(r["dtype"], r["pass"]) for r in rows} == {
        (d, p) for d in ("float32", "bfloat16") for p in ("forward", "forward+backward")}
    size = {"float32": 4 * 4 * 9 * 4, "bfloat16": 4 * 4 * 9 * 2}
    for r in rows:
        assert r["correct"], r
        assert r["rel_err_dx"] < bench_triton.CORRECT[r["dtype"]]
        assert r["seconds"] > 0 and r["fraction_of_copy"] > 0
        assert r["model_bytes"] == {"forward": 2, "forward+backward": 5}[r["pass"]] * size[
            r["dtype"]]
        assert r["two_pass_ceiling"] == pytest.approx(
            {"forward": 2 / 3, "forward+backward": 5 / 8}[r["pass"]])
    assert [v["dtype"] for v in report["verdicts"]] == ["float32", "bfloat16"]
    json_path, md_path = bench_triton.write_report(report, str(tmp_path / "triton_{device}"))
    assert json.loads(open(json_path).read())["rows"] == json.loads(json.dumps(rows))
    md = open(md_path).read()
    assert "| (4, 4, 3, 3) | float32 | triton (bn_triton) | forward+backward |" in md
    assert "## Targets: Triton forward+backward" in md


def test_a_wrong_kernel_is_flagged_and_fails_the_command(tmp_path, monkeypatch):
    right = bn_triton.batch_norm_forward

    def off_by_one_percent(*args, **kwargs):
        y, cache = right(*args, **kwargs)
        return y * 1.01, cache

    monkeypatch.setattr(bn_triton, "batch_norm_forward", off_by_one_percent)
    prefix = str(tmp_path / "r_{device}")
    status = bench_triton.main(["--device", "cpu", "--shapes", "64x4", "--dtypes",
                                "float32", "--variants", "--report", prefix])
    assert status == 1
    rows = json.loads((tmp_path / "r_cpu.json").read_text())["rows"]
    verdict = {r["implementation"]: r["correct"] for r in rows}
    assert verdict["fused (F.batch_norm)"] and not verdict["triton (bn_triton)"]
    assert {name for name in verdict if name.startswith("triton, ")} == {
        f"triton, {name}" for name, _ in bench_triton.VARIANTS}


def test_verdicts_compare_triton_with_fused():
    def row(impl, seconds, fraction):
        return {"shape": [8, 4], "dtype": "float32", "implementation": impl,
                "pass": "forward+backward", "seconds": seconds,
                "fraction_of_ceiling": fraction, "correct": True}

    (verdict,) = bench_triton.verdicts([row("fused (F.batch_norm)", 2.0, 0.4),
                                        row("triton (bn_triton)", 1.0, 0.85)])
    assert verdict["speedup_over_fused"] == 2.0
    assert verdict["faster_than_fused"] and verdict["within_80_percent_of_ceiling"]


def test_shapes_parse_and_reject_nonsense():
    assert bench_triton.parse_shape("256x64x56x56") == (256, 64, 56, 56)
    for bad in ("256", "2x0", "axb"):
        with pytest.raises(Exception, match="shape"):
            bench_triton.parse_shape(bad)


def test_cpu_without_the_interpreter_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET")
    assert bench_triton.main(["--device", "cpu"]) == 2
    assert "TRITON_INTERPRET=1" in capsys.readouterr().err


def test_past_the_budget_only_the_core_phase_runs_and_is_checkpointed():
    saved = []
    report = bench_triton.run("cpu", shapes=[(64, 4)], dtypes=("float32",), variants=True,
                              budget_s=0, checkpoint=lambda r: saved.append(len(r["rows"])))
    assert {r["implementation"] for r in report["rows"]} == IMPLEMENTATIONS
    assert report["notes"] == ["variants skipped for (64, 4) float32: past the budget of 0 s"]
    assert saved == [6] and report["complete"]


def test_graph_times_replace_eager_ones_and_a_failed_capture_is_recorded(monkeypatch):
    """The graph phase (CUDA only) re-times each correct implementation; here with the
    capture replaced, so that its bookkeeping runs on the CPU."""
    case = bench_triton.Case((64, 4), torch.float32, torch.device("cpu"), copy_gbps=10.0)
    impls = bench_triton.implementations("core", (64, 4), torch.float32, "cpu")
    for name, fns in impls.items():
        case.check_and_time(name, fns, min_time=0.001, trials=1, say=print)
    captured = []

    def fake_graph(calls, device, min_time, trials):
        captured.append(len(calls))
        if len(captured) == 3:
            raise RuntimeError("operation not permitted when stream is capturing")
        return 1e-3

    monkeypatch.setattr(bench_triton, "time_graph", fake_graph)
    assert case.time_graphs(0.001, 1, say=print)
    rows = [row for _, rows in case.timed.values() for row in rows]
    assert len(captured) == len(rows) == 6
    failed = [r for r in rows if "graph_error" in r]
    assert len(failed) == 1 and failed[0]["timing"] == "eager"
    for r in rows:
        if r is not failed[0]:
            assert r["timing"] == "graph" and r["seconds"] == 1e-3
            assert r["fraction_of_copy"] == pytest.approx(r["model_bytes"] / 1e-3 / 1e10)
