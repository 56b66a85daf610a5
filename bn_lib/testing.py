"""The one PyTorch oracle: bn_lib against ``torch`` on any device (chapter 07).

In the manner of ``numpy.testing``: conversions to and from torch, the comparison with
its tolerance table, and the parity checks of Batch Normalization that the tests
(``tests/test_parity_torch.py``), chapter 07 and the verification command
(``python -m tools.verify``) all use. torch is imported inside the functions, so
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
    "EPS", "TOLERANCES", "QUICK_SHAPES", "FULL_SHAPES", "DTYPES", "DeviceUnavailable",
    "to_torch", "to_numpy", "scaled_error", "compare", "assert_close", "make_inputs",
    "torch_batch_norm", "torch_twin", "check_case", "resolve_device", "run_verification",
    "composed_forward", "composed_backward", "composed_forward_backward",
]

EPS = 1e-5
STEPS = 3  # training steps before the running statistics are compared

TOLERANCES = {
    "float64": {"elementwise": 1e-10, "reduction": 1e-10, "exact": 0.0},
    "float32": {"elementwise": 1e-4, "reduction": 1e-3, "exact": 0.0},
    "bfloat16": {"elementwise": 1e-2, "reduction": 1e-3, "exact": 0.0},
    "float16": {"elementwise": 2e-3, "reduction": 1e-3, "exact": 0.0},
}

# (2, 5): the smallest batch (m = 2, unbiased factor 2); the large 4-D shape is a
# ResNet-50 first-stage activation: m = 256 * 56 * 56 = 802,816 values per channel.
QUICK_SHAPES = [(2, 5), (32, 16), (16, 8, 10), (8, 4, 6, 6)]
FULL_SHAPES = [(2, 5), (32, 16), (1024, 512), (16, 8, 10), (8, 4, 6, 6),
               (32, 64, 28, 28), (256, 64, 56, 56)]
DTYPES = ("float64", "float32")


class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used (and falling back was not allowed)."""


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


def check_case(shape, dtype, device="cpu", implementation=None, steps=STEPS, seed=0,
               momenta=(0.1, None)):
    """Every parity check of Batch Normalization for one (shape, dtype), as report rows.

    Training forward ``y`` and backward ``dx, dgamma, dbeta`` (``batch_norm_forward`` and
    ``batch_norm_backward`` against ``F.batch_norm`` and autograd); the running statistics
    and ``num_batches_tracked`` after ``steps`` batches with different statistics, for each
    momentum (``BatchNorm`` against ``nn.BatchNorm``; None is the cumulative average);
    eval-mode ``y`` and ``dx`` with the running statistics of the first momentum.
    ``implementation`` (default bn_lib) is anything with ``batch_norm_forward``,
    ``batch_norm_backward`` and ``BatchNorm``: chapter 07 passes a wrong one to show that
    the check can fail.
    """
    import torch
    import torch.nn.functional as F

    import bn_lib

    impl = bn_lib if implementation is None else implementation
    rng = np.random.default_rng([seed, *shape, DTYPES.index(dtype)])
    x, gamma, beta, dy = make_inputs(shape, np.dtype(dtype), rng)
    rows = []

    def add(check, ours, ref, kind):
        rows.append(compare(check, ours, ref, dtype, kind, shape=shape))

    y, cache = impl.batch_norm_forward(x, gamma, beta, EPS)
    xt, gt, bt = (to_torch(a, device, requires_grad=True) for a in (x, gamma, beta))
    dyt = to_torch(dy, device)
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
    add("train forward y", y, yt, "elementwise")
    dx, dgamma, dbeta = impl.batch_norm_backward(dy, cache)
    dxt, dgt, dbt = torch.autograd.grad(yt, (xt, gt, bt), dyt)
    add("train backward dx", dx, dxt, "elementwise")
    add("train backward dgamma", dgamma, dgt, "reduction")
    add("train backward dbeta", dbeta, dbt, "reduction")
    del y, cache, yt, dx, dxt, xt

    layers = {}
    for momentum in momenta:
        label = "cumulative" if momentum is None else f"momentum {momentum}"
        ours = impl.BatchNorm(shape[1], eps=EPS, momentum=momentum, dtype=np.dtype(dtype))
        ours.gamma[...] = gamma
        ours.beta[...] = beta
        theirs = torch_batch_norm(len(shape), shape[1], EPS, momentum, dtype=dtype,
                                  device=device)
        with torch.no_grad():
            theirs.weight.copy_(to_torch(gamma, device))
            theirs.bias.copy_(to_torch(beta, device))
        layers[label] = (ours, theirs)
    for step in range(steps):  # batches with different statistics at every step
        xs = x if step == 0 else (x * (1 + 0.25 * step) + 0.5 * step).astype(dtype)
        xst = to_torch(xs, device)
        for ours, theirs in layers.values():
            ours.train().forward(xs)
            with torch.no_grad():
                theirs.train()(xst)
    for label, (ours, theirs) in layers.items():
        add(f"running_mean ({label})", ours.running_mean, theirs.running_mean, "reduction")
        add(f"running_var ({label})", ours.running_var, theirs.running_var, "reduction")
        add(f"num_batches_tracked ({label})", np.asarray(ours.num_batches_tracked),
            theirs.num_batches_tracked, "exact")

    ours, theirs = next(iter(layers.values()))
    y_eval = ours.eval().forward(x)
    xt = to_torch(x, device, requires_grad=True)
    yt = theirs.eval()(xt)
    add("eval forward y", y_eval, yt, "elementwise")
    (dxt,) = torch.autograd.grad(yt, (xt,), dyt)
    add("eval backward dx", ours.backward(dy), dxt, "elementwise")
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)
    return rows


