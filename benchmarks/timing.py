"""The benchmarks' one timing engine: seconds per call, on the CPU or on a CUDA device.

Every measurement in ``benchmarks/`` (and ``python -m tools.verify --bandwidth``) times
with :func:`seconds_per_call`; :func:`interleaved` runs it for several contenders in
alternating rounds. Needs nothing at import time; torch only to time CUDA work.
"""

from __future__ import annotations

import math
import time

__all__ = ["synchronize", "seconds_per_call", "interleaved"]


def synchronize(device):
    """Wait for the device's queued work (CUDA launches are asynchronous); on the CPU,
    nothing to wait for."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def seconds_per_call(run, device="cpu", *, trials=5, min_time=0.1, calls_per_run=1,
                     max_reps=1000, warmup=True):
    """Seconds per call of ``run`` in each of ``trials`` timed trials, as a list.

    A trial repeats ``run()`` often enough to last about ``min_time`` seconds (at most
    ``max_reps`` times; once when ``min_time`` is 0) and divides by the calls made;
    ``run`` may itself make ``calls_per_run`` calls. One untimed call comes first when
    ``warmup`` (allocator, caches, a compile). On CUDA a trial is timed by CUDA events,
    the GPU's own clock, because launches return before the work is done; on the CPU by
    ``time.perf_counter``.
    """
    cuda = str(device).startswith("cuda")
    if warmup:
        run()
        synchronize(device)
    reps = 1
    if min_time > 0:  # one call's time, to size the trials
        start = time.perf_counter()
        run()
        synchronize(device)
        once = max(time.perf_counter() - start, 1e-6)
        reps = max(1, min(max_reps, math.ceil(min_time / once)))
    times = []
    for _ in range(trials):
        if cuda:
            import torch

            begin, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            begin.record()
            for _ in range(reps):
                run()
            end.record()
            end.synchronize()
            seconds = begin.elapsed_time(end) / 1e3  # elapsed_time is in milliseconds
        else:
            start = time.perf_counter()
            for _ in range(reps):
                run()
            seconds = time.perf_counter() - start
        times.append(seconds / (reps * calls_per_run))
    return times


def interleaved(contenders, rounds):
    """``{name: [seconds of one call in each round]}`` for ``{name: function}``.

    Each round calls every contender once, starting one name later than the round
    before, so that a shared machine's changing load falls on all of them alike; one
    untimed round comes first.
    """
    names = list(contenders)
    for run in contenders.values():
        run()
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name] += seconds_per_call(contenders[name], trials=1, min_time=0,
                                            warmup=False)
    return times
