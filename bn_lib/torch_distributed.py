"""``torch.distributed`` as the transport of :mod:`bn_lib.distributed` (chapter 10).

Imported by name only (``from bn_lib import torch_distributed``); torch is imported when a
function here first needs it, so ``import bn_lib`` stays NumPy-only.

- :func:`allreduce_sum` and :func:`all_gather` move NumPy arrays through the current process
  group: gloo on the CPU, NCCL (on each rank's own GPU) where the group uses it.
- :func:`launch` starts ``world_size`` processes joined in one process group, runs a function
  in each and returns the results in rank order. It works from a script, a test or a
  notebook: each worker is a fresh ``python -m bn_lib.torch_distributed`` (multiprocessing's
  ``spawn`` and ``forkserver`` re-import the caller's main module, which re-runs a script
  without an ``if __name__ == "__main__"`` guard), the function travels by value
  (cloudpickle), so it may be defined in a notebook cell, and the ranks meet through a file
  in a temporary folder. Every wait has a timeout, and a worker that fails makes the launch
  raise :class:`WorkerError` with that worker's traceback, instead of leaving the others
  waiting in a collective (gloo's own default timeout is 30 minutes).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from datetime import timedelta
from pathlib import Path

import numpy as np

__all__ = ["WorkerError", "launch", "allreduce_sum", "all_gather"]

DEFAULT_TIMEOUT_S = 60.0


class WorkerError(RuntimeError):
    """A worker of :func:`launch` raised, died, or did not finish in time."""


def _torch():
    import torch
    import torch.distributed as dist

    return torch, dist


def _device(group=None):
    torch, dist = _torch()
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def allreduce_sum(array, group=None):
    """Element-wise sum of ``array`` over the processes of ``group`` (default: all).

    A NumPy array in, a NumPy array of the same shape and dtype out; every process of the
    group must call it with the same shape and dtype.
    """
    torch, dist = _torch()
    tensor = torch.from_numpy(np.array(array, copy=True)).to(_device(group))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor.cpu().numpy()


def all_gather(array, group=None):
    """Every process's ``array`` (same shape and dtype everywhere), stacked in rank order:
    shape (W,) + array.shape."""
    torch, dist = _torch()
    tensor = torch.from_numpy(np.array(array, copy=True)).to(_device(group))
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, tensor, group=group)
    return torch.stack(parts).cpu().numpy()


def _run_worker(folder, rank, world_size, backend, timeout_s):
    """Body of each launched process (``python -m bn_lib.torch_distributed``): join the
    group, run the payload, write the result or the traceback for the parent."""
    import pickle
    import sys

    folder = Path(folder)
    try:
        import cloudpickle

        sys_path, payload = pickle.loads((folder / "payload.pkl").read_bytes())
        sys.path[:0] = [p for p in sys_path if p not in sys.path]  # the parent's imports
        torch, dist = _torch()
        torch.set_num_threads(1)  # W processes share the machine's cores
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=f"file://{folder / 'rendezvous'}",
                                rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
        fn, args = cloudpickle.loads(payload)
        outcome = ("ok", fn(rank, world_size, *args))
    except BaseException:  # noqa: B036 - everything goes back to the parent
        outcome = ("error", traceback.format_exc())
    partial = folder / f"result{rank}.partial"
    partial.write_bytes(pickle.dumps(outcome))
    partial.rename(folder / f"result{rank}.pkl")  # appears whole or not at all
    if outcome[0] == "ok":
        dist.destroy_process_group()


def launch(fn, world_size, *args, backend="gloo", timeout_s=DEFAULT_TIMEOUT_S):
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` new processes.

    Each process is a fresh Python (``python -m bn_lib.torch_distributed``), so nothing
    depends on how the caller was started: a script without an ``if __name__ ==
    "__main__"`` guard, a test and a notebook all work, and ``fn`` may be defined in a
    notebook cell (it travels by value, with cloudpickle). Each process joins one
    ``torch.distributed`` process group (``backend``: "gloo" for the CPU, "nccl" for one GPU
    per rank) before calling ``fn``, so ``fn`` can use :func:`allreduce_sum` and
    :func:`all_gather`. Returns the ``world_size`` return values in rank order (they travel
    back pickled: NumPy arrays, numbers, dicts).

    ``timeout_s`` bounds the whole launch and every collective inside it. Raises
    :class:`WorkerError` with the worker's traceback when a worker raises, exits without a
    result, or the launch runs out of time; the other workers are then killed.
    """
    import pickle
    import subprocess
    import sys

    import cloudpickle

    if int(world_size) != world_size or world_size < 1:
        raise ValueError(f"world_size must be a positive integer, got {world_size}")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    env = _worker_environment()
    folder = Path(tempfile.mkdtemp(prefix="bn_lib_launch_"))
    (folder / "payload.pkl").write_bytes(
        pickle.dumps((list(sys.path), cloudpickle.dumps((fn, args)))))
    processes, logs = [], []
    try:
        for rank in range(world_size):
            log = open(folder / f"rank{rank}.log", "wb")  # closed in the finally below
            logs.append(log)
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "bn_lib.torch_distributed", str(folder), str(rank),
                 str(world_size), backend, str(timeout_s)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env))
        return _collect(processes, folder, timeout_s)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for log in logs:
            log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _worker_environment():
    """The caller's environment, plus what every worker should have unless told otherwise:
    one BLAS/OpenMP thread per process (W processes share the cores), and gloo on the
    loopback interface (all ranks run on this machine)."""
    import os
    import socket

    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, "1")
    loopback = [name for _, name in socket.if_nameindex() if name in ("lo", "lo0")]
    if loopback:
        env.setdefault("GLOO_SOCKET_IFNAME", loopback[0])
    return env


def _collect(processes, folder, timeout_s):
    """Wait for every rank's result file; fail fast on the first error."""
    import pickle

    deadline = time.monotonic() + timeout_s
    values = {}
    while len(values) < len(processes):
        for rank, process in enumerate(processes):
            path = folder / f"result{rank}.pkl"
            if rank in values:
                continue
            if path.exists():
                status, value = pickle.loads(path.read_bytes())
                if status == "error":
                    raise WorkerError(f"rank {rank} of {len(processes)} failed:\n{value}")
                values[rank] = value
            elif process.poll() is not None:
                log = (folder / f"rank{rank}.log").read_text(errors="replace")[-4000:]
                raise WorkerError(f"rank {rank} exited with code {process.returncode} "
                                  f"before reporting a result; its output:\n{log}")
        if len(values) < len(processes):
            if time.monotonic() > deadline:
                missing = sorted(set(range(len(processes))) - set(values))
                raise WorkerError(f"rank(s) {missing} did not finish within {timeout_s} s "
                                  "(a collective that not every rank joined?)")
            time.sleep(0.02)
    return [values[rank] for rank in range(len(processes))]


if __name__ == "__main__":
    import sys

    _folder, _rank, _world_size, _backend, _timeout_s = sys.argv[1:]
    _run_worker(_folder, int(_rank), int(_world_size), _backend, float(_timeout_s))