def resolve_device(requested="auto", require=False):
    """Return ``(device, note)``: the device to check, and why it differs from the request.

    ``auto`` is CUDA when available, else the CPU. A CUDA request on a machine without
    CUDA falls back to the CPU with a note, or raises :class:`DeviceUnavailable` when
    ``require`` is true.
    """
    import torch

    if requested == "auto":
        return ("cuda" if torch.cuda.is_available() else "cpu"), None
    if requested.startswith("cuda"):
        if torch.cuda.is_available():
            return requested, None
        why = (f"CUDA was requested but torch.cuda.is_available() is False (PyTorch "
               f"{torch.__version__}, built for CUDA {torch.version.cuda})")
        if require:
            raise DeviceUnavailable(why)
        return "cpu", why + "; the CPU was checked instead"
    if requested == "cpu":
        return "cpu", None
    raise DeviceUnavailable(f"unknown device {requested!r}: use auto, cpu, cuda or cuda:N")


def run_verification(device="auto", quick=False, shapes=None, dtypes=DTYPES, steps=STEPS,
                     implementation=None, seed=0, require_device=False, progress=None):
    """:func:`check_case` over every shape and dtype on ``device``.

    Returns ``{"device", "fallback", "checks", "n_checks", "n_failed", "passed"}``;
    ``progress``, if given, is called with one line of text per case.
    """
    device, note = resolve_device(device, require=require_device)
    shapes = shapes if shapes is not None else (QUICK_SHAPES if quick else FULL_SHAPES)
    say = progress or (lambda line: None)
    if note:
        say(f"NOTE: {note}")
    checks = []
    for shape in shapes:
        for dtype in dtypes:
            rows = check_case(tuple(shape), dtype, device, implementation, steps, seed)
            checks.extend(rows)
            failed = [r for r in rows if not r["passed"]]
            say(f"  {str(tuple(shape)):<20} {dtype:<8} {len(rows) - len(failed):2d}/"
                f"{len(rows)} passed, largest error/max(1,|torch|) "
                f"{max(r['scaled_err'] for r in rows):.2e}")
            for r in failed:
                say(f"    FAILED {r['check']}: error {r['scaled_err']:.3e} > "
                    f"{r['tolerance']:.0e}" + (f" ({r['note']})" if "note" in r else ""))
    n_failed = sum(not r["passed"] for r in checks)
    return {"device": str(device).split(":")[0], "fallback": note, "checks": checks,
            "n_checks": len(checks), "n_failed": n_failed, "passed": n_failed == 0}


def composed_forward(x, gamma, beta, eps=EPS):
    """The forward formula (chapter 02, equations `eq-02-mean` to `eq-02-scale-shift`) as separate
    torch operations: what a from-scratch implementation looks like when moved to a GPU
    unchanged. Returns ``(y, x_hat, inv_std)``; x: (N, C, ...) tensor, gamma, beta: (C,)."""
    dims = [0, *range(2, x.ndim)]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(dim=dims, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=dims, keepdim=True)
    inv_std = (var + eps).rsqrt()
    x_hat = centred * inv_std
    return x_hat * gamma.view(shape) + beta.view(shape), x_hat, inv_std


def composed_backward(dy, x_hat, inv_std, gamma):
    """The compact backward formula (chapter 03) as separate torch operations.
    Returns ``(dx, dgamma, dbeta)``."""
    dims = [0, *range(2, dy.ndim)]
    shape = (1, -1) + (1,) * (dy.ndim - 2)
    m = dy.numel() // dy.shape[1]
    dbeta = dy.sum(dim=dims)
    dgamma = (dy * x_hat).sum(dim=dims)
    dx = (gamma.view(shape) * inv_std) * (
        dy - x_hat * (dgamma / m).view(shape) - (dbeta / m).view(shape))
    return dx, dgamma, dbeta


def composed_forward_backward(x, gamma, beta, dy, eps=EPS):
    """Both composed passes: ``(y, dx, dgamma, dbeta)``."""
    y, x_hat, inv_std = composed_forward(x, gamma, beta, eps)
    dx, dgamma, dbeta = composed_backward(dy, x_hat, inv_std, gamma)
    return y, dx, dgamma, dbeta
