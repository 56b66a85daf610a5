"""The one PyTorch oracle: how bn_lib is compared with ``torch`` (chapter 07).

In the manner of ``numpy.testing``: conversions to and from torch, the comparison with
its tolerance table, and PyTorch's twin of a bn_lib layer or network. The tests, the
chapters, the course's grader, the benchmarks and the parity run of
:mod:`bn_lib.verification` all use them. torch is imported inside the functions, so
``import bn_lib`` stays NumPy-only; import this module by name.

Error metrics, each with one name used everywhere:

* ``max_abs_err = max|ours - ref|``;
* ``scaled_err = max_abs_err / max(1, max|ref|)``, :func:`scaled_error`: the criterion. A
  check passes when ``scaled_err <= tol``: relative above 1 and absolute below, so a
  quantity that is zero in exact arithmetic (dx for a batch of two) is judged by its
  rounding error, not by a ratio of two rounding errors;
* ``err_over_max_ref = max_abs_err / max|ref|``, reported beside it (chapter 07's table);
* *relative error* means one thing in this project, CS231n's ``|a - b| / (|a| + |b|)`` of
  the gradient checks, :func:`bn_lib.relative_error`; the oracle does not use it.

``tol`` comes from :data:`TOLERANCES`, by dtype and kind:

* float64: 1e-10 for everything. Both sides round at 1.1e-16 per operation; even a sum
  over m = 802,816 values in the worst (sequential) order stays near 1e-13.
* float32, element-wise outputs (y, dx): 1e-4. Each element is a few operations on O(1)
  values, rounded at 6e-8 each, plus the rounding of the mean and variance it uses;
  1e-4 leaves room for any order of those reductions and is far below any wrong formula.
* float32, reductions over m values (dgamma, dbeta, running statistics): 1e-3. Summed
  one value after another in float32, m zero-mean terms carry a rounding error whose
  ratio to the size of the sum is about eps * sqrt(m / 24), 2e-5 for m = 802,816 (eps =
  1.2e-7); the worst of 64 channels is a few times that. NumPy and GPUs sum in trees
  (far more accurate), but the tolerance must hold for any order.
* "exact" (counters such as ``num_batches_tracked``): 0.
* bfloat16 and float16 (the Triton kernels' inputs, chapter 07), element-wise: the output
  is rounded to 8 (bfloat16) or 11 (float16) significant bits on store, half a unit in the
  last place when rounded to nearest as a GPU does, a whole unit when truncated as Triton's
  interpreter does: 2**-7 (0.8%) and 2**-10 (0.1%) of |value|. 1e-2 and 2e-3 cover both,
  and no wrong formula. Their sums are float32 and keep float32's tolerance.

float32 cannot see an error smaller than its rounding: a biased running variance (off by
(m - 1) / m) escapes it for m = 802,816 but not the float64 checks, which are the proof.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "EPS", "TOLERANCES", "to_torch", "to_numpy", "dtype_name", "scaled_error", "compare",
    "assert_close", "make_inputs", "torch_batch_norm", "torch_twin",
]

EPS = 1e-5

TOLERANCES = {
    "float64": {"elementwise": 1e-10, "reduction": 1e-10, "exact": 0.0},
    "float32": {"elementwise": 1e-4, "reduction": 1e-3, "exact": 0.0},
    "bfloat16": {"elementwise": 1e-2, "reduction": 1e-3, "exact": 0.0},
    "float16": {"elementwise": 2e-3, "reduction": 1e-3, "exact": 0.0},
}

def to_torch(a, device="cpu", requires_grad=False):
    """A NumPy array as a torch tensor of the same dtype on ``device``."""
    import torch

    return torch.tensor(np.asarray(a), device=device, requires_grad=requires_grad)


def to_numpy(t):
    """A torch tensor (or anything array-like) as a NumPy array on the CPU; bfloat16,
    which NumPy lacks, becomes float32 (exactly)."""
    if hasattr(t, "detach"):
        t = t.detach().to("cpu")
        t = t.float() if str(t.dtype) == "torch.bfloat16" else t
        t = t.numpy()
    return np.asarray(t)


def dtype_name(dtype):
    """``"float32"`` for np.float32, ``"float32"``, torch.float32 or an array of it."""
    if not isinstance(dtype, type):  # np.float32 itself has a .dtype descriptor
        dtype = getattr(dtype, "dtype", dtype)
    if str(dtype).startswith("torch."):
        return str(dtype).removeprefix("torch.")
    if dtype in TOLERANCES:  # a name; "bfloat16" has no NumPy dtype
        return dtype
    return np.dtype(dtype).name


def scaled_error(ours, ref):
    """``max|ours - ref| / max(1, max|ref|)``: the error every check is judged by."""
    a = to_numpy(ours).astype(np.float64, copy=False)
    b = to_numpy(ref).astype(np.float64, copy=False)
    if a.shape != b.shape:
        raise ValueError(f"shape {a.shape} != reference shape {b.shape}")
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b))))


def compare(check, ours, ref, dtype, kind="elementwise", shape=None):
    """One check of ``ours`` against the reference ``ref``, as a dict (a report row).

    The row has ``max_abs_err``, ``err_over_max_ref``, ``scaled_err`` (the criterion),
    ``tolerance`` and ``passed`` (see the module docstring). Non-finite errors, a shape
    mismatch or, for element-wise outputs, a dtype other than ``dtype`` fail the check,
    with a ``note``. ``ours`` and ``ref`` may be NumPy arrays or torch tensors.
    """
    dtype = dtype_name(dtype)
    ours_dtype = dtype_name(ours) if hasattr(ours, "dtype") else None
    ours_arr, ref_arr = to_numpy(ours), to_numpy(ref)
    tol = TOLERANCES[dtype][kind]
    row = {"shape": list(shape) if shape is not None else list(ours_arr.shape),
           "dtype": dtype, "check": check, "kind": kind, "tolerance": tol}
    note = None
    if ours_arr.shape != ref_arr.shape:
        abs_err = err_over_max_ref = scaled_err = math.inf
        note = f"shape {ours_arr.shape} != reference shape {ref_arr.shape}"
    else:
        a = ours_arr.astype(np.float64, copy=False)
        b = ref_arr.astype(np.float64, copy=False)
        abs_err = float(np.max(np.abs(a - b))) if a.size else 0.0
        max_ref = float(np.max(np.abs(b))) if b.size else 0.0
        err_over_max_ref = (abs_err / max_ref if max_ref > 0
                            else (0.0 if abs_err == 0 else math.inf))
        scaled_err = scaled_error(a, b)
        if kind == "elementwise" and ours_dtype not in (None, dtype):
            note = f"returned {ours_dtype} for {dtype} input"
    finite = math.isfinite(abs_err) and math.isfinite(scaled_err)
    if note is None and not finite:
        note = "non-finite values"
    row.update(max_abs_err=abs_err, err_over_max_ref=err_over_max_ref,
               scaled_err=scaled_err,
               passed=bool(finite and scaled_err <= tol and note is None))
    if note:
        row["note"] = note
    return row


def assert_close(ours, ref, dtype, kind="elementwise", what="value"):
    """Raise ``AssertionError`` naming ``what`` and the error unless :func:`compare` passes.

    ``dtype`` picks the row of :data:`TOLERANCES` (a name, a NumPy or a torch dtype).
    """
    dtype = dtype_name(dtype)
    row = compare(what, ours, ref, dtype, kind)
    if not row["passed"]:
        detail = row.get("note") or (
            f"max abs error {row['max_abs_err']:.3g} > {row['tolerance']:.0e} * "
            f"max(1, max|ref|) (scaled error {row['scaled_err']:.3g})")
        raise AssertionError(f"{what} ({dtype}, {kind}): {detail}")
    return row


def make_inputs(shape, dtype, rng):
    """``x, gamma, beta, dy`` in ``dtype``; x has a different non-zero mean and scale per
    channel (so centring matters), like cs231n's ``5 * randn + 12``."""
    c = shape[1]
    bshape = (1, c) + (1,) * (len(shape) - 2)
    loc = rng.uniform(-3.0, 12.0, c).astype(dtype).reshape(bshape)
    scale = rng.uniform(0.5, 5.0, c).astype(dtype).reshape(bshape)
    x = rng.standard_normal(shape, dtype=dtype)
    x *= scale
    x += loc
    gamma = rng.uniform(0.5, 1.5, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal(shape, dtype=dtype)
    return x, gamma, beta, dy


def torch_batch_norm(ndim, num_features, eps=EPS, momentum=0.1, affine=True,
                     track_running_stats=True, dtype="float64", device="cpu"):
    """PyTorch's BatchNorm for input with ``ndim`` axes: ``nn.BatchNorm1d`` for (N, C) and
    (N, C, L), ``BatchNorm2d`` for (N, C, H, W), ``BatchNorm3d`` for (N, C, D, H, W)."""
    import torch

    classes = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
               5: torch.nn.BatchNorm3d}
    if ndim not in classes:
        raise ValueError(f"BatchNorm takes input with 2 to 5 axes, got ndim={ndim}")
    return classes[ndim](num_features, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, device=device,
                         dtype=getattr(torch, dtype_name(dtype)))


