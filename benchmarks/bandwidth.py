"""Why BN is memory-bound: BatchNorm's throughput as a fraction of the copy bandwidth
(chapter 07, `eq-07-bytes` and `eq-07-fraction`).

Used by ``python -m tools.verify --bandwidth`` (which records it in the verification
report) and by ``benchmarks/bench_memory_bound.py``. Needs torch and bn_lib only.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from bn_lib.testing import EPS, composed_forward, composed_forward_backward, resolve_device

BANDWIDTH_SHAPES = {
    "cuda": [(256, 64, 56, 56), (128, 256, 28, 28), (64, 512, 14, 14), (8192, 4096)],
    "cpu": [(64, 64, 56, 56), (64, 256, 14, 14), (4096, 1024)],
}
BANDWIDTH_QUICK_SHAPES = [(16, 8, 16, 16), (256, 64)]


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


def synchronize(device):
    """Wait for the device's queued work (CUDA launches are asynchronous)."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def _forward_only(x, gamma, beta):
    return composed_forward(x, gamma, beta)[0]


def time_per_call(fn, device, min_time=0.1, trials=5, max_reps=200):
    """Median seconds per call of ``fn`` over ``trials`` timed runs of several calls.

    CUDA: CUDA events around the calls (the GPU's own clock; launches are asynchronous).
    CPU: ``time.perf_counter``.
    """
    import torch

    cuda = str(device).startswith("cuda")
    fn()  # warm-up: allocator, kernels, and the compile of a compiled function
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    single = max(time.perf_counter() - t0, 1e-6)
    reps = int(min(max_reps, max(1, math.ceil(min_time / single))))
    times = []
    for _ in range(trials):
        if cuda:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3 / reps)
        else:
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append((time.perf_counter() - t0) / reps)
    return statistics.median(times)


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
                      quick=False, copy_mib=None, min_time=None, trials=5, progress=None):
    """Why BN is memory-bound: BN's throughput as a fraction of the copy bandwidth.

    Bytes-moved model, with S = numel * itemsize the size of x: the least memory
    traffic BN can have is one read of x and one write of y, 2S, for the forward pass;
    the backward pass reads x (or x_hat) and dy and writes dx, 3S, so forward+backward
    moves at least 5S. The per-channel vectors are negligible. A pass's bandwidth is
    model bytes / time, and its fraction is that over the copy bandwidth (2 * bytes /
    time of ``dst.copy_(src)`` on a large buffer), measured in the same run.

    A two-pass kernel (statistics, then normalize) must read x twice, so even a perfect
    one reaches 2S / 3S = 2/3 of the copy bandwidth in the forward pass; forward+backward
    needs at least 3S + 5S = 8S of real traffic, a ceiling of 5/8.

    Timed, for each shape: PyTorch's fused ``F.batch_norm`` (forward; forward+backward
    through autograd), the formula composed of separate tensor operations
    (:func:`composed_forward`, :func:`composed_backward`), and that formula under
    ``torch.compile`` (which fuses the separate operations into a few kernels). A compile
    failure is caught and recorded, never fatal. On the CPU everything runs on one thread
    (the setting is restored afterwards).
    """
    import torch

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
                                  copy_mib, min_time, trials, say)
    finally:
        torch.set_num_threads(threads)


def _measure_bandwidth(device, kind, shapes, dtype, use_compile, compile_note, copy_mib,
                       min_time, trials, say):
    import torch
    import torch.nn.functional as F

    tdtype = getattr(torch, dtype)
    itemsize = torch.empty((), dtype=tdtype).element_size()
    torch.manual_seed(0)

    src = torch.empty(copy_mib * 2**20 // itemsize, dtype=tdtype, device=device).uniform_()
    dst = torch.empty_like(src)
    t_copy = time_per_call(lambda: dst.copy_(src), device, min_time, trials)
    copy_bytes = 2 * src.numel() * itemsize
    copy_gbps = copy_bytes / t_copy / 1e9
    src = dst = None
    say(f"  copy of {copy_mib} MiB: {copy_gbps:.1f} GB/s (read + write)")

    result = {
        "device": kind,
        "dtype": dtype,
        "timing": "CUDA events" if kind == "cuda" else "time.perf_counter, 1 thread",
        "statistic": f"median of {trials} trials",
        "copy_mib": copy_mib,
        "copy_gbps": copy_gbps,
        "model": {"forward": "2 * S (read x, write y)",
                  "forward+backward": "5 * S (forward 2S; backward reads x and dy, "
                                      "writes dx: 3S)",
                  "S": "numel(x) * itemsize"},
        "compile": {"enabled": use_compile, "note": compile_note},
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
        size = x.numel() * itemsize

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
        if use_compile:
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
            model_bytes = (2 if which == "forward" else 5) * size
            row = {"shape": list(shape), "implementation": impl, "pass": which,
                   "model_bytes": model_bytes, "composed_vs_fused_rel_err": err}
            try:
                t_compile = time.perf_counter()
                seconds = time_per_call(fn, device, min_time, trials)
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
