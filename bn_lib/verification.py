"""The parity run of chapter 07: every check of Batch Normalization against PyTorch, over
shapes and dtypes, on the CPU or a CUDA GPU; and the formula as separate torch operations
(the "composed" version that chapter 07 times beside PyTorch's fused kernel).

Built on the oracle of :mod:`bn_lib.testing` (conversions, :func:`~bn_lib.testing.compare`
and its tolerance table); ``python -m tools.verify`` records what it returns. torch is
imported inside the functions, so ``import bn_lib`` stays NumPy-only.
"""

from __future__ import annotations

import numpy as np

from .testing import EPS, compare, make_inputs, to_torch, torch_batch_norm

__all__ = [
    "QUICK_SHAPES", "FULL_SHAPES", "DTYPES", "STEPS", "DeviceUnavailable", "check_case",
    "resolve_device", "run_verification", "composed_forward", "composed_backward",
    "composed_forward_backward",
]

STEPS = 3  # training steps before the running statistics are compared
# (2, 5): the smallest batch (m = 2, unbiased factor 2); the large 4-D shape is a
# ResNet-50 first-stage activation: m = 256 * 56 * 56 = 802,816 values per channel.
QUICK_SHAPES = [(2, 5), (32, 16), (16, 8, 10), (8, 4, 6, 6)]
FULL_SHAPES = [(2, 5), (32, 16), (1024, 512), (16, 8, 10), (8, 4, 6, 6),
               (32, 64, 28, 28), (256, 64, 56, 56)]
DTYPES = ("float64", "float32")



class DeviceUnavailable(RuntimeError):
    """The requested device cannot be used (and falling back was not allowed)."""



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
