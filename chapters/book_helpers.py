"""Plumbing shared by the chapters, so that each chapter shows only what it teaches.

Every chapter starts with the same set-up cell::

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    import bn_lib
    import book_helpers as bh

    bh.use_one_thread()
    np.set_printoptions(precision=4, suppress=True)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)  # the chapter's one generator, passed explicitly

The kernels run in ``chapters/``, so this module imports as ``book_helpers`` without any
change to ``sys.path``. It imports only NumPy, IPython and bn_lib at import time; torch,
matplotlib and threadpoolctl are imported by the functions that need them.
``torch_twin`` is ``bn_lib.testing.torch_twin``.
"""

from __future__ import annotations

import json
import os
import timeit
from pathlib import Path

import numpy as np
from IPython.display import Markdown, display

# the torch copy of a bn_lib network, from the one oracle (it imports torch when called)
from bn_lib.testing import torch_twin

__all__ = [
    "best_time",
    "draw_channel_cubes",
    "draw_computational_graph",
    "load_or_run",
    "moving_average",
    "plot_mean_and_range",
    "rounded",
    "show_table",
    "torch_twin",
    "use_one_thread",
]

_thread_limits = []  # keeps threadpoolctl's limiter alive for the kernel's lifetime


def use_one_thread():
    """Run NumPy's BLAS and PyTorch on one thread each.

    The chapters' arrays are small, so one thread is faster than several competing for a
    few cores, and every sum is added in one order on any machine.
    """
    import torch
    from threadpoolctl import threadpool_limits

    _thread_limits.append(threadpool_limits(limits=1))
    torch.set_num_threads(1)


def load_or_run(path, run):
    """The stored results of a heavy or chaotic experiment: ``run()`` (a JSON-serializable
    value) is computed and written to ``path`` when the file is missing or the
    environment variable ``BN_BOOK_HEAVY`` is ``1``; otherwise the file is read. The
    chapter that calls it re-runs some of the stored runs live and asserts them."""
    path = Path(path)
    if os.environ.get("BN_BOOK_HEAVY") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run(), indent=1) + "\n")
    return json.loads(path.read_text())


def rounded(a, digits=4):
    """``a`` rounded to ``digits`` decimals for printing, with -0.0 turned into 0.0."""
    return np.round(a, digits) + 0.0


def best_time(fn, repeat=3):
    """The fastest of ``repeat`` calls of ``fn()``, in seconds (the least disturbed one).

    The chapters' only timer. ``benchmarks/timing.py`` is the benchmarks' engine, but a
    notebook cannot import ``benchmarks/``: it is not installed, and on Colab only the
    wheel is."""
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def moving_average(values, width):
    """Mean of each window of ``width`` consecutive values: ``len(values) - width + 1`` means."""
    return np.convolve(values, np.ones(width) / width, mode="valid")


def plot_mean_and_range(ax, x, runs, color, label):
    """Plot the mean of several runs as a line and their min-max range as a band.

    ``runs`` has shape (number of runs, len(x)): one row per seed, as in chapter 06."""
    runs = np.array(runs)
    ax.plot(x, runs.mean(axis=0), color=color, label=label)
    ax.fill_between(x, runs.min(axis=0), runs.max(axis=0), color=color, alpha=0.25)


def show_table(header, rows):
    """Display a Markdown table: ``header`` is a list of column titles, ``rows`` a list of
    lists of cells (strings, already formatted)."""
    lines = [_table_row(header), "|" + "|".join(["---"] * len(header)) + "|"]
    lines += [_table_row(row) for row in rows]
    display(Markdown("\n".join(lines)))


def _table_row(cells):
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


