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
change to ``sys.path``. It imports only NumPy and IPython at import time; torch,
matplotlib and threadpoolctl are imported by the functions that need them.
"""

from __future__ import annotations

import timeit

import numpy as np
from IPython.display import Markdown, display

__all__ = [
    "best_time",
    "draw_computational_graph",
    "moving_average",
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


def rounded(a, digits=4):
    """``a`` rounded to ``digits`` decimals for printing, with -0.0 turned into 0.0."""
    return np.round(a, digits) + 0.0


def best_time(fn, repeat=3):
    """The fastest of ``repeat`` calls of ``fn()``, in seconds (the least disturbed one)."""
    return min(timeit.repeat(fn, number=1, repeat=repeat))


def moving_average(values, width):
    """Mean of each window of ``width`` consecutive values: ``len(values) - width + 1`` means."""
    return np.convolve(values, np.ones(width) / width, mode="valid")


def show_table(header, rows):
    """Display a Markdown table: ``header`` is a list of column titles, ``rows`` a list of
    lists of cells (strings, already formatted)."""
    lines = [_table_row(header), _table_row(["---"] * len(header))]
    lines += [_table_row(row) for row in rows]
    display(Markdown("\n".join(lines)))


def _table_row(cells):
    return "| " + " | ".join(cells) + " |"


def torch_twin(model):
    """The same network in PyTorch (float64), with ``model``'s parameters and running
    statistics copied in.

    ``model`` is a ``bn_lib.Sequential`` of ``Linear``, ``BatchNorm`` (on (N, C) input),
    ``LayerNorm``, ``GroupNorm``, ``ReLU``, ``Sigmoid`` and ``Tanh`` layers. The copy starts
    in the mode ``model`` is in (``train()`` or ``eval()``).
    """
    import torch

    import bn_lib

    def copy_into(tensor, array):
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(np.asarray(array, dtype=np.float64)))

    f64 = {"dtype": torch.float64}
    activations = {bn_lib.ReLU: torch.nn.ReLU, bn_lib.Sigmoid: torch.nn.Sigmoid,
                   bn_lib.Tanh: torch.nn.Tanh}
    twins = []
    for layer in model.layers:
        if isinstance(layer, bn_lib.Linear):
            out_features, in_features = layer.W.shape
            twin = torch.nn.Linear(in_features, out_features, bias=layer.has_bias, **f64)
        elif isinstance(layer, bn_lib.BatchNorm):
            twin = torch.nn.BatchNorm1d(layer.num_features, eps=layer.eps,
                                        momentum=layer.momentum, **f64)
        elif isinstance(layer, bn_lib.LayerNorm):
            twin = torch.nn.LayerNorm(layer.num_features, eps=layer.eps, **f64)
        elif isinstance(layer, bn_lib.GroupNorm):
            twin = torch.nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps, **f64)
        elif type(layer) in activations:
            twin = activations[type(layer)]()
        else:
            raise TypeError(f"torch_twin has no PyTorch counterpart for {layer!r}")
        # PyTorch orders parameters as bn_lib does: (weight, bias) = (W, b) or (gamma, beta)
        for tensor, (value, _) in zip(twin.parameters(), layer.parameters(), strict=True):
            if tuple(tensor.shape) != value.shape:
                raise ValueError(f"{layer!r}: parameter of shape {value.shape} does not fit "
                                 f"{tuple(tensor.shape)}")
            copy_into(tensor, value)
        if isinstance(layer, bn_lib.BatchNorm):
            copy_into(twin.running_mean, layer.running_mean)
            copy_into(twin.running_var, layer.running_var)
            twin.num_batches_tracked.fill_(layer.num_batches_tracked)
        twins.append(twin)
    return torch.nn.Sequential(*twins).train(model.training)


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
