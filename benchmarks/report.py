"""Recorded runs as a pair of files, PREFIX.json and PREFIX.md (the reports in ``reports/``).

Written by ``python -m benchmarks.bench_triton`` and ``python -m tools.verify``: ``tools``
imports ``benchmarks``, never the other way round.
"""

from __future__ import annotations

import json
import math
import os

__all__ = ["write_report", "jsonable"]


def write_report(report, prefix, render):
    """Write PREFIX.json (the report) and PREFIX.md (``render(report)``); ``{device}`` in
    PREFIX becomes ``report["device"]``, so a run on the CPU never gets a GPU's name.
    Returns the two paths."""
    prefix = prefix.replace("{device}", report["device"])
    directory = os.path.dirname(prefix)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(prefix + ".json", "w") as f:
        json.dump(jsonable(report), f, indent=1)
        f.write("\n")
    with open(prefix + ".md", "w") as f:
        f.write(render(report))
    return prefix + ".json", prefix + ".md"


def jsonable(obj):
    """``obj`` with non-finite floats as strings, so that the file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj
