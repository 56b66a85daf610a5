"""Batch Normalization in Triton: input checks, launch configuration and autograd
(chapter 07). The kernels, and what each pass reads and writes, are in ``kernels.py``.

The interface is bn_lib's functional core on PyTorch tensors::

    y, cache = batch_norm_forward(x, gamma, beta, eps=1e-5)      # training mode
    dx, dgamma, dbeta = batch_norm_backward(dy, cache)
    y = batch_norm(x, gamma, beta)                                # differentiable

x is (N, C) or (N, C, ...) in float32, bfloat16 or float16, on a CUDA device, or on the
CPU under Triton's interpreter (``TRITON_INTERPRET=1`` set before bn_triton is imported).
Statistics and sums are accumulated in float32; y and dx come back in x's dtype, dgamma
and dbeta in gamma's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton

from . import kernels

__all__ = ["INTERPRETED", "SUPPORTED_DTYPES", "LaunchConfig", "BatchNormCache",
           "launch_config", "batch_norm_forward", "batch_norm_backward",
           "BatchNormFunction", "batch_norm"]

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# True when TRITON_INTERPRET=1 was set before the kernels were defined: they then run as
# NumPy code on the CPU, which is how CI tests them without a GPU
INTERPRETED = not isinstance(kernels.stats_kernel, triton.runtime.JITFunction)

TILE_BYTES = 8192  # bytes of x one program loads per step: 2048 float32, 4096 bfloat16
PROGRAMS_PER_SM = 8  # enough resident programs to keep the memory system busy
MAX_ROW_GROUPS = 1024  # partial results per channel, merged by each program of pass 2


@dataclass(frozen=True)
class LaunchConfig:
    """How the (N, C, L) view of x is cut into programs; the same for all four kernels.

    The grid is (ceil(C / block_c), row_groups): a program owns block_c channels and
    rows_per_program rows, loaded (block_n, block_c, block_l) elements at a time.
    """

    block_n: int
    block_c: int
    block_l: int
    rows_per_program: int
    row_groups: int
    num_warps: int

    def grid(self, num_channels):
        return (triton.cdiv(num_channels, self.block_c), self.row_groups)


@dataclass
class BatchNormCache:
    """What the backward pass needs: x as (N, C, L), mean and inv_std (float32, (C,))."""

    x: torch.Tensor
    shape: torch.Size
    mean: torch.Tensor
    inv_std: torch.Tensor
    gamma: torch.Tensor
    config: LaunchConfig


def _next_power_of_2(n):
    return 1 << max(0, math.ceil(math.log2(n)))


def _row_block(length, widest=1024, narrowest=16):
    """Block width along a row of ``length`` contiguous values: the widest power of two
    that pads the row by at most 1/8 (masked lanes cost instructions, not bytes)."""
    if length < narrowest:
        return _next_power_of_2(length)
    widths = [w for w in (2**k for k in range(4, 11)) if narrowest <= w <= widest]

    def padding(w):
        return (triton.cdiv(length, w) * w - length) / length

    fitting = [w for w in widths if padding(w) <= 1 / 8]
    return max(fitting) if fitting else min(widths, key=padding)


def _num_sms(device):
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1  # the interpreter runs one program at a time


def launch_config(shape, dtype, device="cuda", tile_bytes=TILE_BYTES, num_warps=None,
                  programs_per_sm=PROGRAMS_PER_SM, num_sms=None):
    """The default :class:`LaunchConfig` for input of ``shape`` and ``dtype``.

    Images (L > 1): one channel per program and block_l values of a row (contiguous);
    (N, C): up to 128 neighbouring channels (contiguous) and block_n rows. A tile holds
    ``tile_bytes`` of x. The rows are split into groups until the grid has about
    ``programs_per_sm`` programs per multiprocessor (``num_sms``, read off ``device``
    when not given).
    """
    n, c = shape[0], shape[1]
    length = math.prod(shape[2:])
    itemsize = torch.empty((), dtype=dtype).element_size()
    tile = max(1, tile_bytes // itemsize)
    if length > 1:
        block_c, block_l = 1, _row_block(length)
    else:
        block_c, block_l = min(_next_power_of_2(c), 128), 1
    block_n = max(1, min(_next_power_of_2(n), tile // (block_c * block_l)))
    channel_blocks = triton.cdiv(c, block_c)
    if num_sms is None:
        num_sms = _num_sms(torch.device(device))
    wanted = programs_per_sm * num_sms
    groups = min(max(1, triton.cdiv(wanted, channel_blocks)), triton.cdiv(n, block_n),
                 MAX_ROW_GROUPS)
    rows = triton.cdiv(triton.cdiv(n, groups), block_n) * block_n
    if num_warps is None:
        num_warps = 4 if block_n * block_c * block_l <= 2048 else 8
    return LaunchConfig(block_n=block_n, block_c=block_c, block_l=block_l,
                        rows_per_program=rows, row_groups=triton.cdiv(n, rows),
                        num_warps=num_warps)


def _check_input(x, gamma, beta):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (N, C, ...), got shape "
                         f"{tuple(x.shape)}")
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"x has dtype {x.dtype}; bn_triton computes in float32 and accepts "
                        "float32, bfloat16 or float16 (for float64 use bn_lib or torch)")
    c = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta)):
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != (c,):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"{name} must be a tensor of shape ({c},), one value per "
                             f"channel, got {got}")
        if v.device != x.device:
            raise ValueError(f"{name} is on {v.device} but x is on {x.device}")
    if x.numel() // c <= 1:
        raise ValueError("Expected more than 1 value per channel when training, got input "
                         f"size {tuple(x.shape)}")
    if x.numel() >= 2**31:
        raise ValueError(f"x has {x.numel()} elements; the kernels index with 32-bit "
                         "integers (at most 2**31 - 1)")
    if x.device.type == "cpu" and not INTERPRETED:
        raise RuntimeError("x is on the CPU, where Triton runs only in its interpreter: set "
                           "TRITON_INTERPRET=1 before importing bn_triton, or use a CUDA "
                           "tensor")


def _as_ncl(t):
    return t.contiguous().view(t.shape[0], t.shape[1], -1)


def batch_norm_forward(x, gamma, beta, eps=1e-5, running_mean=None, running_var=None,
                       momentum=0.1, config=None):
    """Training-mode BN (`eq-02-mean` to `eq-02-scale-shift`) in two passes over x.

    x: (N, C, ...); gamma, beta: (C,). Returns ``(y, cache)``: y has x's shape and
    dtype; ``cache`` (x, mean and inv_std of shape (C,), float32) feeds
    :func:`batch_norm_backward`. With ``running_mean`` and ``running_var`` (shape (C,)),
    they are updated in place as ``F.batch_norm`` does: momentum weights the new batch,
    and the variance is the unbiased one (chapter 04).
    """
    _check_input(x, gamma, beta)
    if (running_mean is None) != (running_var is None):
        raise ValueError("pass both running_mean and running_var, or neither")
    x3 = _as_ncl(x)
    n, c, length = x3.shape
    cfg = config or launch_config(x.shape, x.dtype, x.device)
    update = running_mean is not None
    if update:
        for name, v in (("running_mean", running_mean), ("running_var", running_var)):
            if tuple(v.shape) != (c,) or v.device != x.device or not v.is_contiguous():
                raise ValueError(f"{name} must be a contiguous tensor of shape ({c},) on "
                                 f"{x.device}")
    f32 = dict(dtype=torch.float32, device=x.device)
    part_mean = torch.empty((cfg.row_groups, c), **f32)
    part_m2 = torch.empty((cfg.row_groups, c), **f32)
    mean, inv_std = torch.empty(c, **f32), torch.empty(c, **f32)
    y = torch.empty_like(x3)
    blocks = dict(L=length, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, BLOCK_L=cfg.block_l,
                  num_warps=cfg.num_warps)
    grid = cfg.grid(c)
    gamma, beta = gamma.contiguous(), beta.contiguous()
    kernels.stats_kernel[grid](x3, part_mean, part_m2, n, c, cfg.rows_per_program, **blocks)
    kernels.normalize_kernel[grid](
        x3, y, gamma, beta, part_mean, part_m2, mean, inv_std,
        running_mean if update else mean, running_var if update else inv_std,
        n, c, cfg.rows_per_program, cfg.row_groups, float(n * length), float(eps),
        float(momentum),
        BLOCK_P=_next_power_of_2(cfg.row_groups), UPDATE_RUNNING=update, **blocks)
    cache = BatchNormCache(x=x3, shape=x.shape, mean=mean, inv_std=inv_std, gamma=gamma,
                           config=cfg)
    return y.view(x.shape), cache


def batch_norm_backward(dy, cache):
    """Gradients ``(dx, dgamma, dbeta)`` by the compact formula `eq-03-dx`, in two passes
    over dy and x.

    dy: the shape of the forward input; returns dx of x's shape and dtype, dgamma and
    dbeta of shape (C,) in gamma's dtype."""
    if not isinstance(dy, torch.Tensor) or dy.shape != cache.shape:
        got = tuple(dy.shape) if isinstance(dy, torch.Tensor) else type(dy).__name__
        raise ValueError(f"dy must be a tensor of the forward input's shape "
                         f"{tuple(cache.shape)}, got {got}")
    if dy.device != cache.x.device:
        raise ValueError(f"dy is on {dy.device} but the forward input was on "
                         f"{cache.x.device}")
    x3, cfg = cache.x, cache.config
    n, c, length = x3.shape
    dy3 = _as_ncl(dy)
    f32 = dict(dtype=torch.float32, device=x3.device)
    part_dy = torch.empty((cfg.row_groups, c), **f32)
    part_dy_xc = torch.empty((cfg.row_groups, c), **f32)
    dgamma = torch.empty(c, dtype=cache.gamma.dtype, device=x3.device)
    dbeta = torch.empty_like(dgamma)
    dx = torch.empty_like(x3)
    blocks = dict(L=length, BLOCK_N=cfg.block_n, BLOCK_C=cfg.block_c, BLOCK_L=cfg.block_l,
                  num_warps=cfg.num_warps)
    grid = cfg.grid(c)
    kernels.grad_sums_kernel[grid](dy3, x3, cache.mean, part_dy, part_dy_xc, n, c,
                                   cfg.rows_per_program, **blocks)
    kernels.grad_input_kernel[grid](
        dy3, x3, dx, cache.mean, cache.inv_std, cache.gamma, part_dy, part_dy_xc, dgamma,
        dbeta, n, c, cfg.rows_per_program, cfg.row_groups, float(n * length),
        BLOCK_P=_next_power_of_2(cfg.row_groups), **blocks)
    return dx.view(cache.shape), dgamma, dbeta


class BatchNormFunction(torch.autograd.Function):
    """The two pairs of kernels as one differentiable operation (gradients for x, gamma and
    beta; the running statistics, if given, are updated and not differentiated)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, running_mean, running_var, momentum, eps):
        y, cache = batch_norm_forward(x, gamma, beta, eps, running_mean, running_var,
                                      momentum)
        ctx.save_for_backward(cache.x, cache.mean, cache.inv_std, cache.gamma)
        ctx.shape, ctx.config = cache.shape, cache.config
        return y

    @staticmethod
    def backward(ctx, dy):
        x3, mean, inv_std, gamma = ctx.saved_tensors
        cache = BatchNormCache(x=x3, shape=ctx.shape, mean=mean, inv_std=inv_std,
                               gamma=gamma, config=ctx.config)
        dx, dgamma, dbeta = batch_norm_backward(dy, cache)
        return dx, dgamma, dbeta, None, None, None, None


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, momentum=0.1,
               eps=1e-5):
    """Training-mode BN as a differentiable function, like ``F.batch_norm(...,
    training=True)``: ``y = batch_norm(x, gamma, beta); y.backward(dy)``."""
    return BatchNormFunction.apply(x, gamma, beta, running_mean, running_var, momentum, eps)
