"""Speed and memory of bn_lib's Batch Normalization and of two training steps, against
PyTorch and a textbook NumPy version, on the CPU (the targets of issue 23).

Run it from the repository root (``make bench`` does)::

    python -m benchmarks.bench_batchnorm [--rounds 30] [--check]

Three tables, all on one thread (PyTorch's and the BLAS's):

1. BN's training forward + backward in float32 on four shapes: bn_lib; PyTorch's
   ``F.batch_norm`` with autograd; and the textbook version, chapter 03's
   ``compact_forward`` and ``compact_backward`` (eq-03-dx) as the chapter writes them, with
   ``keepdims`` and broadcasting. Times as ratios to PyTorch's.
2. Peak memory of the two NumPy versions of (1), by tracemalloc, in units of x's size.
3. One training step (forward, loss, backward, SGD update) of an MLP and of a small CNN on
   8 x 8 digits, in float64, bn_lib against the same network in PyTorch.

The contenders must agree before their times mean anything: the script checks that first.
Rounds are interleaved (``benchmarks/timing.py``): each runs every contender once, in an
order that rotates, so that a shared machine's load falls on all of them alike. A ratio is
that of the best times, with the 10th to 90th percentile of the per-round ratios for its
spread. Timings on a loaded machine are inflated and noisy; the ratios much less so.

Targets, printed at the end as MET or MISSED (``--check``: exit status 1 if one is missed):
bn_lib within 2x PyTorch on each shape; faster than the textbook version, with less peak
memory, on each shape; the MLP and CNN steps no slower than PyTorch's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tracemalloc

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import bn_lib
from benchmarks.timing import interleaved

BN_SHAPES = [(256, 1024), (64, 64, 32, 32), (128, 32, 16, 16), (32, 256, 14, 14)]
EPS = 1e-5
BATCH = 64
WITHIN_OF_TORCH = 2.0  # bn_lib's forward+backward at most this many times PyTorch's


# --- BN forward + backward -------------------------------------------------------------

def batch_sum(a):
    """Chapter 03's sum over every axis but the channels', kept broadcastable."""
    return a.sum(axis=(0, *range(2, a.ndim)), keepdims=True)


def textbook_forward(x, gamma, beta, eps=EPS):
    """Chapter 03's ``compact_forward``: the forward formula, one array per step."""
    m = x.size // x.shape[1]
    as_column = (1, -1) + (1,) * (x.ndim - 2)
    centred = x - batch_sum(x) / m
    inv_std = 1.0 / np.sqrt(batch_sum(centred**2) / m + eps)
    x_hat = centred * inv_std
    y = gamma.reshape(as_column) * x_hat + beta.reshape(as_column)
    return y, {"m": m, "x_hat": x_hat, "inv_std": inv_std,
               "gamma": gamma.reshape(as_column)}


def textbook_backward(dy, cache):
    """Chapter 03's ``compact_backward``: the compact formula eq-03-dx, as written."""
    m, x_hat = cache["m"], cache["x_hat"]
    dbeta = batch_sum(dy)
    dgamma = batch_sum(dy * x_hat)
    dx = cache["gamma"] * cache["inv_std"] / m * (m * dy - dbeta - x_hat * dgamma)
    return dx, dgamma.ravel(), dbeta.ravel()


def textbook_forward_backward(x, gamma, beta, dy):
    y, cache = textbook_forward(x, gamma, beta)
    return (y, *textbook_backward(dy, cache))


def bn_lib_forward_backward(x, gamma, beta, dy):
    y, cache = bn_lib.batch_norm_forward(x, gamma, beta, EPS)
    return (y, *bn_lib.batch_norm_backward(dy, cache))


def torch_forward_backward(x, gamma, beta, dy):
    """A function that runs PyTorch's BatchNorm forward and backward on these arrays."""
    xt, gt, bt = (torch.from_numpy(a).requires_grad_(True) for a in (x, gamma, beta))
    dyt = torch.from_numpy(dy)

    def run():
        xt.grad = gt.grad = bt.grad = None
        y = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
        y.backward(dyt)
        return y, xt.grad, gt.grad, bt.grad

    return run


def check_agreement(label, ours, others):
    """bn_lib's (y, dx, dgamma, dbeta) must match every other version's before any time
    is worth reading."""
    for other_name, other in others.items():
        for what, a, b in zip(("y", "dx", "dgamma", "dbeta"), ours, other, strict=True):
            b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
            scale = max(1.0, float(np.abs(b).max()))
            if np.abs(a - b).max() > 1e-3 * scale:
                raise AssertionError(f"{label}: bn_lib's {what} disagrees with {other_name}")