def torch_twin(module, ndim=2, dtype="float64", device="cpu"):
    """The same layer or network in PyTorch, with ``module``'s parameters, running
    statistics and mode (``train()`` or ``eval()``) copied in.

    ``module`` is a bn_lib ``Sequential``, ``Residual``, ``Linear``, ``Conv2d``,
    ``BatchNorm``, ``LayerNorm``, ``GroupNorm``, ``ReLU``, ``Sigmoid``, ``Tanh`` or
    ``Flatten``. ``ndim`` is the number of axes of the input (it picks BatchNorm1d/2d/3d);
    inside a network, a ``Conv2d`` makes it 4 and a ``Flatten`` 2.
    """
    import torch

    twin, _ = _twin(module, ndim, {"dtype": getattr(torch, dtype_name(dtype)),
                                   "device": device})
    return twin.train(module.training)


def _twin(layer, ndim, where):
    """``(the torch twin of layer, the ndim of its output)``."""
    import torch

    import bn_lib

    activations = {bn_lib.ReLU: torch.nn.ReLU, bn_lib.Sigmoid: torch.nn.Sigmoid,
                   bn_lib.Tanh: torch.nn.Tanh}
    if isinstance(layer, bn_lib.Sequential):
        twins = []
        for inner in layer.layers:
            twin, ndim = _twin(inner, ndim, where)
            twins.append(twin)
        return torch.nn.Sequential(*twins), ndim
    if isinstance(layer, bn_lib.Residual):
        return _residual(_twin(layer.branch, ndim, where)[0]), ndim
    if type(layer) in activations:
        return activations[type(layer)](), ndim
    if isinstance(layer, bn_lib.Flatten):
        return torch.nn.Flatten(), 2
    if isinstance(layer, bn_lib.Linear):
        out_features, in_features = layer.W.shape
        twin = torch.nn.Linear(in_features, out_features, bias=layer.has_bias, **where)
    elif isinstance(layer, bn_lib.Conv2d):
        out_channels, in_channels, kernel_size, _ = layer.W.shape
        twin = torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride=layer.stride,
                               padding=layer.padding, bias=layer.has_bias, **where)
        ndim = 4
    elif isinstance(layer, bn_lib.BatchNorm) and not isinstance(layer, bn_lib.BatchRenorm):
        twin = torch_batch_norm(ndim, layer.num_features, layer.eps, layer.momentum,
                                layer.affine, layer.track_running_stats, **where)
    elif isinstance(layer, bn_lib.LayerNorm):
        twin = torch.nn.LayerNorm(layer.num_features, eps=layer.eps, **where)
    elif isinstance(layer, bn_lib.GroupNorm):
        twin = torch.nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps,
                                  **where)
    else:
        raise TypeError(f"torch_twin has no PyTorch counterpart for {layer!r}")
    with torch.no_grad():  # copy_ casts to the twin's dtype and device
        # PyTorch orders parameters as bn_lib does: (weight, bias) = (W, b) or (gamma, beta)
        for tensor, (value, _) in zip(twin.parameters(), layer.parameters(), strict=True):
            if tuple(tensor.shape) != value.shape:
                raise ValueError(f"{layer!r}: parameter of shape {value.shape} does not "
                                 f"fit {tuple(tensor.shape)}")
            tensor.copy_(torch.from_numpy(np.asarray(value)))
        if isinstance(layer, bn_lib.BatchNorm) and layer.track_running_stats:
            twin.running_mean.copy_(torch.from_numpy(np.asarray(layer.running_mean)))
            twin.running_var.copy_(torch.from_numpy(np.asarray(layer.running_var)))
            twin.num_batches_tracked.fill_(layer.num_batches_tracked)
    return twin, ndim


def _residual(branch):
    """bn_lib's ``Residual`` in PyTorch: ``x + branch(x)``."""
    import torch

    class Residual(torch.nn.Module):
        def __init__(self, branch):
            super().__init__()
            self.branch = branch

        def forward(self, x):
            return x + self.branch(x)

    return Residual(branch)
