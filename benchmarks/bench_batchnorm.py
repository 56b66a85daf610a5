"""Speed and memory of bn_lib's Batch Normalization (training forward + backward).

Compared, in float32 on the CPU, with:
- PyTorch's BatchNorm (autograd), single-threaded and with its default thread count;
- a staged "textbook" NumPy implementation (the nine steps of chapter 03's graph).

Runs are interleaved (one repetition of each implementation in turn) so that a noisy,
shared machine slows them alike; the table reports the median and best of the
repetitions and the ratio of medians to single-threaded PyTorch. Peak memory of the NumPy
implementations is measured with tracemalloc (NumPy reports its allocations to it) and
given as a multiple of the input's size. Usage: ``python benchmarks/bench_batchnorm.py
[--repeats 15]`` or ``make bench``. Target: bn_lib within 1.5x of 1-thread PyTorch.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np
import torch

import bn_lib

SHAPES = [(256, 1024), (64, 64, 32, 32), (128, 32, 16, 16)]
EPS = 1e-5


def textbook_forward_backward(x, gamma, beta, dy):
    """Kratzert's staged graph, written the obvious way (keepdims and broadcasting)."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    m = x.size // x.shape[1]
    g, b = gamma.reshape(shape), beta.reshape(shape)
    mu = x.mean(axis=axes, keepdims=True)
    xmu = x - mu
    sq = xmu**2
    var = sq.mean(axis=axes, keepdims=True)
    sqrtvar = np.sqrt(var + EPS)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    y = g * xhat + b
    # backward, node by node
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dxhat = dy * g
    divar = (dxhat * xmu).sum(axis=axes, keepdims=True)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    dvar = 0.5 / np.sqrt(var + EPS) * dsqrtvar
    dsq = np.ones_like(sq) / m * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=axes, keepdims=True)
    dx2 = np.ones_like(x) / m * dmu
    return y, dx1 + dx2, dgamma, dbeta


def bn_lib_forward_backward(x, gamma, beta, dy):
    y, cache = bn_lib.batch_norm_forward(x, gamma, beta, EPS)
    return (y,) + bn_lib.batch_norm_backward(dy, cache)


def make_torch_runner(x, gamma, beta, dy):
    xt = torch.from_numpy(x).requires_grad_(True)
    gt = torch.from_numpy(gamma).requires_grad_(True)
    bt = torch.from_numpy(beta).requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def run():
        xt.grad = gt.grad = bt.grad = None
        y = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
        y.backward(dyt)
        return y, xt.grad, gt.grad, bt.grad

    return run


def timed(fn, threads=None):
    if threads is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    if threads is not None:
        torch.set_num_threads(previous)
    return elapsed


def peak_memory(fn):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def check_agreement(x, gamma, beta, dy):
    """The implementations must agree before their speed means anything."""
    ours = bn_lib_forward_backward(x, gamma, beta, dy)
    for other in (textbook_forward_backward(x, gamma, beta, dy),
                  make_torch_runner(x, gamma, beta, dy)()):
        for a, b in zip(ours, other):
            b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
            scale = max(1.0, float(np.abs(b).max()))
            assert np.abs(a - b).max() <= 1e-3 * scale, "implementations disagree"


def bench(shape, repeats, rng):
    c = shape[1]
    x = (5 * rng.standard_normal(shape) + 12).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 2, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    check_agreement(x, gamma, beta, dy)
    torch_run = make_torch_runner(x, gamma, beta, dy)
    runners = {
        "bn_lib": (lambda: bn_lib_forward_backward(x, gamma, beta, dy), None),
        "torch 1 thread": (torch_run, 1),
        "torch default": (torch_run, None),
        "textbook numpy": (lambda: textbook_forward_backward(x, gamma, beta, dy), None),
    }
    times = {name: [] for name in runners}
    for fn, threads in runners.values():  # warm-up
        timed(fn, threads)
    for _ in range(repeats):
        for name, (fn, threads) in runners.items():
            times[name].append(timed(fn, threads))
    memory = {
        "bn_lib": peak_memory(runners["bn_lib"][0]) / x.nbytes,
        "textbook numpy": peak_memory(runners["textbook numpy"][0]) / x.nbytes,
    }
    return times, memory


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"float32 training forward+backward; torch {torch.__version__}, "
          f"default threads {torch.get_num_threads()}; {args.repeats} interleaved repeats\n")
    header = (f"{'shape':<20}{'implementation':<16}{'median ms':>10}{'best ms':>9}"
              f"{'/ torch 1t':>11}{'peak mem / input':>18}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for shape in SHAPES:
        times, memory = bench(shape, args.repeats, rng)
        base = statistics.median(times["torch 1 thread"])
        for name, ts in times.items():
            med = statistics.median(ts)
            ratio = med / base
            mem = f"{memory[name]:.2f}x" if name in memory else "n/a"
            print(f"{str(shape):<20}{name:<16}{1e3 * med:>10.2f}{1e3 * min(ts):>9.2f}"
                  f"{ratio:>10.2f}x{mem:>18}")
            if name == "bn_lib":
                worst = max(worst, ratio)
        print()
    verdict = "meets" if worst <= 1.5 else "misses"
    print(f"bn_lib's worst ratio to single-threaded PyTorch: {worst:.2f}x "
          f"({verdict} the 1.5x target)")


if __name__ == "__main__":
    main()
