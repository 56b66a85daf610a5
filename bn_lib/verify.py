"""Re-verify bn_lib against PyTorch on any device, and measure why BN is memory-bound
(chapter 07).

Command line (from the repository root, or anywhere bn_lib is installed)::

    python -m bn_lib.verify --device {auto,cpu,cuda} [--report PREFIX] [--quick]
                            [--bandwidth] [--compile {auto,on,off}] [--require-device]

It needs only numpy, torch and bn_lib, so any Python where those three import will do:
on a CUDA machine, ``make verify-gpu VERIFY_PYTHON=python`` (or the command above) runs it
with that machine's own CUDA build of PyTorch instead of setting up the book's .venv.

What it checks. For every shape (2-D (N, C), 3-D (N, C, L) and 4-D (N, C, H, W), up to
(256, 64, 56, 56)) and dtype (float64, float32), bn_lib (NumPy, on the CPU) is compared
with PyTorch computed on the device:

* training forward ``y`` (``batch_norm_forward`` against ``F.batch_norm``);
* backward ``dx``, ``dgamma``, ``dbeta`` (``batch_norm_backward`` against autograd);
* running mean and variance after several steps, momentum 0.1 and ``None`` (cumulative),
  and ``num_batches_tracked`` (``BatchNorm`` against ``nn.BatchNorm1d/2d``);
* eval mode: forward ``y`` and backward ``dx`` with the running statistics.

Error metric: for each quantity, the maximum absolute error ``max|ours - torch|`` and the
relative error ``max|ours - torch| / max|torch|`` (relative to the largest reference
value, so values near zero do not blow it up). A check passes when
``max|ours - torch| <= tol * max(1, max|torch|)``, relative above 1 and absolute below (dx
for a batch of two is zero in exact arithmetic: only its rounding error is left), with
``tol`` set per dtype and kind (``TOLERANCES``):

* float64: 1e-10 for everything. Both sides round at 1.1e-16 per operation; even a sum
  over m = 802,816 values in the worst (sequential) order stays near 1e-13.
* float32, element-wise outputs (y, dx): 1e-4. Each element is a few operations on O(1)
  values, rounded at 6e-8 each, plus the rounding of the mean and variance it uses;
  1e-4 leaves room for any order of those reductions.
* float32, reductions over m values (dgamma, dbeta, running statistics): 1e-3. Summed
  one value after another in float32, m zero-mean terms carry a rounding error whose
  ratio to the size of the sum is about eps * sqrt(m / 24), 2e-5 for m = 802,816 (the
  (256, 64, 56, 56) case, eps = 1.2e-7); the worst of 64 channels is a few times that.
  NumPy and GPUs sum in trees (far more accurate), but the tolerance must hold for any
  order. Chapter 07 measures this.

float32 cannot see an error smaller than its rounding: the biased running variance (off
by a factor (m - 1) / m) escapes it for m = 802,816 but not the float64 checks, which
are the proof; the float32 checks show that precision holds at the sizes used in
practice.

Devices. ``--device auto`` checks CUDA when PyTorch sees a GPU, else the CPU. ``--device
cuda`` on a machine without CUDA says so, checks the CPU instead and records that in the
report (so ``make verify-gpu`` also passes on a CPU-only machine); add ``--require-device``
to make that an error (exit status 2) instead, e.g. on a GPU runner where a missing
driver must not go unnoticed.

Reports. ``--report PREFIX`` writes PREFIX.json and PREFIX.md; ``{device}`` in PREFIX is
replaced by the device actually checked (``cuda`` or ``cpu``), so a fallback never writes a
CPU run under a GPU name.

``--bandwidth`` adds the memory-bound measurement (see :func:`measure_bandwidth`): the
time of PyTorch's fused BatchNorm, of the same formula composed of separate tensor
operations, and of that formula under ``torch.compile``, each as a fraction of the
device-to-device copy bandwidth measured in the same run. ``--compile auto`` compiles on
CUDA and skips on the CPU (the CPU backend needs a C++ compiler and about a minute per
graph); the reason is recorded in the report.

Exit status: 0 when every check passes, 1 when any fails, 2 when the device or PyTorch
is missing (or --require-device could not be met).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

__all__ = [
    "DeviceUnavailable",
    "TOLERANCES",
    "QUICK_SHAPES",
    "FULL_SHAPES",
    "BANDWIDTH_SHAPES",
    "compare",
    "check_case",
    "composed_forward",
    "composed_backward",
    "composed_forward_backward",
    "resolve_device",
    "environment",
    "run_verification",
    "measure_bandwidth",
    "render_markdown",
    "format_checks",
    "format_bandwidth",
    "write_report",
    "main",
]

EPS = 1e-5
STEPS = 3  # training steps before the running statistics are compared

TOLERANCES = {
    "float64": {"elementwise": 1e-10, "reduction": 1e-10, "exact": 0.0},
    "float32": {"elementwise": 1e-4, "reduction": 1e-3, "exact": 0.0},
}

# (2, 5): the smallest batch (m = 2, unbiased factor 2); the large 4-D shape is a
# ResNet-50 first-stage activation: m = 256 * 56 * 56 = 802,816 values per channel.
QUICK_SHAPES = [(2, 5), (32, 16), (16, 8, 10), (8, 4, 6, 6)]
FULL_SHAPES = [(2, 5), (32, 16), (1024, 512), (16, 8, 10), (8, 4, 6, 6),
               (32, 64, 28, 28), (256, 64, 56, 56)]
DTYPES = ("float64", "float32")

BANDWIDTH_SHAPES = {
    "cuda": [(256, 64, 56, 56), (128, 256, 28, 28), (64, 512, 14, 14), (8192, 4096)],
    "cpu": [(64, 64, 56, 56), (64, 256, 14, 14), (4096, 1024)],
}
BANDWIDTH_QUICK_SHAPES = [(16, 8, 16, 16), (256, 64)]


class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used (and falling back was not allowed)."""


