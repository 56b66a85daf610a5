"""Why BN is memory-bound: the bytes-moved model, and BN's throughput as a fraction of
the copy bandwidth of the same device (chapter 07, `eq-07-bytes` and `eq-07-fraction`).

Run it from the repository root (it needs torch and this repository, nothing else)::

    python -m benchmarks.bandwidth [--device auto|cpu|cuda] [--shapes 256x64x56x56 ...]
                                   [--dtype float32] [--compile auto|on|off]
                                   [--quick] [--json PATH]

``python -m tools.verify --bandwidth`` runs the same measurement and records it in the
verification report; ``benchmarks/bench_triton.py`` uses the model and the copy bandwidth
from here. Times come from the one timing engine, ``benchmarks/timing.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from benchmarks.timing import seconds_per_call

# The bytes-moved model (eq-07-bytes), in units of S = numel(x) * itemsize. The least
# traffic BN can have: the forward pass reads x and writes y (2S); the backward pass reads
# x (or x_hat) and dy and writes dx (3S), 5S forward+backward; the per-channel vectors are
# negligible. A two-pass kernel needs a channel's statistics before its first output, so it
# reads x once more forward and x and dy once more backward: 3S and 8S.
PASSES = ("forward", "forward+backward")
LEAST_TRAFFIC = {"forward": 2, "forward+backward": 5}
TWO_PASS_TRAFFIC = {"forward": 3, "forward+backward": 8}
MODEL = {"S": "numel(x) * itemsize",
         "forward": f"{LEAST_TRAFFIC['forward']}S: read x, write y",
         "forward+backward": f"{LEAST_TRAFFIC['forward+backward']}S: the forward pass, then "
                             "the backward pass reads x and dy and writes dx",
         "two-pass kernel": " and ".join(f"{TWO_PASS_TRAFFIC[p]}S {p}" for p in PASSES)}

BANDWIDTH_SHAPES = {
    "cuda": [(256, 64, 56, 56), (128, 256, 28, 28), (64, 512, 14, 14), (8192, 4096)],
    "cpu": [(64, 64, 56, 56), (64, 256, 14, 14), (4096, 1024)],
}
BANDWIDTH_QUICK_SHAPES = [(16, 8, 16, 16), (256, 64)]
_HALF_WIDTHS = {"bfloat16": 2}  # NumPy has no bfloat16


def itemsize(dtype):
    """Bytes per value of ``dtype``: a name ("bfloat16" too), a NumPy or a torch dtype."""
    if str(dtype).startswith("torch."):
        return dtype.itemsize
    if dtype in _HALF_WIDTHS:
        return _HALF_WIDTHS[dtype]
    import numpy as np

    return np.dtype(dtype).itemsize


def bytes_moved(shape, dtype, which="forward+backward", two_pass=False):
    """The bytes BN's pass ``which`` ("forward" or "forward+backward") must move on input
    of ``shape`` and ``dtype``: the least possible traffic, or with ``two_pass`` that of a
    kernel that reads its input once for the statistics and once more to use them."""
    size = itemsize(dtype)
    for n in shape:
        size *= n
    return (TWO_PASS_TRAFFIC if two_pass else LEAST_TRAFFIC)[which] * size


def two_pass_ceiling(which):
    """The best fraction of the copy bandwidth a two-pass kernel can reach (2/3, 5/8),
    for tensors larger than the cache."""
    return LEAST_TRAFFIC[which] / TWO_PASS_TRAFFIC[which]


def describe_model():
    """The model in one sentence, for the reports."""
    least = ", ".join(f"{p} {LEAST_TRAFFIC[p]}S" for p in PASSES)
    return (f"Bytes-moved model (S = {MODEL['S']}): the least traffic is {least} (read x, "
            "write y; the backward pass reads x and dy and writes dx); a two-pass method "
            f"moves {MODEL['two-pass kernel']}, so its ceiling is "
            + " and ".join(f"{two_pass_ceiling(p):.3g}" for p in PASSES)
            + " of the copy bandwidth. Model GB/s = model bytes / time; fraction = that / "
            "copy bandwidth.")


def parse_shape(text):
    """A shape written as 256x64x56x56, for the benchmarks' command lines."""
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape must look like 256x64x56x56, got {text!r}") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"shape needs at least (N, C), got {text!r}")
    return shape


def copy_bandwidth(device, dtype, mib, min_time, trials=5):
    """GB/s of ``dst.copy_(src)`` on ``mib`` MiB of ``dtype`` (a torch dtype or its name),
    counting the bytes read and written: the most a memory-bound kernel can reach."""
    import torch

    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    src = torch.empty(mib * 2**20 // itemsize(dtype), dtype=dtype, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = statistics.median(seconds_per_call(lambda: dst.copy_(src), device,
                                                 trials=trials, min_time=min_time))
    return 2 * src.numel() * itemsize(dtype) / seconds / 1e9


def _forward_only(x, gamma, beta):
    from bn_lib.verification import composed_forward

    return composed_forward(x, gamma, beta)[0]


def _compile_choice(device, compile):
    if compile == "off":
        return False, "switched off (--compile off)"
    if compile == "on":
        return True, None
    if str(device).startswith("cuda"):
        return True, None
    return False, ("skipped on the CPU by default: torch.compile's CPU backend needs a C++ "
                   "compiler and about a minute per graph (use --compile on)")


def measure_bandwidth(device="auto", shapes=None, dtype="float32", compile="auto",
                      quick=False, copy_mib=None, min_time=None, trials=5, progress=None,
                      budget_s=None):
    """BN's throughput, by the bytes-moved model, as a fraction of the copy bandwidth.

    Timed, for each shape: PyTorch's fused ``F.batch_norm`` (forward; forward+backward
    through autograd), the formula composed of separate tensor operations
    (``bn_lib.verification.composed_forward``, ``composed_backward``), and that formula under
    ``torch.compile`` (which fuses the separate operations into a few kernels). A compile
    failure is caught and recorded, never fatal. On the CPU everything runs on one thread
    (the setting is restored afterwards). Each time is the median of ``trials``. Shapes
    started more than ``budget_s`` seconds in are timed without compiling (seconds per
    graph on a GPU), and the result's ``notes`` say so.
    """
    import torch

    from bn_lib.verification import resolve_device

    device, _ = resolve_device(device)
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    say = progress or (lambda line: None)
    if shapes is None:
        shapes = BANDWIDTH_QUICK_SHAPES if quick else BANDWIDTH_SHAPES[kind]
    if min_time is None:
        min_time = 0.02 if quick else (0.1 if kind == "cuda" else 0.3)
    if copy_mib is None:
        copy_mib = 16 if quick else 256
    use_compile, compile_note = _compile_choice(device, compile)
    threads = torch.get_num_threads()
    if kind == "cpu":
        # one thread for the copy and for BN alike: on a shared machine the threads' waits
        # for each other, not memory, would set the time of small operations
        torch.set_num_threads(1)
    try:
        return _measure_bandwidth(device, kind, shapes, dtype, use_compile, compile_note,
                                  copy_mib, min_time, trials, say, budget_s)
    finally:
        torch.set_num_threads(threads)