# Chapter 03's staged graph of one feature's forward pass. Each node:
# (x, y, step, forward text, backward text, where the backward text goes: (dx, dy, align)).
_HALF_W, _HALF_H = 0.95, 0.32
_GRAPH_NODES = {
    "x": (0.0, 1.0, "", r"$x$", "", None),
    "1": (1.6, 2.5, "1", r"$\mu=\frac{1}{m}\Sigma_i\, x_i$",
          r"$dx \,{+}{=}\, d\mu/m$", (_HALF_W + 0.15, 0.0, "left")),
    "2": (3.4, 1.0, "2", r"$x_\mu = x-\mu$",
          r"$d\mu=-\Sigma_i\, dx_{\mu,i}$" "\n" r"$dx \,{+}{=}\, dx_\mu$", (-0.15, -0.42, "right")),
    "3": (3.4, -1.3, "3", r"$s = x_\mu^2$",
          r"$dx_\mu \,{+}{=}\, 2x_\mu\, ds$", (0, -0.42, "center")),
    "4": (5.8, -1.3, "4", r"$\sigma_B^2=\frac{1}{m}\Sigma_i\, s_i$",
          r"$ds = d\sigma_B^2/m$", (0, -0.42, "center")),
    "5": (8.2, -1.3, "5", r"$\sigma=\sqrt{\sigma_B^2+\epsilon}$",
          r"$d\sigma_B^2 = d\sigma/(2\sigma)$", (0, -0.42, "center")),
    "6": (10.6, -1.3, "6", r"$v = 1/\sigma$", r"$d\sigma = -dv/\sigma^2$", (0, -0.42, "center")),
    "7": (10.6, 1.0, "7", r"$\hat x = x_\mu v$",
          r"$dv=\Sigma_i\, d\hat x_i x_{\mu,i}$" "\n" r"$dx_\mu \,{+}{=}\, d\hat x\, v$",
          (0.15, -0.42, "left")),
    "8": (13.9, 1.0, "8", r"$z=\gamma\hat x$",
          r"$d\gamma=\Sigma_i\, dy_i\hat x_i$" "\n" r"$d\hat x=\gamma\,dy$", (0, -0.42, "center")),
    "9": (16.5, 1.0, "9", r"$y = z+\beta$",
          r"$d\beta=\Sigma_i\, dy_i$" "\n" r"$dz = dy$", (0, -0.42, "center")),
    "gamma": (13.9, 2.5, "", r"$\gamma$", "", None),
    "beta": (16.5, 2.5, "", r"$\beta$", "", None),
}
_GRAPH_EDGES = [("x", "1"), ("x", "2"), ("1", "2"), ("2", "3"), ("3", "4"), ("4", "5"),
                ("5", "6"), ("6", "7"), ("2", "7"), ("7", "8"), ("gamma", "8"), ("8", "9"),
                ("beta", "9")]


def _box_exit(center, towards):
    """Where the segment from a box's centre towards another point leaves the box."""
    d = np.subtract(towards, center)
    t = min(_HALF_W / abs(d[0]) if d[0] else np.inf, _HALF_H / abs(d[1]) if d[1] else np.inf)
    return center + 1.06 * t * d


def draw_computational_graph():
    """Draw Batch Normalization of one feature as chapter 03's staged graph of nine nodes:
    the forward pass in black, each node's backward step in red. Returns ``(fig, ax)``."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(12, 4.6))
    for cx, cy, step, forward_text, backward_text, where in _GRAPH_NODES.values():
        ax.add_patch(FancyBboxPatch((cx - _HALF_W, cy - _HALF_H), 2 * _HALF_W, 2 * _HALF_H,
                                    boxstyle="round,pad=0.02", ec="0.3",
                                    fc="#dbe9f6" if step else "#eeeeee"))
        ax.text(cx, cy, forward_text, ha="center", va="center", fontsize=10)
        if step:
            ax.text(cx - _HALF_W - 0.08, cy + _HALF_H, step, ha="right", va="center",
                    fontsize=10, fontweight="bold")
            ddx, ddy, align = where
            ax.text(cx + ddx, cy + ddy, backward_text, ha=align,
                    va="top" if ddy < 0 else "center", fontsize=9, color="tab:red",
                    linespacing=1.5)
    arrow = dict(arrowstyle="-|>", color="0.25", lw=1.2)
    for a, b in _GRAPH_EDGES:
        p, q = np.array(_GRAPH_NODES[a][:2]), np.array(_GRAPH_NODES[b][:2])
        ax.annotate("", xy=_box_exit(q, p), xytext=_box_exit(p, q), arrowprops=arrow)
    ax.annotate("", xy=(18.7, 1.0), xytext=(17.5, 1.0), arrowprops=arrow)
    ax.text(18.8, 1.0, "loss $L$", va="center", fontsize=10)
    ax.annotate("", xy=(17.5, 0.55), xytext=(18.7, 0.55),
                arrowprops=dict(arrow, color="tab:red"))
    ax.text(18.8, 0.55, r"$dy=\partial L/\partial y$", va="center", color="tab:red",
            fontsize=10)
    ax.set_xlim(-1.1, 20.6)
    ax.set_ylim(-2.3, 3.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Batch Normalization (one feature) as a staged graph: forward in black; "
                 "the backward of each node in red, run from step 9 down to step 1", fontsize=10)
    return fig, ax


# Chapter 05's redrawing of Figure 2 of Wu and He (2018): the (N, C, H*W) tensor as a block.
def _block_point(c, s, n):
    """Page coordinates of channel c, position s, example n: C to the right, H*W up and
    N into the page (an oblique projection)."""
    return (c + 0.45 * n, s + 0.35 * n)


def _block_quad(corners):
    return [_block_point(*p) for p in corners]


def _block_faces(n_examples, n_channels, n_positions):
    """The unit squares of the block's three visible faces: front, top and right."""
    front = [_block_quad([(c, s, 0), (c + 1, s, 0), (c + 1, s + 1, 0), (c, s + 1, 0)])
             for c in range(n_channels) for s in range(n_positions)]
    top = [_block_quad([(c, n_positions, n), (c + 1, n_positions, n),
                        (c + 1, n_positions, n + 1), (c, n_positions, n + 1)])
           for c in range(n_channels) for n in range(n_examples)]
    right = [_block_quad([(n_channels, s, n), (n_channels, s, n + 1),
                          (n_channels, s + 1, n + 1), (n_channels, s + 1, n)])
             for n in range(n_examples) for s in range(n_positions)]
    return front, top, right