# ----------------------------------------------------------------------------- devices


def resolve_device(requested="auto", require=False):
    """Return ``(device, note)``: the device to check and why it differs from the request.

    ``auto`` means CUDA when available, else the CPU. A CUDA request on a machine without
    CUDA falls back to the CPU with a note, or raises :class:`DeviceUnavailable` when
    ``require`` is true.
    """
    import torch

    if requested == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu"), None
    if requested.startswith("cuda"):
        if torch.cuda.is_available():
            return requested, None
        why = (f"CUDA was requested but torch.cuda.is_available() is False (PyTorch "
               f"{torch.__version__}, built for CUDA {torch.version.cuda})")
        if require:
            raise DeviceUnavailable(why)
        return "cpu", why + "; the CPU was checked instead"
    if requested == "cpu":
        return "cpu", None
    raise DeviceUnavailable(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N")


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


def _synchronize(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- parity


def _to_numpy(a):
    if hasattr(a, "detach"):
        a = a.detach().to("cpu").numpy()
    return np.asarray(a)


def compare(check, ours, ref, dtype, kind, shape=None, tolerances=TOLERANCES):
    """One check: max absolute and relative error of ``ours`` against ``ref``.

    ``kind`` is "elementwise", "reduction" or "exact" and picks the tolerance ``tol`` for
    ``dtype``. The check passes when ``max_abs_err <= tol * max(1, max|ref|)``: relative
    to the reference for values above 1, absolute below, so a quantity that is zero in
    exact arithmetic (dx for a batch of two) is judged by its rounding error, not by a
    ratio of two rounding errors. Non-finite values, a shape mismatch or (element-wise
    outputs) a dtype other than the input's fail the check.
    """
    ours_arr = np.asarray(ours)
    ref_arr = _to_numpy(ref)
    tol = tolerances[dtype][kind]
    row = {"shape": list(shape) if shape is not None else list(ours_arr.shape),
           "dtype": dtype, "check": check, "kind": kind, "tolerance": tol}
    note = None
    if ours_arr.shape != ref_arr.shape:
        abs_err = rel_err = scaled_err = math.inf
        note = f"shape {ours_arr.shape} != reference shape {ref_arr.shape}"
    else:
        a = ours_arr.astype(np.float64, copy=False)
        b = ref_arr.astype(np.float64, copy=False)
        abs_err = float(np.max(np.abs(a - b))) if a.size else 0.0
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        if scale > 0:
            rel_err = abs_err / scale
        else:
            rel_err = 0.0 if abs_err == 0 else math.inf
        scaled_err = abs_err / max(1.0, scale)
        if kind == "elementwise" and ours_arr.dtype != np.dtype(dtype):
            note = f"returned {ours_arr.dtype} for {dtype} input"
    finite = all(math.isfinite(v) for v in (abs_err, scaled_err))
    if note is None and not finite:
        note = "non-finite values"
    row.update(max_abs_err=abs_err, max_rel_err=rel_err, scaled_err=scaled_err,
               passed=bool(finite and scaled_err <= tol and note is None))
    if note:
        row["note"] = note
    return row


def _make_inputs(shape, dtype, rng):
    """x with a different non-zero mean and scale per channel (so centring matters),
    gamma, beta and an upstream gradient dy, all in ``dtype``."""
    c = shape[1]
    bshape = (1, c) + (1,) * (len(shape) - 2)
    loc = rng.uniform(-3.0, 12.0, c).astype(dtype).reshape(bshape)
    scale = rng.uniform(0.5, 5.0, c).astype(dtype).reshape(bshape)
    x = rng.standard_normal(shape, dtype=dtype)
    x *= scale
    x += loc
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal(shape, dtype=dtype)
    return x, gamma, beta, dy


def _torch_layer(shape, momentum, dtype, device, gamma, beta):
    import torch

    cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
           5: torch.nn.BatchNorm3d}[len(shape)]
    layer = cls(shape[1], eps=EPS, momentum=momentum, device=device,
                dtype=getattr(torch, dtype))
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(gamma))
        layer.bias.copy_(torch.from_numpy(beta))
    return layer


