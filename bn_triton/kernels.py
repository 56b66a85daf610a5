"""Batch Normalization from scratch in Triton: the four kernels (chapter 07, section
"Batch Normalization in Triton").

Read next to chapter 03's compact formula `eq-03-dx`. The input is viewed as
(N, C, L), contiguous, with L = H * W for images and L = 1 for (N, C); channel c's m = N * L
values are the rows ``x[n, c, :]``. Every kernel walks over the same tiles: a program owns
``BLOCK_C`` channels and a group of ``rows_per_program`` rows n, and loads
(BLOCK_N, BLOCK_C, BLOCK_L) elements at a time (BLOCK_C = 1 for images, where a row is
contiguous; BLOCK_L = 1 for (N, C), where the channels are).

Forward, two passes over x (traffic 3S, S = numel * itemsize):

1. ``stats_kernel`` reads x and writes, per program and channel, the mean and the sum of
   squared deviations M2 of the values it saw (`eq-02-mean`, `eq-02-var`).
2. ``normalize_kernel`` merges those partial statistics (Chan et al.'s formula), then reads
   x again and writes y = (x - mean) * gamma * inv_std + beta (`eq-02-normalize`,
   `eq-02-scale-shift`).

Backward, two passes over x and dy (traffic 5S):

3. ``grad_sums_kernel`` reads dy and x and writes partial sums of dy and dy * (x - mean),
   the two per-channel sums of `eq-03-dx`: dbeta = sum(dy), dgamma = sum(dy * x_hat).
4. ``grad_input_kernel`` adds up the partial sums, then reads dy and x again and writes
   dx = gamma * inv_std * (dy - dbeta / m - x_hat * dgamma / m), `eq-03-dx`.

Accumulation is float32 whatever the input dtype (bfloat16 and float16 are converted on
load, and y and dx are rounded back to it on store). The sums of x are *shifted*: each
program subtracts K, the mean of its first tile, before accumulating, so a channel with
mean 1000 and standard deviation 1 sums values of size 1, and M2 = sum((x-K)^2) -
(sum(x-K))^2 / n loses only as many digits as K is off the program's mean, in standard
deviations (the one-pass E[x^2] - E[x]^2 would lose every digit there). The partial
results of the programs are then merged by the pairwise formula of Chan, Golub and
LeVeque, whose M2 adds terms of one sign only.
"""

import triton
import triton.language as tl


@triton.jit
def _tile(ptr, n0, stop, c, l0, C, L: tl.constexpr, BLOCK_N: tl.constexpr,
          BLOCK_L: tl.constexpr):
    """Pointers and mask of the tile x[n0:n0+BLOCK_N, c, l0:l0+BLOCK_L] of an (N, C, L)
    tensor, shape (BLOCK_N, BLOCK_C, BLOCK_L); ``c`` is a vector of BLOCK_C channels, and
    rows from ``stop`` on (the end of the program's group) are masked."""
    n = n0 + tl.arange(0, BLOCK_N)
    l = l0 + tl.arange(0, BLOCK_L)
    offsets = (n[:, None, None] * C + c[None, :, None]) * L + l[None, None, :]
    mask = (n[:, None, None] < stop) & (c[None, :, None] < C) & (l[None, None, :] < L)
    return ptr + offsets, mask


@triton.jit
def _sum_tile(t):
    """Sum a (BLOCK_N, BLOCK_C, BLOCK_L) tile over n and l: one value per channel."""
    return tl.sum(tl.sum(t, axis=2), axis=0)


@triton.jit
def _rows(N, rows_per_program):
    """The rows [start, stop) of this program's group (axis 1 of the grid)."""
    start = tl.program_id(1) * rows_per_program
    return start, tl.minimum(start + rows_per_program, N)