def draw_channel_cubes(n_examples=6, n_channels=6, n_positions=6, groups=3):
    """Draw chapter 05's figure of the four normalizations (`eq-05-sets`): the (N, C, H*W)
    tensor as a block, once each for Batch, Layer, Instance and Group Norm, with the values
    that share one mean and variance shaded. Returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    NB, CB, SB = n_examples, n_channels, n_positions
    shared = {  # (first channel, last channel + 1, first example, last example + 1)
        "Batch Norm": (0, 1, 0, NB),
        "Layer Norm": (0, CB, 0, 1),
        "Instance Norm": (0, 1, 0, 1),
        "Group Norm": (0, CB // groups, 0, 1),
    }
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, (name, (c0, c1, n0, n1)) in zip(axes, shared.items()):
        for polys, gray in zip(_block_faces(NB, CB, SB), ("0.93", "0.85", "0.77")):
            ax.add_collection(PolyCollection(polys, facecolors=gray, edgecolors="0.3",
                                             linewidths=0.5))
        shaded = [_block_quad([(c0, SB, n0), (c1, SB, n0), (c1, SB, n1), (c0, SB, n1)])]
        if n0 == 0:  # the set reaches the front face
            shaded.append(_block_quad([(c0, 0, 0), (c1, 0, 0), (c1, SB, 0), (c0, SB, 0)]))
        if c1 == CB:  # the set reaches the right face
            shaded.append(_block_quad([(CB, 0, n0), (CB, 0, n1), (CB, SB, n1), (CB, SB, n0)]))
        ax.add_collection(PolyCollection(shaded, facecolors="tab:blue", alpha=0.75,
                                         edgecolors="0.2", linewidths=0.5))
        arrow = {"arrowstyle": "->"}
        ax.annotate("", xy=_block_point(CB, -0.6, 0), xytext=_block_point(0, -0.6, 0),
                    arrowprops=arrow)
        ax.annotate("", xy=_block_point(-0.6, SB, 0), xytext=_block_point(-0.6, 0, 0),
                    arrowprops=arrow)
        ax.annotate("", xy=_block_point(CB + 0.5, -0.3, NB),
                    xytext=_block_point(CB + 0.5, -0.3, 0), arrowprops=arrow)
        ax.text(*_block_point(CB / 2, -1.3, 0), "C (channels)", ha="center", va="center")
        ax.text(*_block_point(-1.2, SB / 2, 0), "H, W", ha="center", va="center", rotation=90)
        ax.text(*_block_point(CB + 1.0, -0.6, NB / 2), "N", ha="left", va="center")
        ax.set_title(name)
        ax.set_xlim(-1.8, CB + 0.45 * NB + 1.2)
        ax.set_ylim(-1.8, SB + 0.35 * NB + 0.5)
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle("Shaded: the values that share one mean and variance "
                 f"(Group Norm: {groups} groups)")
    fig.tight_layout()
    return fig, axes