def check_case(shape, dtype, device, implementation, steps=STEPS, seed=0):
    """All checks for one (shape, dtype) on ``device``; returns a list of rows."""
    import torch
    import torch.nn.functional as F

    impl = implementation
    rng = np.random.default_rng([seed, *shape, DTYPES.index(dtype)])
    x, gamma, beta, dy = _make_inputs(shape, np.dtype(dtype), rng)
    rows = []

    def add(check, ours, ref, kind):
        rows.append(compare(check, ours, ref, dtype, kind, shape=shape))

    # training forward and backward: bn_lib's functions against F.batch_norm + autograd
    y, cache = impl.batch_norm_forward(x, gamma, beta, EPS)
    xt = torch.from_numpy(x).to(device).requires_grad_(True)
    gt = torch.from_numpy(gamma).to(device).requires_grad_(True)
    bt = torch.from_numpy(beta).to(device).requires_grad_(True)
    dyt = torch.from_numpy(dy).to(device)
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
    add("train forward y", y, yt, "elementwise")
    dx, dgamma, dbeta = impl.batch_norm_backward(dy, cache)
    dxt, dgt, dbt = torch.autograd.grad(yt, (xt, gt, bt), dyt)
    del yt, y, cache
    add("train backward dx", dx, dxt, "elementwise")
    add("train backward dgamma", dgamma, dgt, "reduction")
    add("train backward dbeta", dbeta, dbt, "reduction")
    del dx, dxt, xt

    # running statistics over several steps, then eval mode: BatchNorm against nn.BatchNorm
    layers = {}
    for momentum, label in ((0.1, "momentum 0.1"), (None, "cumulative")):
        ours = impl.BatchNorm(shape[1], eps=EPS, momentum=momentum, dtype=np.dtype(dtype))
        ours.gamma[...] = gamma
        ours.beta[...] = beta
        layers[label] = (ours, _torch_layer(shape, momentum, dtype, device, gamma, beta))
    for step in range(steps):
        # batches with different statistics at every step
        xs = x if step == 0 else (x * (1 + 0.25 * step) + 0.5 * step).astype(dtype)
        xst = torch.from_numpy(xs).to(device)
        for ours, theirs in layers.values():
            ours.train()
            ours.forward(xs)
            theirs.train()
            with torch.no_grad():
                theirs(xst)
        del xs, xst
    for label, (ours, theirs) in layers.items():
        add(f"running_mean ({label})", ours.running_mean, theirs.running_mean, "reduction")
        add(f"running_var ({label})", ours.running_var, theirs.running_var, "reduction")
        add(f"num_batches_tracked ({label})", np.asarray(ours.num_batches_tracked),
            theirs.num_batches_tracked, "exact")

    ours, theirs = layers["momentum 0.1"]
    ours.eval()
    theirs.eval()
    y_eval = ours.forward(x)
    xt = torch.from_numpy(x).to(device).requires_grad_(True)
    yt = theirs(xt)
    add("eval forward y", y_eval, yt, "elementwise")
    del y_eval
    dx_eval = ours.backward(dy)
    (dxt,) = torch.autograd.grad(yt, (xt,), dyt)
    add("eval backward dx", dx_eval, dxt, "elementwise")
    _synchronize(device)
    return rows


