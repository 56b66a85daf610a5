"""Why Batch Normalization is memory-bound: BN's throughput as a fraction of the copy
bandwidth of the same device (chapter 07).

    python benchmarks/bench_memory_bound.py [--device auto|cpu|cuda] [--shapes 256x64x56x56 ...]
                                            [--dtype float32] [--compile auto|on|off]
                                            [--quick] [--json PATH]

Bytes-moved model. With S = numel(x) * itemsize, the least memory traffic BN can have:

* forward: read x once, write y once: 2S;
* forward + backward: the forward 2S, then the backward pass reads x (or x_hat) and dy
  and writes dx: 3S, so 5S in all.

The per-channel vectors (mean, variance, gamma, beta and their gradients) are negligible.
A pass's bandwidth is model bytes / time; its fraction is that divided by the copy
bandwidth, 2 * bytes / time of ``dst.copy_(src)`` on a large buffer (256 MiB), measured in
the same run. The statistics of a channel are needed before its first output, so a real
kernel reads x twice (3S forward, 8S forward + backward): even a perfect one reaches 2/3
and 5/8 of the copy bandwidth.

Timed for each shape: PyTorch's fused ``F.batch_norm`` (forward; forward + backward through
autograd); the same formula composed of separate tensor operations, which is what bn_lib
moved to the GPU unchanged looks like (``bn_lib.testing.composed_forward`` and
``composed_backward``); and that composition under ``torch.compile``. ``--compile auto``
compiles on CUDA only: the CPU backend needs a C++ compiler and about a minute per graph.
A compile failure is recorded in the table, not fatal.

Timing: CUDA events on a GPU, ``time.perf_counter`` on the CPU; the median of 5 trials of
several calls each, after a warm-up call. ``python -m tools.verify --bandwidth`` runs the
same measurement (``benchmarks/bandwidth.py``) and records it in the verification
report; this script is the stand-alone version, with a choice of shapes and dtype.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

# bandwidth.py is the module beside this script
from bandwidth import format_bandwidth, measure_bandwidth, parse_shape

from bn_lib.testing import resolve_device


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--shapes", nargs="+", type=parse_shape,
                        help="input shapes such as 256x64x56x56 (default: per device)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64",
                                                                "float16", "bfloat16"])
    parser.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--quick", action="store_true", help="small shapes, short timings")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)

    device, note = resolve_device(args.device)
    if note:
        print(f"NOTE: {note}")
    env = {"device": device, "torch_version": torch.__version__,
           "cuda_version": torch.version.cuda,
           "device_name": torch.cuda.get_device_name(device) if device != "cpu" else "CPU"}
    print(f"{env['device_name']} ({device}), PyTorch {env['torch_version']}, "
          f"CUDA {env['cuda_version']}")
    result = measure_bandwidth(device, shapes=args.shapes, dtype=args.dtype,
                               compile=args.compile, quick=args.quick, progress=print)
    result["environment"] = env
    print()
    print(f"copy bandwidth: {result['copy_gbps']:.1f} GB/s; model: forward 2S, "
          f"forward+backward 5S")
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