def _measure_bandwidth(device, kind, shapes, dtype, use_compile, compile_note, copy_mib,
                       min_time, trials, say, budget_s):
    import torch
    import torch.nn.functional as F

    from bn_lib.testing import EPS
    from bn_lib.verification import composed_forward_backward

    tdtype = getattr(torch, dtype)
    torch.manual_seed(0)
    start = time.perf_counter()
    copy_gbps = copy_bandwidth(device, tdtype, copy_mib, min_time, trials)
    say(f"  copy of {copy_mib} MiB: {copy_gbps:.1f} GB/s (read + write)")

    result = {
        "device": kind,
        "dtype": dtype,
        "timing": "CUDA events" if kind == "cuda" else "time.perf_counter, 1 thread",
        "statistic": f"median of {trials} trials",
        "copy_mib": copy_mib,
        "copy_gbps": copy_gbps,
        "model": MODEL,
        "compile": {"enabled": use_compile, "note": compile_note},
        "notes": [],
        "rows": [],
    }
    for shape in shapes:
        shape = tuple(shape)
        c = shape[1]
        x = torch.randn(shape, dtype=tdtype, device=device) * 3 + 1
        dy = torch.randn(shape, dtype=tdtype, device=device)
        gamma = torch.rand(c, dtype=tdtype, device=device) + 0.5
        beta = torch.randn(c, dtype=tdtype, device=device)
        rmean = torch.zeros(c, dtype=tdtype, device=device)
        rvar = torch.ones(c, dtype=tdtype, device=device)
        xg = x.detach().clone().requires_grad_(True)
        gg = gamma.detach().clone().requires_grad_(True)
        bg = beta.detach().clone().requires_grad_(True)

        def fused_forward(x=x, gamma=gamma, beta=beta, rmean=rmean, rvar=rvar):
            return F.batch_norm(x, rmean, rvar, gamma, beta, training=True, eps=EPS)

        def fused_forward_backward(xg=xg, gg=gg, bg=bg, rmean=rmean, rvar=rvar, dy=dy):
            y = F.batch_norm(xg, rmean, rvar, gg, bg, training=True, eps=EPS)
            return torch.autograd.grad(y, (xg, gg, bg), dy)

        # the composed formula must compute BN before its time means anything
        with torch.no_grad():
            y_ref = fused_forward()
            y_com, dx_com, _, _ = composed_forward_backward(x, gamma, beta, dy)
        (dx_ref, _, _) = fused_forward_backward()
        err = max(float((y_com - y_ref).abs().max() / y_ref.abs().max()),
                  float((dx_com - dx_ref).abs().max() / dx_ref.abs().max()))
        del y_ref, y_com, dx_com, dx_ref

        candidates = [
            ("fused (F.batch_norm)", "forward", fused_forward),
            ("fused (F.batch_norm)", "forward+backward", fused_forward_backward),
            ("composed (separate ops)", "forward",
             lambda x=x, gamma=gamma, beta=beta: _forward_only(x, gamma, beta)),
            ("composed (separate ops)", "forward+backward",
             lambda x=x, gamma=gamma, beta=beta, dy=dy:
                 composed_forward_backward(x, gamma, beta, dy)),
        ]
        past_budget = budget_s is not None and time.perf_counter() - start > budget_s
        if use_compile and past_budget:
            result["notes"].append(f"torch.compile skipped for {shape}: past the budget of "
                                   f"{budget_s:g} s")
        elif use_compile:
            try:
                torch._dynamo.reset()
            except Exception:  # noqa: BLE001 - best effort between shapes
                pass
            cf = torch.compile(_forward_only, dynamic=False)
            cfb = torch.compile(composed_forward_backward, dynamic=False)
            candidates += [
                ("compiled (torch.compile)", "forward",
                 lambda cf=cf, x=x, gamma=gamma, beta=beta: cf(x, gamma, beta)),
                ("compiled (torch.compile)", "forward+backward",
                 lambda cfb=cfb, x=x, gamma=gamma, beta=beta, dy=dy: cfb(x, gamma, beta, dy)),
            ]
        for impl, which, fn in candidates:
            model_bytes = bytes_moved(shape, dtype, which)
            row = {"shape": list(shape), "implementation": impl, "pass": which,
                   "model_bytes": model_bytes, "composed_vs_fused_rel_err": err}
            try:
                t_compile = time.perf_counter()
                seconds = statistics.median(seconds_per_call(
                    fn, device, trials=trials, min_time=min_time, max_reps=200))
                row["seconds"] = seconds
                row["gbps"] = model_bytes / seconds / 1e9
                row["fraction_of_copy"] = row["gbps"] / copy_gbps
                if "compiled" in impl:
                    row["wall_s_including_compile"] = time.perf_counter() - t_compile
                say(f"  {str(shape):<20} {impl:<26} {which:<17} "
                    f"{seconds * 1e3:9.3f} ms  {row['fraction_of_copy']:6.1%} of copy")
            except Exception as exc:  # noqa: BLE001 - a failed compile is a result
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                say(f"  {str(shape):<20} {impl:<26} {which:<17} failed: {row['error']}")
            result["rows"].append(row)
        del x, dy, xg, candidates
    return result


def format_bandwidth(bw):
    """The bandwidth rows as a Markdown table."""
    lines = ["| shape | implementation | pass | time (ms) | model GB/s | fraction of copy |",
             "|---|---|---|---:|---:|---:|"]
    for r in bw["rows"]:
        if "error" in r:
            lines.append(f"| {tuple(r['shape'])} | {r['implementation']} | {r['pass']} | "
                         f"failed: {r['error']} | | |")
            continue
        lines.append(f"| {tuple(r['shape'])} | {r['implementation']} | {r['pass']} | "
                     f"{r['seconds'] * 1e3:.3f} | {r['gbps']:.1f} | "
                     f"{r['fraction_of_copy']:.1%} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bandwidth",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--shapes", nargs="+", type=parse_shape,
                        help="input shapes such as 256x64x56x56 (default: per device)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64",
                                                                "float16", "bfloat16"])
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--quick", action="store_true", help="small shapes, short timings")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    import torch

    from bn_lib.verification import resolve_device

    device, note = resolve_device(args.device)
    if note:
        print(f"NOTE: {note}")
    name = torch.cuda.get_device_name(device) if device != "cpu" else "CPU"
    print(f"{name} ({device}), PyTorch {torch.__version__}, CUDA {torch.version.cuda}")
    result = measure_bandwidth(device, shapes=args.shapes, dtype=args.dtype,
                               compile=args.compile, quick=args.quick, progress=print)
    print(f"\ncopy bandwidth: {result['copy_gbps']:.1f} GB/s\n{describe_model()}")
    if result["compile"]["note"]:
        print(f"torch.compile: {result['compile']['note']}")
    print(format_bandwidth(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
