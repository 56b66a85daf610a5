"""Speed and memory of bn_lib's Batch Normalization and of two training steps, against PyTorch.

Three tables, all on the CPU:

1. BN's training forward + backward in float32 on four shapes: bn_lib, PyTorch's
   BatchNorm through autograd (one thread, and its default thread count) and a staged
   "textbook" NumPy version (the nine steps of chapter 03's graph). Each is also given as
   a share of the 5S limit: with S the bytes of x, a forward + backward must at least read
   x and write y, then read x and dy and write dx, 5S in all; the limit's time is that of
   one copy (2S) plus one add (3S) of arrays of x's size, timed in the same rounds. On
   (N, C) input a last row, "bn_lib, bare", times bn_lib's eleven passes as bare NumPy
   calls on the same arrays: where it is no faster than PyTorch, no tuning of the Python
   around the calls can meet the target, only fewer passes.
2. One training step (forward, loss, backward, SGD update) of an MLP and of a small CNN on
   8 x 8 digits, in float64, bn_lib against the same network in PyTorch on one thread.
3. Peak memory of the NumPy versions of (1), by tracemalloc, in units of x's size.

Rounds are interleaved: each round runs every contender once, in an order that rotates,
so that a shared machine's load falls on all of them alike. A ratio is reported as the
ratio of best times and, for its spread, the 10th to 90th percentile of the per-round
ratios. bn_lib runs with one BLAS thread, like single-threaded PyTorch.

Targets (issue 15): bn_lib / torch 1 thread <= 1.0 on every BN shape, hence a share of the
5S limit at least PyTorch's; CNN step / torch <= 1.0; MLP step / torch <= 1.0.

Usage: ``python benchmarks/bench_batchnorm.py [--rounds 30] [--check]`` or ``make bench``;
``--check`` exits with status 1 when a target is missed. Timings on a loaded machine are
inflated and noisy; the ratios much less so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import bn_lib

BN_SHAPES = [(256, 1024), (64, 64, 32, 32), (128, 32, 16, 16), (32, 256, 14, 14)]
EPS = 1e-5
BATCH = 64


# --- BN forward + backward -------------------------------------------------------------

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


def bare_passes(x, dy):
    """bn_lib's eleven passes over (N, C) input as bare NumPy calls, without the checks,
    views and Python around them: the same batched matrix-vector sums over 8 rows,
    einsum dot products and elementwise maps over a repeating (C,) pattern, whose values
    do not matter to the time. What bn_lib's design costs at best on this machine."""
    if x.ndim != 2:
        return None
    n, c = x.shape
    repeats = -(-8192 // c)  # as functional._runs: a pattern of at least 8192 values
    if n % 8 or n % repeats:
        return None
    ones, pattern = np.ones(8, x.dtype), np.ones((1, repeats * c), x.dtype)
    x_view, dy_view = x.reshape(-1, repeats * c), dy.reshape(-1, repeats * c)

    def run():
        (ones @ x.reshape(-1, 8, c)).sum(axis=0, dtype=np.float64)  # sum(x)
        centred = np.subtract(x_view, pattern)  # x - mean
        np.einsum("nk,nk->k", centred.reshape(n, c), centred.reshape(n, c))  # var
        y = np.multiply(centred, pattern)
        y += pattern  # y
        (ones @ dy.reshape(-1, 8, c)).sum(axis=0, dtype=np.float64)  # dbeta
        np.einsum("nk,nk->k", dy, centred.reshape(n, c))  # dgamma
        dx = np.multiply(centred, pattern)
        dx += pattern
        np.subtract(dy_view, dx, out=dx)
        dx *= pattern  # dx
        return y, dx

    return run


def torch_forward_backward(x, gamma, beta, dy):
    """A function that runs PyTorch's BatchNorm forward and backward on these arrays."""
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


def limit_5s(x, dy):
    """One copy (2S) and one add (3S) of x's size: the least traffic of forward + backward."""
    out = np.empty_like(x)

    def run():
        np.copyto(out, x)
        np.add(x, dy, out=out)

    return run


def check_agreement(x, gamma, beta, dy):
    """The implementations must agree before their speed means anything."""
    ours = bn_lib_forward_backward(x, gamma, beta, dy)
    for other in (textbook_forward_backward(x, gamma, beta, dy),
                  torch_forward_backward(x, gamma, beta, dy)()):
        for a, b in zip(ours, other, strict=True):
            b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
            scale = max(1.0, float(np.abs(b).max()))
            if np.abs(a - b).max() > 1e-3 * scale:
                raise AssertionError("bn_lib disagrees with another implementation")


def bn_contenders(shape, rng):
    c = shape[1]
    x = (5 * rng.standard_normal(shape) + 12).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 2, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    check_agreement(x, gamma, beta, dy)
    torch_run = torch_forward_backward(x, gamma, beta, dy)
    contenders = {
        "bn_lib": (lambda: bn_lib_forward_backward(x, gamma, beta, dy), 1),
        "torch 1 thread": (torch_run, 1),
        "torch default": (torch_run, None),
        "textbook numpy": (lambda: textbook_forward_backward(x, gamma, beta, dy), 1),
        "5S limit": (limit_5s(x, dy), 1),
    }
    bare = bare_passes(x, dy)
    if bare is not None:
        contenders["bn_lib, bare"] = (bare, 1)
    memory = {name: peak_memory(contenders[name][0]) / x.nbytes
              for name in ("bn_lib", "textbook numpy")}
    return contenders, memory


# --- training steps ----------------------------------------------------------------------

def mlp_pair(rng):
    model = bn_lib.mlp([64, 256, 256, 10], norm="batch", seed=0)
    twin = torch.nn.Sequential(
        torch.nn.Linear(64, 256, bias=False), torch.nn.BatchNorm1d(256), torch.nn.ReLU(),
        torch.nn.Linear(256, 256, bias=False), torch.nn.BatchNorm1d(256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10)).double()
    return model, twin, rng.standard_normal((BATCH, 64))


def cnn_pair(rng):
    """The CNN of issue 15: Conv 1->16, BN, ReLU, Conv 16->32, BN, ReLU, Linear."""
    model = bn_lib.Sequential(
        bn_lib.Conv2d(1, 16, 3, padding=1, bias=False, rng=1), bn_lib.BatchNorm(16),
        bn_lib.ReLU(),
        bn_lib.Conv2d(16, 32, 3, padding=1, bias=False, rng=2), bn_lib.BatchNorm(32),
        bn_lib.ReLU(), bn_lib.Flatten(), bn_lib.Linear(32 * 8 * 8, 10, rng=3))
    twin = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1, bias=False), torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(32 * 8 * 8, 10)).double()
    return model, twin, rng.standard_normal((BATCH, 1, 8, 8))


