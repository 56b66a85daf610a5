"""Batch Normalization in Triton against PyTorch, as fractions of the copy bandwidth
(chapter 07, section "Batch Normalization in Triton").

    python -m benchmarks.bench_triton [--device auto|cpu|cuda] [--quick]
                                      [--shapes 256x64x56x56 ...] [--dtypes float32 bfloat16]
                                      [--compile auto|on|off] [--variants]
                                      [--report PREFIX] [--budget-s SECONDS]

For each shape and dtype it times, forward and forward+backward:

* ``fused``: PyTorch's ``F.batch_norm`` (with running statistics, as a layer updates them),
  backward through autograd;
* ``composed``: the formula as separate tensor operations (``bn_lib.testing``);
* ``compiled``: that formula under ``torch.compile`` (CUDA only by default);
* ``triton``: bn_triton's four kernels (two passes forward, two backward), with running
  statistics; with ``--variants`` also other tile sizes and warp counts.

Each implementation is first checked against ``F.batch_norm`` and autograd in float64 on
the same input: the norm-wise relative error ||out - ref|| / ||ref|| of y and dx is in
the report, and a time is only worth reading next to an error of rounding size.

The bytes-moved model (chapter 07, eq. `eq-07-bytes`) is ``benchmarks/bandwidth.py``'s: a
pass's fraction of the copy bandwidth is (model bytes / time) over that of
``dst.copy_(src)`` on a 256 MiB buffer of the same dtype, in the same run, and its fraction
of the two-pass ceiling divides that by 2/3 (forward) or 5/8 (forward+backward), a true
ceiling only for tensors that do not fit in the L2 cache (the second pass over a smaller
one can be served from the cache; the report marks such shapes).

Timing on CUDA: CUDA events; each implementation is captured in a CUDA graph and replayed
(launch overhead out, the GPU's own time in), and also timed as plain launches ("eager");
both are the median of 5 trials. Inputs rotate over enough copies to exceed three times
the L2 cache, so one call does not find the previous call's data in it. On the CPU the
kernels run in Triton's interpreter (set TRITON_INTERPRET=1 first): the script then runs
tiny shapes to test itself, and its times say nothing about a GPU.

Writes PREFIX.json and PREFIX.md (default ``reports/triton_{device}``). Needs torch,
triton, numpy and this repository, nothing else: run it from the repository root as
``python -m benchmarks.bench_triton``. Times come from ``benchmarks/timing.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time

from benchmarks.bandwidth import (
    MODEL,
    PASSES,
    bytes_moved,
    copy_bandwidth,
    describe_model,
    parse_shape,
    two_pass_ceiling,
)
from benchmarks.report import write_report as write_files
from benchmarks.timing import seconds_per_call, synchronize

__all__ = ["SHAPES", "QUICK_SHAPES", "run", "render_markdown", "write_report", "main",
           "time_eager", "time_graph", "verdicts"]

SHAPES = [(256, 64, 56, 56), (128, 256, 28, 28), (64, 512, 14, 14)]
QUICK_SHAPES = [(4, 8, 6, 6), (64, 16)]
DTYPES = ("float32", "bfloat16")
EPS = 1e-5
TRIALS = 5
# norm-wise relative error that counts as "computes BN": rounding of float32 sums is far
# below 1e-4; bfloat16 outputs are rounded to 8 significant bits (up to 2**-8 relative),
# and the composed formula also keeps its intermediates in bfloat16 (4e-3 on the CPU)
CORRECT = {"float32": 1e-4, "bfloat16": 2e-2}
VARIANTS = [  # (name, launch_config keyword arguments), tried with --variants
    ("tile 4 KiB", dict(tile_bytes=4096)),
    ("tile 16 KiB, 8 warps", dict(tile_bytes=16384, num_warps=8)),
    ("4 programs per SM", dict(programs_per_sm=4)),
]


# ----------------------------------------------------------------------------- timing


def _median_seconds(run, device, calls_per_run, min_time, trials):
    import statistics

    # on CUDA the error check has already compiled the kernels: warm the allocator and
    # caches; on the CPU the interpreter's times mean nothing, so spare it the extra call
    return statistics.median(seconds_per_call(
        run, device, trials=trials, min_time=min_time, calls_per_run=calls_per_run,
        warmup=device.type == "cuda"))


def time_eager(calls, device, min_time, trials=TRIALS):
    """Seconds per call, launching the calls (one per input copy) one after another."""
    def run():
        for call in calls:
            call()
    return _median_seconds(run, device, len(calls), min_time, trials)


def time_graph(calls, device, min_time, trials=TRIALS):
    """Seconds per call, with all calls captured in one CUDA graph and replayed."""
    import torch

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):  # warm-up off the capture stream, as PyTorch asks
        for _ in range(2):
            for call in calls:
                call()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    return _median_seconds(graph.replay, device, len(calls), min_time, trials)


# ----------------------------------------------------------------------------- cases


def _relative_error(ours, ref):
    ours, ref = ours.detach().double(), ref.detach().double()
    return float(((ours - ref).norm() / ref.norm()).cpu())


def _inputs(shape, dtype, device, seed):
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    c = shape[1]
    x = (3 * torch.randn(shape, generator=g, device=device) + 1).to(dtype)
    dy = torch.randn(shape, generator=g, device=device).to(dtype)
    gamma = (torch.rand(c, generator=g, device=device) + 0.5).to(dtype)
    beta = torch.randn(c, generator=g, device=device).to(dtype)
    return x, dy, gamma, beta


def implementations(phase, shape, dtype, device):
    """``{name: (forward, forward_backward)}`` of one phase of the run: "core" (fused,
    composed, triton), "compiled" or "variants". Each function takes ``(x, dy, gamma,
    beta, running)`` and returns y, or ``(y, dx)``."""
    import torch
    import torch.nn.functional as F

    import bn_triton
    from bn_lib.verification import composed_forward, composed_forward_backward

    def fused_forward(x, dy, gamma, beta, running):
        return F.batch_norm(x, *running, gamma, beta, training=True, eps=EPS)

    def fused_forward_backward(x, dy, gamma, beta, running):
        x, gamma, beta = (t.detach().requires_grad_(True) for t in (x, gamma, beta))
        y = F.batch_norm(x, *running, gamma, beta, training=True, eps=EPS)
        return y, torch.autograd.grad(y, (x, gamma, beta), dy)[0]

    def composed_fwd(x, dy, gamma, beta, running):
        return composed_forward(x, gamma, beta, EPS)[0]

    def composed_fwd_bwd(x, dy, gamma, beta, running):
        y, dx, _, _ = composed_forward_backward(x, gamma, beta, dy, EPS)
        return y, dx

    def triton_pair(config):
        def forward(x, dy, gamma, beta, running):
            return bn_triton.batch_norm_forward(x, gamma, beta, EPS, *running,
                                                config=config)[0]

        def forward_backward(x, dy, gamma, beta, running):
            y, cache = bn_triton.batch_norm_forward(x, gamma, beta, EPS, *running,
                                                    config=config)
            return y, bn_triton.batch_norm_backward(dy, cache)[0]
        return forward, forward_backward

    if phase == "core":
        return {"fused (F.batch_norm)": (fused_forward, fused_forward_backward),
                "composed (separate ops)": (composed_fwd, composed_fwd_bwd),
                "triton (bn_triton)": triton_pair(None)}
    if phase == "compiled":
        return {"compiled (torch.compile)": (torch.compile(composed_fwd, dynamic=False),
                                             torch.compile(composed_fwd_bwd, dynamic=False))}
    return {f"triton, {name}": triton_pair(bn_triton.launch_config(shape, dtype, device,
                                                                   **kwargs))
            for name, kwargs in VARIANTS}


def _l2_bytes(device):
    import torch

    if device.type != "cuda":
        return None
    return getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None)


class Case:
    """One (shape, dtype): its input copies, the float64 reference, and the timed
    implementations with their rows (one per pass), kept for the graph phase."""

    def __init__(self, shape, dtype, device, copy_gbps):
        import torch
        import torch.nn.functional as F

        self.shape, self.dtype, self.device, self.copy_gbps = shape, dtype, device, copy_gbps
        self.size = math.prod(shape) * dtype.itemsize
        l2 = _l2_bytes(device)
        self.fits_in_l2 = None if l2 is None else self.size <= l2
        # enough copies that one call does not find the previous call's inputs in the L2
        copies = 1 if l2 is None else max(1, min(8, math.ceil(3 * l2 / (2 * self.size))))
        self.sets = [_inputs(shape, dtype, device, seed) for seed in range(copies)]
        c = shape[1]
        self.running = (torch.zeros(c, dtype=dtype, device=device),
                        torch.ones(c, dtype=dtype, device=device))
        x, dy, gamma, beta = self.sets[0]
        xr, gr, br = (t.detach().double().requires_grad_(True) for t in (x, gamma, beta))
        y_ref = F.batch_norm(xr, None, None, gr, br, training=True, eps=EPS)
        self.dx_ref = torch.autograd.grad(y_ref, (xr,), dy.double())[0].detach()
        self.y_ref = y_ref.detach()
        self.timed = {}  # name -> (fns, rows)

    @property
    def dtype_name(self):
        return str(self.dtype).replace("torch.", "")

    def label(self, name):
        return f"  {str(self.shape):<20}{self.dtype_name:<10}{name:<30}"

    def check_and_time(self, name, fns, min_time, trials, say):
        """Check one implementation against float64, then time both passes as plain
        launches; returns its two rows (or two rows with the error)."""
        import torch

        base = {"shape": list(self.shape), "dtype": self.dtype_name, "implementation": name,
                "input_copies": len(self.sets), "fits_in_l2": self.fits_in_l2}
        x, dy, gamma, beta = self.sets[0]
        try:
            t0 = time.perf_counter()
            c = self.shape[1]
            scratch = [torch.zeros(c, dtype=self.dtype, device=self.device),
                       torch.ones(c, dtype=self.dtype, device=self.device)]
            y = fns[0](x, dy, gamma, beta, scratch)
            y2, dx = fns[1](x, dy, gamma, beta, scratch)
            errors = {"rel_err_y": _relative_error(y, self.y_ref),
                      "rel_err_y_fwd_bwd": _relative_error(y2, self.y_ref),
                      "rel_err_dx": _relative_error(dx, self.dx_ref)}
            first_call_s = time.perf_counter() - t0
            del y, y2, dx
        except Exception as exc:  # noqa: BLE001 - a failure is a result, not a crash
            say(self.label(name) + f"failed: {_short(exc)}")
            return [{**base, "pass": which, "error": _short(exc)} for which in PASSES]
        correct = max(errors.values()) <= CORRECT[self.dtype_name]
        rows = []
        for which, fn in zip(PASSES, fns):
            row = {**base, "pass": which, **errors, "correct": correct,
                   "first_call_s": first_call_s,
                   "model_bytes": bytes_moved(self.shape, self.dtype, which),
                   "two_pass_ceiling": two_pass_ceiling(which)}
            row["seconds_eager"] = time_eager(self.calls(fn), self.device, min_time, trials)
            self._headline(row)
            rows.append(row)
            say(self.label(name) + f"{which:<18}{row['seconds'] * 1e6:10.1f} us "
                f"{row['fraction_of_copy']:7.1%} of copy (eager)"
                + ("" if correct else "  WRONG: " + json.dumps(errors)))
        self.timed[name] = (fns, rows)
        return rows

    def time_graphs(self, min_time, trials, say):
        """Re-time every correct implementation not yet so timed as a replayed CUDA graph.
        Returns False when the device no longer works after a failed capture."""
        import torch

        for name, (fns, rows) in self.timed.items():
            for fn, row in zip(fns, rows):
                if not row["correct"] or "seconds_graph" in row or "graph_error" in row:
                    continue
                try:
                    row["seconds_graph"] = time_graph(self.calls(fn), self.device, min_time,
                                                      trials)
                except Exception as exc:  # noqa: BLE001 - e.g. an op that refuses capture
                    row["graph_error"] = _short(exc)
                    say(self.label(name) + f"{row['pass']:<18}graph capture failed: "
                        f"{row['graph_error']}")
                    try:  # does the device still work?
                        torch.ones(1, device=self.device).sum().item()
                        synchronize(self.device)
                    except Exception:  # noqa: BLE001
                        return False
                    continue
                self._headline(row)
                say(self.label(name) + f"{row['pass']:<18}{row['seconds'] * 1e6:10.1f} us "
                    f"{row['fraction_of_copy']:7.1%} of copy (graph)")
        return True

    def calls(self, fn):
        return [lambda s=s: fn(*s, self.running) for s in self.sets]

    def _headline(self, row):
        """The time the report leads with: graph replay when there is one, else eager."""
        row["timing"] = "graph" if "seconds_graph" in row else "eager"
        row["seconds"] = row.get("seconds_graph", row["seconds_eager"])
        row["gbps"] = row["model_bytes"] / row["seconds"] / 1e9
        row["fraction_of_copy"] = row["gbps"] / self.copy_gbps
        row["fraction_of_ceiling"] = row["fraction_of_copy"] / row["two_pass_ceiling"]


def _short(exc):
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def verdicts(rows):
    """Per (shape, dtype): the Triton forward+backward against PyTorch's fused one and
    against 80% of the two-pass ceiling (the targets of issue 17)."""
    timed = {(tuple(r["shape"]), r["dtype"], r["implementation"], r["pass"]): r
             for r in rows if "seconds" in r}
    out = []
    for shape, dtype in dict.fromkeys((tuple(r["shape"]), r["dtype"]) for r in rows):
        fused = timed.get((shape, dtype, "fused (F.batch_norm)", "forward+backward"))
        ours = timed.get((shape, dtype, "triton (bn_triton)", "forward+backward"))
        if not (fused and ours):
            continue
        out.append({"shape": list(shape), "dtype": dtype,
                    "speedup_over_fused": fused["seconds"] / ours["seconds"],
                    "fraction_of_ceiling": ours["fraction_of_ceiling"],
                    "faster_than_fused": ours["seconds"] < fused["seconds"],
                    "within_80_percent_of_ceiling": ours["fraction_of_ceiling"] >= 0.8,
                    "correct": ours["correct"]})
    return out


# ----------------------------------------------------------------------------- report


def environment(device):
    import numpy as np
    import torch
    import triton

    import bn_triton

    info = {"device": device.type, "torch_version": torch.__version__,
            "cuda_version": torch.version.cuda, "triton_version": triton.__version__,
            "numpy_version": np.__version__, "python_version": platform.python_version(),
            "platform": platform.platform(), "triton_interpreted": bn_triton.INTERPRETED}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, multiprocessors=props.multi_processor_count,
                    l2_cache_mib=round(_l2_bytes(device) / 2**20, 1)
                    if _l2_bytes(device) else None,
                    device_memory_gib=round(props.total_memory / 2**30, 1),
                    compute_capability=f"{props.major}.{props.minor}")
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def run(device="auto", shapes=None, dtypes=DTYPES, compile="auto", variants=False,
        quick=False, budget_s=None, progress=None, checkpoint=None):
    """The whole measurement, as a report dict.

    Phases, each over every (dtype, shape): fused, composed and Triton; then
    ``torch.compile`` (CUDA by default: compiling takes seconds per graph); then, with
    ``variants``, other launch configurations. Each set is timed as plain launches, then,
    on CUDA, as replayed CUDA graphs (a failed capture is recorded; if it leaves the device
    unusable, graph timing stops). Once ``budget_s`` seconds have passed, the phases after
    the first two are skipped, so the first results survive a short time limit, and
    ``checkpoint(report)`` is called after every case.
    """
    import torch

    say = progress or (lambda line: None)
    start = time.perf_counter()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    cuda = device.type == "cuda"
    shapes = [tuple(s) for s in (shapes or (QUICK_SHAPES if quick or not cuda else SHAPES))]
    use_compile = compile == "on" or (compile == "auto" and cuda)
    min_time = 0.05 if cuda and not quick else 0.002
    trials = TRIALS if cuda else 1  # the interpreter's times mean nothing: run once
    copy_mib = 256 if cuda and not quick else 4
    report = {"schema": 1, **environment(device),
              "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
                  "%Y-%m-%dT%H:%M:%SZ"),
              "timing": (f"CUDA graph replay (eager launches also recorded), CUDA events, "
                         f"median of {TRIALS} trials" if cuda else
                         "time.perf_counter, one trial (Triton interpreted: not GPU "
                         "speeds)"),
              "model": MODEL,
              "compile": use_compile, "notes": [], "copy_mib": copy_mib, "copy_gbps": {},
              "rows": [], "complete": False}
    for dtype_name in dtypes:
        gbps = copy_bandwidth(device, getattr(torch, dtype_name), copy_mib, min_time)
        report["copy_gbps"][dtype_name] = gbps
        say(f"copy bandwidth ({dtype_name}, {copy_mib} MiB): {gbps:.1f} GB/s")
    # each set of implementations timed as plain launches, then (CUDA) as graph replays
    timed_sets = ["core"] + ["compiled"] * use_compile + ["variants"] * bool(variants)
    phases = [phase for name in timed_sets for phase in ((name, "graphs") if cuda else (name,))]
    if use_compile:  # one compiled entry per case, all kept for the graph phase
        import torch._dynamo

        for knob in ("cache_size_limit", "recompile_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 64)
    cases = {}
    graphs_work = True
    for k, phase in enumerate(phases):
        for dtype_name in dtypes:
            for shape in shapes:
                if phase == "graphs" and not graphs_work:
                    continue
                essential = phase == "core" or (k == 1 and phase == "graphs")
                if not essential and budget_s is not None and (
                        time.perf_counter() - start > budget_s):
                    report["notes"].append(f"{phase} skipped for {shape} {dtype_name}: "
                                           f"past the budget of {budget_s:g} s")
                    continue
                key = (shape, dtype_name)
                if key not in cases:
                    torch.manual_seed(0)
                    cases[key] = Case(shape, getattr(torch, dtype_name), device,
                                      report["copy_gbps"][dtype_name])
                case = cases[key]
                if phase == "graphs":
                    graphs_work = case.time_graphs(min_time, trials, say)
                    if not graphs_work:
                        report["notes"].append("a failed graph capture broke the device: "
                                               "graph timing stopped")
                else:
                    for name, fns in implementations(phase, shape, case.dtype,
                                                     device).items():
                        report["rows"] += case.check_and_time(name, fns, min_time, trials,
                                                              say)
                report["verdicts"] = verdicts(report["rows"])
                report["elapsed_s"] = round(time.perf_counter() - start, 1)
                if checkpoint:
                    checkpoint(report)
    order = {(tuple(s), d): k for k, (d, s) in enumerate(
        (d, s) for d in dtypes for s in shapes)}
    report["rows"].sort(key=lambda r: order[(tuple(r["shape"]), r["dtype"])])  # stable
    report["verdicts"] = verdicts(report["rows"])
    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    report["complete"] = True
    return report


def render_markdown(report):
    out = [f"# Batch Normalization in Triton against PyTorch on {report['device_name']}", "",
           f"Made by `{report.get('command', 'python -m benchmarks.bench_triton')}` on "
           f"{report['created_utc']} in {report['elapsed_s']} s"
           + ("" if report["complete"] else " (**incomplete**: stopped before the end)")
           + f". Timing: {report['timing']}.", "",
           "| environment | |", "|---|---|"]
    for key in ("device", "device_name", "multiprocessors", "l2_cache_mib",
                "compute_capability", "torch_version", "cuda_version", "triton_version",
                "triton_interpreted", "python_version"):
        if key in report:
            out.append(f"| {key} | {report[key]} |")
    out += ["", f"Copy bandwidth (read + write, {report['copy_mib']} MiB): " + ", ".join(
        f"{d} {g:.1f} GB/s" for d, g in report["copy_gbps"].items()), "",
        describe_model() + " The ceiling holds for tensors larger than the L2 cache.", "",
        "| shape | dtype | implementation | pass | time (us) | eager (us) | fraction of copy "
        "| of two-pass ceiling | rel. error y, dx | fits in L2 |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|"]
    for r in report["rows"]:
        head = f"| {tuple(r['shape'])} | {r['dtype']} | {r['implementation']} | {r['pass']} |"
        if "error" in r:
            out.append(f"{head} failed: {r['error']} | | | | | |")
            continue
        err = f"{r['rel_err_y']:.1e}, {r['rel_err_dx']:.1e}" + ("" if r["correct"]
                                                                else " **WRONG**")
        out.append(f"{head} {r['seconds'] * 1e6:.1f} | {r['seconds_eager'] * 1e6:.1f} | "
                   f"{r['fraction_of_copy']:.1%} | {r['fraction_of_ceiling']:.1%} | {err} | "
                   f"{r['fits_in_l2']} |")
    out += ["", "## Targets: Triton forward+backward", "",
            "| shape | dtype | speed-up over fused | of two-pass ceiling | faster | >= 80% |",
            "|---|---|---:|---:|---|---|"]
    for v in report["verdicts"]:
        out.append(f"| {tuple(v['shape'])} | {v['dtype']} | {v['speedup_over_fused']:.2f}x | "
                   f"{v['fraction_of_ceiling']:.1%} | {v['faster_than_fused']} | "
                   f"{v['within_80_percent_of_ceiling']} |")
    out += [""] + [f"Note: {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"


def write_report(report, prefix):
    """PREFIX.json and PREFIX.md ({device} in PREFIX becomes the device)."""
    return write_files(report, prefix, render_markdown)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_triton",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--shapes", nargs="+", type=parse_shape)
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--variants", action="store_true",
                        help="also time other launch configurations of the kernels")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, short timings")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip compile and variants for cases started after this")
    parser.add_argument("--report", default="reports/triton_{device}", metavar="PREFIX")
    args = parser.parse_args(argv)
    if args.device.startswith("cpu") and not os.environ.get("TRITON_INTERPRET"):
        print("on the CPU the kernels need Triton's interpreter: TRITON_INTERPRET=1",
              file=sys.stderr)
        return 2
    command = " ".join(["python -m benchmarks.bench_triton",
                        *(argv if argv is not None else sys.argv[1:])])

    def checkpoint(report):
        write_report({**report, "command": command}, args.report)

    report = run(args.device, args.shapes, args.dtypes, args.compile, args.variants,
                 args.quick, args.budget_s, progress=lambda line: print(line, flush=True),
                 checkpoint=checkpoint)
    report["command"] = command
    for path in write_report(report, args.report):
        print(f"wrote {path}")
    print("## Targets" + render_markdown(report).split("## Targets")[-1])
    wrong = [r for r in report["rows"] if r.get("correct") is False]
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

