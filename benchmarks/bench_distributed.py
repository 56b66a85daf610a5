"""What synchronizing BN costs on torch.distributed (gloo, CPU): chapter 10's cost section.

One launch of W processes (default 2) measures, on each rank:
- the gloo all-reduce of payloads from 2C + 1 numbers (BN's statistics) to 2**22 (a
  gradient bucket), median of the repetitions;
- a training step (forward + backward) of ``SyncBatchNorm`` on the rank's slice against
  plain ``BatchNorm`` on the same slice, for a few shapes: the difference is the price of
  the three blocking all-reduces per layer and step.
It also reports the launch's own time (process start, torch import, rendezvous). Timings on
a shared machine are inflated; read the ratios and orders of magnitude.

Run it from the repository root (``make bench`` does)::

    python -m benchmarks.bench_distributed [--world-size 2] [--repeats 20]

Times come from the one timing engine, ``benchmarks/timing.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from benchmarks.timing import seconds_per_call

PAYLOADS = [2 * 64 + 1, 2 * 512 + 1, 2 * 2048 + 1, 2**16, 2**19, 2**22]
SHAPES = [(16, 64), (4, 64, 28, 28), (2, 256, 14, 14)]  # one rank's slice


def _median_seconds(fn, repeats):
    """The median of ``repeats`` single calls: a collective's time varies from call to call
    with the other rank's arrival, so each call is one sample."""
    return statistics.median(seconds_per_call(fn, trials=repeats, min_time=0))


def measure(rank, world_size, repeats):
    import bn_lib
    from bn_lib import torch_distributed

    allreduce = torch_distributed.allreduce_sum
    result = {"allreduce": {}, "step": {}}
    for size in PAYLOADS:
        payload = np.ones(size, dtype=np.float32)
        result["allreduce"][size] = _median_seconds(lambda p=payload: allreduce(p), repeats)
    rng = np.random.default_rng(rank)
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        for name, layer in [("BatchNorm", bn_lib.BatchNorm(shape[1])),
                            ("SyncBatchNorm", bn_lib.SyncBatchNorm(shape[1],
                                                                   allreduce_sum=allreduce))]:
            def step(layer=layer, x=x, dy=dy):
                layer.forward(x)
                layer.backward(dy)
            result["step"][shape, name] = _median_seconds(step, repeats)
    return result


def main():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_distributed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    from bn_lib import torch_distributed

    start = time.perf_counter()
    results = torch_distributed.launch(measure, args.world_size, args.repeats,
                                       backend="gloo", timeout_s=300)
    total = time.perf_counter() - start
    print(f"gloo, {args.world_size} processes, median of {args.repeats}; whole launch "
          f"{total:.1f} s (including the measurements)")
    print(f"\n{'all-reduce of':>24}{'ms (slowest rank)':>20}")
    for size in PAYLOADS:
        t = max(r["allreduce"][size] for r in results)
        print(f"{size:>15,} float32{t * 1e3:>20.3f}")
    print(f"\n{'slice per rank':<20}{'BatchNorm ms':>14}{'SyncBatchNorm ms':>18}"
          f"{'overhead ms':>13}")
    for shape in SHAPES:
        plain = max(r["step"][shape, "BatchNorm"] for r in results)
        synced = max(r["step"][shape, "SyncBatchNorm"] for r in results)
        print(f"{str(shape):<20}{plain * 1e3:>14.3f}{synced * 1e3:>18.3f}"
              f"{(synced - plain) * 1e3:>13.3f}")


if __name__ == "__main__":
    main()