def peak_memory(fn):
    """Peak bytes NumPy allocates while ``fn`` runs (tracemalloc)."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def bn_contenders(shape, rng):
    c = shape[1]
    x = (5 * rng.standard_normal(shape) + 12).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.uniform(0.5, 2, c).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    contenders = {
        "bn_lib": lambda: bn_lib_forward_backward(x, gamma, beta, dy),
        "PyTorch": torch_forward_backward(x, gamma, beta, dy),
        "textbook": lambda: textbook_forward_backward(x, gamma, beta, dy),
    }
    check_agreement(str(shape), contenders["bn_lib"](),
                    {name: contenders[name]() for name in ("PyTorch", "textbook")})
    memory = {name: peak_memory(contenders[name]) / x.nbytes
              for name in ("bn_lib", "textbook")}
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
    """Conv 1->16, BN, ReLU, Conv 16->32, BN, ReLU, Linear."""
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
    return {"bn_lib": ours, "PyTorch": theirs}


# --- report ------------------------------------------------------------------------------

def ratio(times, name, base):
    """Best-time ratio and the 10th-90th percentile of per-round ratios."""
    per_round = sorted(a / b for a, b in zip(times[name], times[base], strict=True))
    low = per_round[int(0.1 * (len(per_round) - 1))]
    high = per_round[int(round(0.9 * (len(per_round) - 1)))]
    return min(times[name]) / min(times[base]), low, high


def load_note():
    if not hasattr(os, "getloadavg"):
        return "load unknown"
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def bn_table(rounds, rng, targets):
    header = (f"{'shape, float32':<20}{'implementation':<16}{'median ms':>10}{'best ms':>9}"
              f"{'/ PyTorch (p10-p90)':>23}{'peak mem / x':>14}")
    print(header)
    print("-" * len(header))
    for shape in BN_SHAPES:
        contenders, memory = bn_contenders(shape, rng)
        times = interleaved(contenders, rounds)
        for name, ts in times.items():
            best, low, high = ratio(times, name, "PyTorch")
            mem = f"{memory[name]:.2f}x" if name in memory else "n/a"
            print(f"{str(shape):<20}{name:<16}{1e3 * statistics.median(ts):>10.3f}"
                  f"{1e3 * min(ts):>9.3f}{best:>9.2f} ({low:.2f}-{high:.2f}){mem:>14}")
        print()
        best = ratio(times, "bn_lib", "PyTorch")[0]
        targets.append((f"BN {shape}: bn_lib / PyTorch <= {WITHIN_OF_TORCH:g}",
                        best, best <= WITHIN_OF_TORCH))
        vs_textbook = ratio(times, "bn_lib", "textbook")[0]
        targets.append((f"BN {shape}: bn_lib / textbook < 1", vs_textbook, vs_textbook < 1))
        memory_ratio = memory["bn_lib"] / memory["textbook"]
        targets.append((f"BN {shape}: bn_lib's peak memory / textbook's < 1", memory_ratio,
                        memory_ratio < 1))


def step_table(rounds, rng, targets):
    header = (f"{'training step, float64':<28}{'implementation':<16}{'median ms':>10}"
              f"{'best ms':>9}{'/ PyTorch (p10-p90)':>23}")
    print(header)
    print("-" * len(header))
    for label, make_pair in [(f"MLP 64-256-256-10, batch {BATCH}", mlp_pair),
                             (f"CNN on 8x8, batch {BATCH}", cnn_pair)]:
        times = interleaved(step_contenders(make_pair, rng), rounds)
        for name, ts in times.items():
            best, low, high = ratio(times, name, "PyTorch")
            print(f"{label:<28}{name:<16}{1e3 * statistics.median(ts):>10.3f}"
                  f"{1e3 * min(ts):>9.3f}{best:>9.2f} ({low:.2f}-{high:.2f})")
        best = ratio(times, "bn_lib", "PyTorch")[0]
        targets.append((f"{label.split(',')[0]} step: bn_lib / PyTorch <= 1", best,
                        best <= 1.0))
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_batchnorm",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    rng = np.random.default_rng(0)
    torch.set_num_threads(1)
    print(f"CPU, 1 thread; torch {torch.__version__}, numpy {np.__version__}; "
          f"{args.rounds} interleaved rounds; {load_note()}")
    print("ratios: of best times, with the 10th-90th percentile of per-round ratios\n")
    targets = []
    with threadpool_limits(limits=1, user_api="blas"):
        bn_table(args.rounds, rng, targets)
        step_table(args.rounds, rng, targets)
    print(f"targets ({load_note()}):")
    for text, value, met in targets:
        print(f"  {'MET   ' if met else 'MISSED'} {value:5.2f}  {text}")
    missed = sum(not met for _, _, met in targets)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