@triton.jit
def stats_kernel(x_ptr, part_mean_ptr, part_m2_ptr, N, C, rows_per_program,
                 L: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                 BLOCK_L: tl.constexpr):
    """Pass 1 of the forward: each program's mean and M2 per channel
    (`eq-02-mean`, `eq-02-var`).

    Writes part_mean[p, c] and part_m2[p, c] (float32, shape (P, C)) for the
    program p of grid axis 1; the count of values behind them, rows * L,
    follows from p.
    """
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    start, stop = _rows(N, rows_per_program)
    # K, a shift close to the data: the first tile's mean (module docstring)
    ptrs, mask = _tile(x_ptr, start, stop, c, 0, C, L, BLOCK_N, BLOCK_L)
    first = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    shift = _sum_tile(first) / tl.maximum(_sum_tile(mask.to(tl.float32)), 1.0)
    # per-lane running sums of (x - K) and (x - K)^2,
    # reduced across lanes once at the end
    acc = tl.zeros((BLOCK_N, BLOCK_C, BLOCK_L), dtype=tl.float32)
    acc_sq = tl.zeros((BLOCK_N, BLOCK_C, BLOCK_L), dtype=tl.float32)
    for n0 in range(start, stop, BLOCK_N):
        for l0 in range(0, L, BLOCK_L):
            ptrs, mask = _tile(x_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            d = tl.where(mask, x - shift[None, :, None], 0.0)
            acc += d
            acc_sq += d * d
    count = ((stop - start) * L).to(tl.float32)
    s1 = _sum_tile(acc)
    mean = shift + s1 / count
    m2 = _sum_tile(acc_sq) - s1 * (s1 / count)
    out = tl.program_id(1) * C + c
    tl.store(part_mean_ptr + out, mean, mask=c < C)
    tl.store(part_m2_ptr + out, tl.maximum(m2, 0.0), mask=c < C)


@triton.jit
def _merge_stats(part_mean_ptr, part_m2_ptr, c, N, C, rows_per_program, P, m,
                 L: tl.constexpr, BLOCK_P: tl.constexpr):
    """Merge the P partial (count, mean, M2) of channels c into the batch mean
    and the biased variance (Chan, Golub and LeVeque):

        M2 = sum M2_p + sum n_p (mean_p - mean)^2
    """
    p = tl.arange(0, BLOCK_P)
    rows = tl.minimum(tl.maximum(N - p * rows_per_program, 0), rows_per_program)
    count_p = (rows * L).to(tl.float32)[:, None]
    at = p[:, None] * C + c[None, :]
    ok = (p[:, None] < P) & (c[None, :] < C)
    mean_p = tl.load(part_mean_ptr + at, mask=ok, other=0.0)
    m2_p = tl.load(part_m2_ptr + at, mask=ok, other=0.0)
    mean = tl.sum(count_p * mean_p, axis=0) / m
    delta = mean_p - mean[None, :]
    m2 = tl.sum(m2_p + count_p * delta * delta, axis=0)
    return mean, m2 / m


@triton.jit
def normalize_kernel(x_ptr, y_ptr, gamma_ptr, beta_ptr, part_mean_ptr, part_m2_ptr,
                     mean_ptr, inv_std_ptr, running_mean_ptr, running_var_ptr,
                     N, C, rows_per_program, P, m, eps, momentum,
                     L: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                     BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr,
                     UPDATE_RUNNING: tl.constexpr):
    """Pass 2 of the forward: y = (x - mean) * (gamma * inv_std) + beta (`eq-02-normalize`,
    `eq-02-scale-shift`),
    with m = N * L values per channel (a float: an integer argument equal to 1 would
    become a compile-time constant).

    Every program merges the partial statistics of its channels (P values each, from
    cache); those of row group 0 also store mean and inv_std for the backward pass and,
    if asked, update the running statistics with the unbiased variance (chapter 04).
    """
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    mean, var = _merge_stats(part_mean_ptr, part_m2_ptr, c, N, C, rows_per_program, P, m,
                             L, BLOCK_P)
    inv_std = tl.rsqrt(var + eps)
    gamma = tl.load(gamma_ptr + c, mask=c < C, other=1.0).to(tl.float32)
    beta = tl.load(beta_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    scale = gamma * inv_std
    if tl.program_id(1) == 0:  # one program per channel block keeps the results
        tl.store(mean_ptr + c, mean, mask=c < C)
        tl.store(inv_std_ptr + c, inv_std, mask=c < C)
        if UPDATE_RUNNING:
            old_mean = tl.load(running_mean_ptr + c, mask=c < C, other=0.0).to(tl.float32)
            old_var = tl.load(running_var_ptr + c, mask=c < C, other=0.0).to(tl.float32)
            new_mean = (1 - momentum) * old_mean + momentum * mean
            new_var = (1 - momentum) * old_var + momentum * var * (m / (m - 1))
            tl.store(running_mean_ptr + c, new_mean.to(running_mean_ptr.dtype.element_ty),
                     mask=c < C)
            tl.store(running_var_ptr + c, new_var.to(running_var_ptr.dtype.element_ty),
                     mask=c < C)
    start, stop = _rows(N, rows_per_program)
    for n0 in range(start, stop, BLOCK_N):
        for l0 in range(0, L, BLOCK_L):
            ptrs, mask = _tile(x_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            y = (x - mean[None, :, None]) * scale[None, :, None] + beta[None, :, None]
            out, _ = _tile(y_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            tl.store(out, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def grad_sums_kernel(dy_ptr, x_ptr, mean_ptr, part_dy_ptr, part_dy_xc_ptr,
                     N, C, rows_per_program, L: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_C: tl.constexpr, BLOCK_L: tl.constexpr):
    """Pass 1 of the backward: partial sums of dy and of dy * (x - mean) per program.

    Over all programs they are dbeta = sum(dy) (`eq-03-dbeta`) and dgamma / inv_std =
    sum(dy * (x - mean)) (`eq-03-dgamma` before the factor inv_std).
    """
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    mean = tl.load(mean_ptr + c, mask=c < C, other=0.0)
    acc_dy = tl.zeros((BLOCK_N, BLOCK_C, BLOCK_L), dtype=tl.float32)
    acc_dy_xc = tl.zeros((BLOCK_N, BLOCK_C, BLOCK_L), dtype=tl.float32)
    start, stop = _rows(N, rows_per_program)
    for n0 in range(start, stop, BLOCK_N):
        for l0 in range(0, L, BLOCK_L):
            ptrs, mask = _tile(x_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            ptrs, _ = _tile(dy_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            dy = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            acc_dy += dy
            acc_dy_xc += dy * (x - mean[None, :, None])  # masked lanes: dy = 0
    out = tl.program_id(1) * C + c
    tl.store(part_dy_ptr + out, _sum_tile(acc_dy), mask=c < C)
    tl.store(part_dy_xc_ptr + out, _sum_tile(acc_dy_xc), mask=c < C)


@triton.jit
def grad_input_kernel(dy_ptr, x_ptr, dx_ptr, mean_ptr, inv_std_ptr, gamma_ptr,
                      part_dy_ptr, part_dy_xc_ptr, dgamma_ptr, dbeta_ptr,
                      N, C, rows_per_program, P, m, L: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                      BLOCK_L: tl.constexpr, BLOCK_P: tl.constexpr):
    """Pass 2 of the backward: dx by the compact formula `eq-03-dx`,

        dx = gamma * inv_std * (dy - dbeta / m - x_hat * dgamma / m),
        x_hat = (x - mean) * inv_std,

    after adding up the partial sums of its channels (row group 0 stores
    dgamma and dbeta).
    """
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    p = tl.arange(0, BLOCK_P)
    at = p[:, None] * C + c[None, :]
    ok = (p[:, None] < P) & (c[None, :] < C)
    dbeta = tl.sum(tl.load(part_dy_ptr + at, mask=ok, other=0.0), axis=0)
    dy_xc = tl.sum(tl.load(part_dy_xc_ptr + at, mask=ok, other=0.0), axis=0)
    mean = tl.load(mean_ptr + c, mask=c < C, other=0.0)
    inv_std = tl.load(inv_std_ptr + c, mask=c < C, other=0.0)
    gamma = tl.load(gamma_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    dgamma = dy_xc * inv_std
    if tl.program_id(1) == 0:
        tl.store(dgamma_ptr + c, dgamma.to(dgamma_ptr.dtype.element_ty),
                 mask=c < C)
        tl.store(dbeta_ptr + c, dbeta.to(dbeta_ptr.dtype.element_ty),
                 mask=c < C)
    scale = gamma * inv_std
    mean_dy = dbeta / m
    # x_hat * dgamma / m, written for (x - mean)
    # so that mean never cancels against x
    slope = scale * inv_std * (dgamma / m)
    start, stop = _rows(N, rows_per_program)
    for n0 in range(start, stop, BLOCK_N):
        for l0 in range(0, L, BLOCK_L):
            ptrs, mask = _tile(x_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            x = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            ptrs, _ = _tile(dy_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            dy = tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
            dx = (scale[None, :, None] * (dy - mean_dy[None, :, None])
                  - slope[None, :, None] * (x - mean[None, :, None]))
            out, _ = _tile(dx_ptr, n0, stop, c, l0, C, L, BLOCK_N, BLOCK_L)
            tl.store(out, dx.to(dx_ptr.dtype.element_ty), mask=mask)
