"""Simulated processes for chapter 10: threads of one process joined by a summing
all-reduce, the transport that :mod:`bn_lib.distributed` needs, in NumPy alone."""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["ThreadWorld"]


class ThreadWorld:
    """``world_size`` simulated processes: threads of this process with a summing
    all-reduce. For experiments and tests that need no engine; NumPy only.

    ``run(fn, *per_rank_args)`` calls ``fn(rank, allreduce_sum, *args_of_rank)`` on every
    rank at once and returns the results in rank order. The sum is taken in rank order,
    so every rank receives the same bits. A rank that raises, or a collective that is not
    joined by every rank within ``timeout_s``, fails the whole run with that error.
    """

    def __init__(self, world_size, timeout_s=30.0):
        if int(world_size) != world_size or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size}")
        self.world_size = int(world_size)
        self.timeout_s = timeout_s

    def __repr__(self):
        return f"ThreadWorld({self.world_size})"

    def run(self, fn, *per_rank_args):
        for args in per_rank_args:
            if len(args) != self.world_size:
                raise ValueError(
                    f"each per-rank argument needs {self.world_size} entries, got {len(args)}"
                )
        barrier = threading.Barrier(self.world_size, timeout=self.timeout_s)
        slots = [None] * self.world_size

        def wait(rank):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                raise TimeoutError(
                    f"rank {rank} of {self}: a collective was not joined by every rank "
                    f"within {self.timeout_s} s (or another rank failed)") from None

        def make_allreduce(rank):
            def allreduce_sum(a):
                slots[rank] = np.asarray(a)
                wait(rank)  # every rank has written
                total = slots[0].copy()
                for other in slots[1:]:
                    total += other
                wait(rank)  # every rank has read: the slots may be reused
                return total
            return allreduce_sum

        results, errors = [None] * self.world_size, [None] * self.world_size

        def body(rank):
            try:
                args = [arg[rank] for arg in per_rank_args]
                results[rank] = fn(rank, make_allreduce(rank), *args)
            except BaseException as error:  # noqa: B036 - re-raised in the caller
                errors[rank] = error
                barrier.abort()  # release the ranks waiting for this one

        threads = [threading.Thread(target=body, args=(r,)) for r in range(self.world_size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # the first real error, not the TimeoutError it caused on the ranks left waiting
        for rank, error in sorted(enumerate(errors),
                                  key=lambda e: isinstance(e[1], TimeoutError)):
            if error is not None:
                error.add_note(f"(raised on rank {rank} of {self})")
                raise error
        return results