def run_verification(device="auto", quick=False, shapes=None, dtypes=DTYPES, steps=STEPS,
                     bandwidth=False, compile="auto", implementation=None, seed=0,
                     require_device=False, progress=None):
    """Compare ``implementation`` (default: bn_lib) with PyTorch on ``device``.

    Returns the report as a dict: environment, tolerances, one row per check, ``passed``,
    and (with ``bandwidth=True``) the memory-bound measurement. ``implementation`` is
    anything with ``batch_norm_forward``, ``batch_norm_backward`` and ``BatchNorm``
    attributes: chapter 07 passes a deliberately wrong one to show the check can fail.
    ``progress``, if given, is called with one line of text per case.
    """
    import torch

    import bn_lib

    start = time.perf_counter()
    requested = device
    device, note = resolve_device(device, require=require_device)
    impl = bn_lib if implementation is None else implementation
    if shapes is None:
        shapes = QUICK_SHAPES if quick else FULL_SHAPES
    say = progress or (lambda line: None)
    report = {
        "schema": 1,
        "requested_device": requested,
        **environment(device),
        "fallback": note,
        "implementation": getattr(impl, "__name__", type(impl).__name__),
        "quick": bool(quick),
        "eps": EPS,
        "steps": steps,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "tolerances": TOLERANCES,
        "error_metric": "max_abs_err = max|ours - torch|; "
                        "max_rel_err = max_abs_err / max|torch|; "
                        "pass when max_abs_err <= tolerance * max(1, max|torch|)",
    }
    if note:
        say(f"NOTE: {note}")
    say(f"checking {report['implementation']} against PyTorch {torch.__version__} on "
        f"{device} ({report['device_name']})")
    checks = []
    for shape in shapes:
        for dtype in dtypes:
            t0 = time.perf_counter()
            rows = check_case(tuple(shape), dtype, device, impl, steps=steps, seed=seed)
            checks.extend(rows)
            failed = [r for r in rows if not r["passed"]]
            worst = max(r["scaled_err"] for r in rows)
            say(f"  {str(tuple(shape)):<20} {dtype:<8} {len(rows) - len(failed):2d}/{len(rows)}"
                f" passed, largest error/max(1,|torch|) {worst:.2e} "
                f"({time.perf_counter() - t0:.1f} s)")
            for r in failed:
                say(f"    FAILED {r['check']}: error {r['scaled_err']:.3e} > "
                    f"{r['tolerance']:.0e}" + (f" ({r['note']})" if "note" in r else ""))
    report["checks"] = checks
    report["n_checks"] = len(checks)
    report["n_failed"] = sum(not r["passed"] for r in checks)
    report["passed"] = report["n_failed"] == 0
    if bandwidth:
        say("measuring bandwidth (why BN is memory-bound)")
        report["bandwidth"] = measure_bandwidth(device, quick=quick, compile=compile,
                                                progress=say)
    report["elapsed_s"] = round(time.perf_counter() - start, 1)
    return report


# ----------------------------------------------------------------------------- bandwidth


def composed_forward(x, gamma, beta, eps=EPS):
    """The forward formula as separate tensor operations (chapter 02, eqs. 2.1-2.4):
    what a from-scratch implementation looks like when moved to the GPU unchanged."""
    dims = [0, *range(2, x.ndim)]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(dim=dims, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=dims, keepdim=True)
    inv_std = (var + eps).rsqrt()
    x_hat = centred * inv_std
    return x_hat * gamma.view(shape) + beta.view(shape), x_hat, inv_std


