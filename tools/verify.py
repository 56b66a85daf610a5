"""Re-verify bn_lib against PyTorch on the CPU or a CUDA GPU; write the report (chapter 07).

Command line, from the repository root::

    python -m tools.verify --device {auto,cpu,cuda} [--report PREFIX] [--quick]
                           [--bandwidth] [--compile {auto,on,off}] [--require-device]

It needs only numpy, torch and this repository (``bn_lib``, and ``benchmarks/`` for the
report files and ``--bandwidth``; ``benchmarks`` never imports ``tools``), so any Python
where those import will do: on a CUDA machine, ``make verify-gpu VERIFY_PYTHON=python3``
runs it with that machine's own PyTorch.

The checks and their tolerances are :mod:`bn_lib.testing`'s (``check_case``,
``TOLERANCES``, with the rationale): bn_lib (NumPy, on the CPU) against PyTorch on the
device, for the training forward and backward passes, running statistics over several
steps (momentum 0.1 and cumulative) and eval mode, for (N, C), (N, C, L) and (N, C, H, W)
shapes up to (256, 64, 56, 56), in float64 and float32.

Devices. ``--device auto`` checks CUDA when PyTorch sees a GPU, else the CPU. ``--device
cuda`` on a machine without CUDA says so, checks the CPU instead and records that in the
report; ``--require-device`` makes that an error (exit status 2).

Reports. ``--report PREFIX`` writes PREFIX.json and PREFIX.md; ``{device}`` in PREFIX is
replaced by the device actually checked, so a fallback never writes a CPU run under a GPU
name. ``--bandwidth`` adds the memory-bound measurement of ``benchmarks/bandwidth.py``.

Exit status: 0 when every check passes, 1 when any fails, 2 when the device or PyTorch
is missing (or --require-device could not be met).
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import sys
import time

import numpy as np

from benchmarks import report as report_files
from benchmarks.bandwidth import describe_model, format_bandwidth, measure_bandwidth
from bn_lib import testing, verification

COMMAND = "python -m tools.verify"


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device):
    """Versions and the device's name: what a reader needs to reproduce a report."""
    import torch

    import bn_lib

    info = {
        "device": str(device).split(":")[0],
        "device_name": _cpu_name(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": None,
        "numpy_version": np.__version__,
        "bn_lib_version": bn_lib.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "torch_threads": torch.get_num_threads(),
    }
    if str(device).startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info["device_name"] = props.name
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["compute_capability"] = f"{props.major}.{props.minor}"
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info


def _fmt_err(value):
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def format_checks(report, failed_only=False):
    """The parity rows as a Markdown table (also readable as plain text)."""
    lines = ["| shape | dtype | check | max abs error | abs / max abs torch "
             "| abs / max(1, max abs torch) | tolerance | ok |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in report["checks"]:
        if failed_only and r["passed"]:
            continue
        ok = "yes" if r["passed"] else "**NO**" + (f" ({r['note']})" if "note" in r else "")
        lines.append(f"| {tuple(r['shape'])} | {r['dtype']} | {r['check']} | "
                     f"{_fmt_err(r['max_abs_err'])} | {_fmt_err(r['err_over_max_ref'])} | "
                     f"{_fmt_err(r['scaled_err'])} | {r['tolerance']:.0e} | {ok} |")
    return "\n".join(lines)


def render_markdown(report):
    """The whole report as Markdown: environment, tolerances, parity, bandwidth."""
    status = "PASSED" if report["passed"] else "FAILED"
    out = [
        f"# bn_lib against PyTorch on {report['device']}: {status}",
        "",
        f"{report['n_checks'] - report['n_failed']} of {report['n_checks']} checks within "
        f"tolerance. Produced by `{report.get('command', COMMAND)}` "
        f"on {report['created_utc']} in {report['elapsed_s']} s.",
        "",
    ]
    if report.get("fallback"):
        out += [f"**Note:** {report['fallback']}.", ""]
    env_keys = ["device", "device_name", "torch_version", "cuda_version", "cudnn_version",
                "compute_capability", "device_memory_gib", "numpy_version", "bn_lib_version",
                "python_version", "platform", "cpu", "torch_threads", "requested_device"]
    out += ["| environment | |", "|---|---|"]
    out += [f"| {k} | {report[k]} |" for k in env_keys if k in report]
    out += ["", "## Tolerances", "",
            "A check passes when max|ours - torch| <= tolerance * max(1, max|torch|), "
            "with the tolerance:", "",
            "| dtype | element-wise (y, dx) | reductions (dgamma, dbeta, running stats) |",
            "|---|---:|---:|"]
    for dtype, tol in report["tolerances"].items():
        out.append(f"| {dtype} | {tol['elementwise']:.0e} | {tol['reduction']:.0e} |")
    out += ["", "## Parity per case", "", format_checks(report), ""]
    bw = report.get("bandwidth")
    if bw:
        out += ["## Why BN is memory-bound", "",
                f"Copy bandwidth ({bw['copy_mib']} MiB, memory to memory on the device, "
                f"read + write): {bw['copy_gbps']:.1f} GB/s. Timing: {bw['timing']}, "
                f"{bw['statistic']}; {bw['dtype']}.", "", describe_model(), ""]
        if bw["compile"]["note"]:
            out += [f"torch.compile: {bw['compile']['note']}.", ""]
        out += [format_bandwidth(bw), ""] + [f"Note: {n}" for n in bw.get("notes", [])]
    return "\n".join(out)


def write_report(report, prefix):
    """Write PREFIX.json and PREFIX.md (``{device}`` in PREFIX becomes the device)."""
    return report_files.write_report(report, prefix, render_markdown)


# ----------------------------------------------------------------------------- CLI


def run(device="auto", quick=False, bandwidth=False, compile="auto", require_device=False,
        progress=None, checkpoint=None, budget_s=None, **kwargs):
    """The whole report as a dict: environment, tolerances, the parity rows of
    :func:`bn_lib.verification.run_verification`, and (``bandwidth=True``) the bandwidth.
    ``checkpoint(report)``, if given, is called with the parity part before the bandwidth
    is measured, so that a time limit during the (slow) compiles cannot lose it; past
    ``budget_s`` seconds of the bandwidth measurement, it compiles nothing more."""
    import torch

    start = time.perf_counter()
    say = progress or (lambda line: None)
    checked, _ = verification.resolve_device(device, require=require_device)
    say(f"checking bn_lib against PyTorch {torch.__version__} on {checked}")
    result = verification.run_verification(device=device, quick=quick,
                                      require_device=require_device, progress=say, **kwargs)
    report = {
        "schema": 1,
        "requested_device": device,
        **environment(checked),
        "quick": bool(quick),
        "eps": testing.EPS,
        "steps": verification.STEPS,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "tolerances": {dtype: testing.TOLERANCES[dtype]  # of the dtypes checked
                       for dtype in kwargs.get("dtypes", verification.DTYPES)},
        "error_metric": "max_abs_err = max|ours - torch|; "
                        "err_over_max_ref = max_abs_err / max|torch|; "
                        "scaled_err = max_abs_err / max(1, max|torch|); "
                        "pass when scaled_err <= tolerance",
        **result,
    }
    if bandwidth:
        if checkpoint:
            checkpoint({**report, "elapsed_s": round(time.perf_counter() - start, 1)})
        say("measuring bandwidth (why BN is memory-bound)")
        report["bandwidth"] = measure_bandwidth(
            checked, quick=quick, compile=compile, progress=say, budget_s=budget_s)
    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Compare bn_lib (NumPy) with PyTorch on a device; exit 1 on any "
                    "error above its tolerance.")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N; "
                             "cuda without a GPU checks the CPU and says so")
    parser.add_argument("--require-device", action="store_true",
                        help="exit with status 2 instead of falling back to the CPU")
    parser.add_argument("--report", metavar="PREFIX",
                        help="write PREFIX.json and PREFIX.md; {device} in PREFIX becomes "
                             "the device checked")
    parser.add_argument("--quick", action="store_true",
                        help="small shapes only (seconds), for tests and the notebook")
    parser.add_argument("--bandwidth", action="store_true",
                        help="also measure BN's bandwidth against the copy bandwidth")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="torch.compile in the bandwidth measurement (auto: on for CUDA "
                             "only)")
    parser.add_argument("--budget-s", type=float, default=None, metavar="SECONDS",
                        help="compile no more shapes once the bandwidth measurement has "
                             "taken this long")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{COMMAND} needs PyTorch: pip install torch", file=sys.stderr)
        return 2

    def say(line):
        print(line, flush=True)

    command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])

    def checkpoint(report):
        for path in write_report({**report, "command": command}, args.report):
            say(f"wrote {path} (parity only, before the bandwidth)")

    try:
        report = run(device=args.device, quick=args.quick, bandwidth=args.bandwidth,
                     compile=args.compile, require_device=args.require_device, progress=say,
                     checkpoint=checkpoint if args.report else None, budget_s=args.budget_s)
    except verification.DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["command"] = command
    if args.report:
        for path in write_report(report, args.report):
            say(f"wrote {path}")
    if report["passed"]:
        say(f"PASSED: {report['n_checks']} checks on {report['device']} "
            f"({report['device_name']}) within tolerance")
        return 0
    say(f"FAILED: {report['n_failed']} of {report['n_checks']} checks exceed their tolerance")
    say(format_checks(report, failed_only=True))
    return 1


if __name__ == "__main__":
    sys.exit(main())