def copy_parameters(model, twin):
    """Give the PyTorch twin bn_lib's parameters (both order them (weight, bias))."""
    ours = [value for value, _ in model.parameters()]
    with torch.no_grad():
        for tensor, value in zip(twin.parameters(), ours, strict=True):
            tensor.copy_(torch.from_numpy(value.reshape(tuple(tensor.shape))))


def step_contenders(make_pair, rng):
    model, twin, x = make_pair(rng)
    copy_parameters(model, twin)
    labels = rng.integers(0, 10, BATCH)
    optimizer = bn_lib.SGD(model.parameters(), lr=0.01)
    twin_optimizer = torch.optim.SGD(twin.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(labels)

    def ours():
        return bn_lib.train_step(model, optimizer, x, labels)[0]

    def theirs():
        twin_optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(xt), yt)
        loss.backward()
        twin_optimizer.step()
        return float(loss.detach())

    # same network, same first step: the losses must agree before the times mean anything
    if abs(ours() - theirs()) > 1e-8:
        raise AssertionError(f"{make_pair.__name__}: bn_lib and PyTorch disagree")
    return {"bn_lib": (ours, 1), "torch 1 thread": (theirs, 1)}


# --- timing ------------------------------------------------------------------------------

def timed(fn, threads):
    """Seconds of one call of fn, with PyTorch on ``threads`` threads (None: default)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    torch.set_num_threads(previous)
    return elapsed


def interleaved(contenders, rounds):
    """Times of each contender over ``rounds`` rounds, one call each per round."""
    names = list(contenders)
    times = {name: [] for name in names}
    for fn, threads in contenders.values():  # warm-up
        timed(fn, threads)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, threads = contenders[name]
            times[name].append(timed(fn, threads))
    return times


def ratio(times, name, base):
    """Best-time ratio and the 10th-90th percentile of per-round ratios."""
    per_round = sorted(a / b for a, b in zip(times[name], times[base], strict=True))
    low = per_round[int(0.1 * (len(per_round) - 1))]
    high = per_round[int(round(0.9 * (len(per_round) - 1)))]
    return min(times[name]) / min(times[base]), low, high


def peak_memory(fn):
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def load_note():
    if not hasattr(os, "getloadavg"):
        return "load unknown"
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


# --- report ------------------------------------------------------------------------------

def bn_table(rounds, rng, verdicts):
    header = (f"{'shape, float32':<20}{'implementation':<16}{'median ms':>10}{'best ms':>9}"
              f"{'/ torch 1t (p10-p90)':>24}{'share of 5S':>13}{'peak mem':>10}")
    print(header)
    print("-" * len(header))
    for shape in BN_SHAPES:
        contenders, memory = bn_contenders(shape, rng)
        times = interleaved(contenders, rounds)
        limit = min(times["5S limit"])
        for name, ts in times.items():
            if name == "5S limit":
                continue
            best, low, high = ratio(times, name, "torch 1 thread")
            mem = f"{memory[name]:.2f}x" if name in memory else "n/a"
            print(f"{str(shape):<20}{name:<16}{1e3 * statistics.median(ts):>10.3f}"
                  f"{1e3 * min(ts):>9.3f}{best:>9.2f} ({low:.2f}-{high:.2f}){'':>2}"
                  f"{limit / min(ts):>12.1%}{mem:>10}")
        print(f"{str(shape):<20}{'5S limit':<16}{'':>10}{1e3 * limit:>9.3f}")
        print()
        best, low, high = ratio(times, "bn_lib", "torch 1 thread")
        verdicts.append((f"BN {shape}: bn_lib / torch 1 thread <= 1.0 (share of 5S >= torch's)",
                         best, low, high))


def step_table(rounds, rng, verdicts):
    header = (f"{'training step, float64':<28}{'implementation':<16}{'median ms':>10}"
              f"{'best ms':>9}{'/ torch 1t (p10-p90)':>24}")
    print(header)
    print("-" * len(header))
    for label, make_pair in [(f"MLP 64-256-256-10, batch {BATCH}", mlp_pair),
                             (f"CNN on 8x8, batch {BATCH}", cnn_pair)]:
        times = interleaved(step_contenders(make_pair, rng), rounds)
        for name, ts in times.items():
            best, low, high = ratio(times, name, "torch 1 thread")
            print(f"{label:<28}{name:<16}{1e3 * statistics.median(ts):>10.3f}"
                  f"{1e3 * min(ts):>9.3f}{best:>9.2f} ({low:.2f}-{high:.2f})")
        best, low, high = ratio(times, "bn_lib", "torch 1 thread")
        verdicts.append((f"{label.split(',')[0]} step: bn_lib / torch 1 thread <= 1.0",
                         best, low, high))
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"CPU; torch {torch.__version__} (default threads {torch.get_num_threads()}), "
          f"numpy {np.__version__}; {args.rounds} interleaved rounds; {load_note()}")
    print("ratios: of best times, with the 10th-90th percentile of per-round ratios\n")
    verdicts = []
    with threadpool_limits(limits=1, user_api="blas"):
        bn_table(args.rounds, rng, verdicts)
        step_table(args.rounds, rng, verdicts)
    print(f"targets (best-time ratios; {load_note()}):")
    missed = 0
    for text, best, low, high in verdicts:
        met = best <= 1.0
        missed += not met
        print(f"  {'met   ' if met else 'MISSED'} {best:.2f} ({low:.2f}-{high:.2f})  {text}")
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