def composed_backward(dy, x_hat, inv_std, gamma):
    """bn_lib's compact backward formula (chapter 03, eq. 3.9) as tensor operations."""
    dims = [0, *range(2, dy.ndim)]
    shape = (1, -1) + (1,) * (dy.ndim - 2)
    m = dy.numel() // dy.shape[1]
    dbeta = dy.sum(dim=dims)
    dgamma = (dy * x_hat).sum(dim=dims)
    dx = (gamma.view(shape) * inv_std) * (
        dy - x_hat * (dgamma / m).view(shape) - (dbeta / m).view(shape))
    return dx, dgamma, dbeta


def composed_forward_backward(x, gamma, beta, dy, eps=EPS):
    y, x_hat, inv_std = composed_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = composed_backward(dy, x_hat, inv_std, gamma)
    return y, dx, dgamma, dbeta


def _forward_only(x, gamma, beta):
    return composed_forward(x, gamma, beta)[0]


def _time_per_call(fn, device, min_time=0.1, trials=5, max_reps=200):
    """Median seconds per call of ``fn`` over ``trials`` timed runs of several calls.

    CUDA: CUDA events around the calls (the GPU's own clock; launches are asynchronous).
    CPU: ``time.perf_counter``.
    """
    import torch

    cuda = str(device).startswith("cuda")
    fn()  # warm-up: allocator, kernels, and the compile of a compiled function
    _synchronize(device)
    t0 = time.perf_counter()
    fn()
    _synchronize(device)
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
    t_copy = _time_per_call(lambda: dst.copy_(src), device, min_time, trials)
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
                seconds = _time_per_call(fn, device, min_time, trials)
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


# ----------------------------------------------------------------------------- reports


def _fmt_err(value):
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def format_checks(report, failed_only=False):
    """The parity rows as a Markdown table (also readable as plain text)."""
    lines = ["| shape | dtype | check | max abs error | max rel error "
             "| abs / max(1, max abs torch) | tolerance | ok |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in report["checks"]:
        if failed_only and r["passed"]:
            continue
        ok = "yes" if r["passed"] else "**NO**" + (f" ({r['note']})" if "note" in r else "")
        lines.append(f"| {tuple(r['shape'])} | {r['dtype']} | {r['check']} | "
                     f"{_fmt_err(r['max_abs_err'])} | {_fmt_err(r['max_rel_err'])} | "
                     f"{_fmt_err(r['scaled_err'])} | {r['tolerance']:.0e} | {ok} |")
    return "\n".join(lines)


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


def render_markdown(report):
    """The whole report as Markdown: environment, tolerances, parity, bandwidth."""
    status = "PASSED" if report["passed"] else "FAILED"
    out = [
        f"# bn_lib against PyTorch on {report['device']}: {status}",
        "",
        f"{report['n_checks'] - report['n_failed']} of {report['n_checks']} checks within "
        f"tolerance. Produced by `{report.get('command', 'bn_lib.verify.run_verification')}` "
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
                f"{bw['statistic']}; {bw['dtype']}.", "",
                "Bytes-moved model (S = numel * itemsize): forward 2S (read x, write y); "
                "forward+backward 5S (the backward pass reads x and dy and writes dx). "
                "Model GB/s = model bytes / time; fraction = that / copy bandwidth.", ""]
        if bw["compile"]["note"]:
            out += [f"torch.compile: {bw['compile']['note']}.", ""]
        out += [format_bandwidth(bw), ""]
    return "\n".join(out)


def write_report(report, prefix):
    """Write PREFIX.json and PREFIX.md (``{device}`` in PREFIX becomes the device)."""
    prefix = prefix.replace("{device}", report["device"])
    directory = os.path.dirname(prefix)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(prefix + ".json", "w") as f:
        json.dump(_jsonable(report), f, indent=1)
        f.write("\n")
    with open(prefix + ".md", "w") as f:
        f.write(render_markdown(report))
    return prefix + ".json", prefix + ".md"


def _jsonable(obj):
    """Non-finite floats become strings, so the file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


# ----------------------------------------------------------------------------- CLI


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bn_lib.verify",
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
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("bn_lib.verify needs PyTorch: pip install torch", file=sys.stderr)
        return 2

    def say(line):
        print(line, flush=True)

    try:
        report = run_verification(device=args.device, quick=args.quick,
                                  bandwidth=args.bandwidth, compile=args.compile,
                                  require_device=args.require_device, progress=say)
    except DeviceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["command"] = " ".join(["python -m bn_lib.verify", *(argv if argv is not None
                                                                  else sys.argv[1:])])
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
