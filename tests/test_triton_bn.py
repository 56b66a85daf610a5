"""bn_triton, Batch Normalization written in Triton, against PyTorch (chapter 07).

On a machine without CUDA the kernels run in Triton's interpreter on CPU tensors
(switched on below, before triton is first imported), so CI checks the same kernel code a
GPU compiles; with CUDA they are compiled and the cases marked ``gpu`` run. The oracle is
PyTorch's ``F.batch_norm`` and autograd in float64 on the same input values, compared by
``bn_lib.testing``'s ``assert_close`` and tolerance table (its bfloat16 and float16 rows
are these kernels'). Small shapes: the interpreter runs a kernel as NumPy code, one
program at a time.
"""

import os

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    # the interpreter must be on before triton's first import, or the kernels need a GPU
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip(
    "triton", reason="triton is not installed: `make test` installs requirements-triton.txt "
    "(or run pip install -r requirements-triton.txt)")

import torch.nn.functional as F  # noqa: E402

import bn_triton  # noqa: E402
from bn_lib.testing import assert_close, scaled_error  # noqa: E402

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(
        not bn_triton.INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not torch.cuda.is_available() or bn_triton.INTERPRETED,
        reason="no CUDA device, or Triton runs interpreted")]),
]
# (N, C), (N, C, L) and (N, C, H, W); (64, 3, 8, 8) and (300, 20) need several row groups
SHAPES = [(32, 7), (300, 20), (16, 5, 9), (8, 4, 6, 5), (64, 3, 8, 8)]


def make_inputs(shape, dtype, device, seed=0, loc=12.0, scale=5.0):
    """x = 5 * randn + 12 (cs231n's test input: far from normalized), gamma, beta, dy.
    gamma and beta stay float32, as in mixed-precision training."""
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = (scale * torch.randn(shape, generator=g) + loc).to(dtype)
    gamma = torch.rand(c, generator=g) + 0.5
    beta = torch.randn(c, generator=g)
    dy = torch.randn(shape, generator=g).to(dtype)
    return tuple(t.to(device) for t in (x, gamma, beta, dy))


def reference(x, gamma, beta, dy, eps=1e-5):
    """F.batch_norm and autograd in float64 on the same values: y, dx, dgamma, dbeta."""
    xr, gr, br = (t.detach().double().requires_grad_(True) for t in (x, gamma, beta))
    y = F.batch_norm(xr, None, None, gr, br, training=True, eps=eps)
    return (y, *torch.autograd.grad(y, (xr, gr, br), dy.double()))


def assert_matches_reference(outputs, inputs, dtype):
    """y, dx, dgamma and dbeta within ``dtype``'s tolerances of :func:`reference`."""
    for ours, ref, kind, what in zip(outputs, reference(*inputs),
                                     ("elementwise", "elementwise", "reduction", "reduction"),
                                     ("y", "dx", "dgamma", "dbeta"), strict=True):
        assert_close(ours, ref, dtype, kind, what)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("device", DEVICES)
def test_forward_and_backward_match_pytorch(shape, dtype, device):
    x, gamma, beta, dy = make_inputs(shape, dtype, device)
    y, cache = bn_triton.batch_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = bn_triton.batch_norm_backward(dy, cache)
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == x.shape
    assert dgamma.dtype == dbeta.dtype == gamma.dtype
    y_ref, dx_ref, dgamma_ref, dbeta_ref = reference(x, gamma, beta, dy)
    assert_close(y, y_ref, dtype, "elementwise", "y")
    assert_close(dx, dx_ref, dtype, "elementwise", "dx")
    assert_close(dgamma, dgamma_ref, dtype, "reduction", "dgamma")
    assert_close(dbeta, dbeta_ref, dtype, "reduction", "dbeta")
    # the statistics the backward pass uses: the batch mean and 1/sqrt(var + eps)
    dims = [0, *range(2, x.ndim)]
    xd = x.double()
    assert_close(cache.mean, xd.mean(dims), torch.float32, "reduction", "mean")
    inv_std_ref = (xd.var(dims, unbiased=False) + 1e-5).rsqrt()
    assert_close(cache.inv_std, inv_std_ref, torch.float32, "reduction", "inv_std")


@pytest.mark.parametrize("shape", [(32, 7), (8, 4, 6, 5)])
@pytest.mark.parametrize("device", DEVICES)
def test_float16_matches_pytorch(shape, device):
    x, gamma, beta, dy = make_inputs(shape, torch.float16, device, seed=7)
    y, cache = bn_triton.batch_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = bn_triton.batch_norm_backward(dy, cache)
    assert y.dtype == dx.dtype == torch.float16
    assert_matches_reference((y, dx, dgamma, dbeta), (x, gamma, beta, dy), torch.float16)


@pytest.mark.parametrize("device", DEVICES)
def test_many_row_groups_merge_exactly(device):
    """Tiny tiles and many programs per channel: the partial statistics and sums of 12
    row groups are merged (Chan's formula) as well as one group computes them. The mean
    drifts with n, so each group has its own mean and the merge's correction term,
    sum n_p (mean_p - mean)^2, is most of the variance."""
    shape = (48, 3, 4, 4)
    x, gamma, beta, dy = make_inputs(shape, torch.float32, device, seed=1)
    x += torch.arange(48.0, device=device).view(48, 1, 1, 1)
    config = bn_triton.launch_config(shape, torch.float32, device, tile_bytes=256,
                                     programs_per_sm=36, num_sms=1)
    assert config.row_groups == 12
    y, cache = bn_triton.batch_norm_forward(x, gamma, beta, config=config)
    dx, dgamma, dbeta = bn_triton.batch_norm_backward(dy, cache)
    assert_matches_reference((y, dx, dgamma, dbeta), (x, gamma, beta, dy), torch.float32)


@pytest.mark.parametrize("device", DEVICES)
def test_a_group_may_end_inside_a_tile(device):
    """A hand-made configuration: groups of 6 rows, tiles of 4, so each group's last tile
    reaches into the next group, whose rows it must leave alone."""
    shape = (20, 3, 5)
    x, gamma, beta, dy = make_inputs(shape, torch.float32, device, seed=6)
    config = bn_triton.LaunchConfig(block_n=4, block_c=1, block_l=8, rows_per_program=6,
                                    row_groups=4, num_warps=4)
    y, cache = bn_triton.batch_norm_forward(x, gamma, beta, config=config)
    dx, dgamma, dbeta = bn_triton.batch_norm_backward(dy, cache)
    assert_matches_reference((y, dx, dgamma, dbeta), (x, gamma, beta, dy), torch.float32)


@pytest.mark.parametrize("shape", [(4096, 8), (16, 8, 16, 16)])
@pytest.mark.parametrize("device", DEVICES)
def test_float32_with_large_mean_is_stable(shape, device):
    """Mean 1000, std 1 in float32 (bn_lib's test_numerics case): the shifted sums keep
    the variance to float32's precision, where E[x^2] - E[x]^2 would lose every digit."""
    x, gamma, beta, dy = make_inputs(shape, torch.float32, device, seed=2, loc=1000.0,
                                     scale=1.0)
    y, cache = bn_triton.batch_norm_forward(x, gamma, beta)
    dx, _, _ = bn_triton.batch_norm_backward(dy, cache)
    y_ref, dx_ref, _, _ = reference(x, gamma, beta, dy)
    dims = [0, *range(2, x.ndim)]
    var_ref = x.double().var(dims, unbiased=False)
    var = 1 / cache.inv_std.double() ** 2 - 1e-5
    assert float(((var - var_ref) / var_ref).abs().max()) < 1e-4
    # x itself is rounded to 6e-5 at 1000: y and dx inherit that, not more
    assert scaled_error(y, y_ref) < 2e-3 and scaled_error(dx, dx_ref) < 2e-3


@pytest.mark.parametrize("device", DEVICES)
def test_running_statistics_match_f_batch_norm(device):
    shape = (16, 4, 3, 3)
    running = [torch.zeros(4, device=device), torch.ones(4, device=device)]
    theirs = [t.clone() for t in running]
    for step in range(3):
        x, gamma, beta, _ = make_inputs(shape, torch.float32, device, seed=10 + step,
                                        loc=2.0 * step)
        bn_triton.batch_norm_forward(x, gamma, beta, 1e-5, *running, momentum=0.3)
        F.batch_norm(x, *theirs, gamma, beta, training=True, momentum=0.3, eps=1e-5)
    for ours, ref, what in zip(running, theirs, ("running_mean", "running_var")):
        assert_close(ours, ref, torch.float32, "reduction", what)


@pytest.mark.parametrize("device", DEVICES)
def test_autograd_function_matches_pytorch(device):
    x, gamma, beta, dy = make_inputs((12, 6, 5, 5), torch.float32, device, seed=3)
    xg, gg, bg = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
    y = bn_triton.batch_norm(xg, gg, bg)
    y.backward(dy)
    y_ref, dx_ref, dgamma_ref, dbeta_ref = reference(x, gamma, beta, dy)
    assert_close(y, y_ref, torch.float32, "elementwise", "y")
    assert_close(xg.grad, dx_ref, torch.float32, "elementwise", "dx")
    assert_close(gg.grad, dgamma_ref, torch.float32, "reduction", "dgamma")
    assert_close(bg.grad, dbeta_ref, torch.float32, "reduction", "dbeta")


def test_a_wrong_gradient_fails_the_comparison():
    """The tolerance catches a 0.1% error in dx: these checks can fail."""
    x, gamma, beta, dy = make_inputs((8, 4, 6, 6), torch.float32, "cpu", seed=4)
    dx_ref = reference(x, gamma, beta, dy)[1]
    with pytest.raises(AssertionError, match="dx"):
        assert_close(dx_ref.float() * 1.001, dx_ref, torch.float32, "elementwise", "dx")


@pytest.mark.parametrize("shape", [(256, 64, 56, 56), (128, 256, 28, 28), (64, 512, 14, 14),
                                   (8192, 4096)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_default_launch_config_on_an_h200(shape, dtype):
    """The configuration the benchmark runs with on a 132-multiprocessor GPU: tiles of
    8 KiB, rows padded by at most 1/8, at least 512 programs, every row covered once."""
    config = bn_triton.launch_config(shape, dtype, num_sms=132)
    itemsize = torch.empty((), dtype=dtype).element_size()
    tile = config.block_n * config.block_c * config.block_l
    assert tile * itemsize <= bn_triton.batchnorm.TILE_BYTES
    length = shape[2] * shape[3] if len(shape) == 4 else 1
    if length > 1:
        padded = -(-length // config.block_l) * config.block_l
        assert config.block_c == 1 and padded <= 1.125 * length
    columns, groups = config.grid(shape[1])
    assert columns * groups >= 512
    assert groups * config.rows_per_program >= shape[0] > (groups - 1) * config.rows_per_program
    assert config.rows_per_program % config.block_n == 0


@pytest.mark.parametrize("bad, error, match", [
    (dict(x=torch.ones(5)), ValueError, "at least 2 dimensions"),
    (dict(x=torch.ones(4, 3, dtype=torch.float64)), TypeError, "float64"),
    (dict(x=torch.ones(4, 3, dtype=torch.int64)), TypeError, "int64"),
    (dict(gamma=torch.ones(4)), ValueError, r"gamma must be a tensor of shape \(3,\)"),
    (dict(beta=[0.0, 0.0, 0.0]), ValueError, "beta must be a tensor"),
    (dict(x=torch.ones(1, 3)), ValueError, "more than 1 value per channel"),
    (dict(running_mean=torch.zeros(3)), ValueError, "both running_mean and running_var"),
])
def test_bad_input_raises_a_clear_error(bad, error, match):
    args = dict(x=torch.randn(4, 3), gamma=torch.ones(3), beta=torch.zeros(3))
    args.update(bad)
    with pytest.raises(error, match=match):
        bn_triton.batch_norm_forward(**args)


@pytest.mark.skipif(not bn_triton.INTERPRETED, reason="needs CPU tensors (interpreter)")
def test_backward_rejects_a_wrong_dy_shape():
    x, gamma, beta, dy = make_inputs((8, 3), torch.float32, "cpu")
    _, cache = bn_triton.batch_norm_forward(x, gamma, beta)
    with pytest.raises(ValueError, match=r"forward input's shape \(8, 3\)"):
        bn_triton.batch_norm_backward(dy[:4], cache)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or bn_triton.INTERPRETED,
                    reason="no CUDA device, or Triton runs interpreted")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(256, 64, 56, 56), (128, 256, 28, 28), (64, 512, 14, 14)])
def test_benchmark_shapes_on_cuda(shape, dtype):
    """The shapes chapter 07 times, so every timed kernel computes Batch Normalization."""
    x, gamma, beta, dy = make_inputs(shape, dtype, "cuda", seed=5)
    y, cache = bn_triton.batch_norm_forward(x, gamma, beta)
    dx, dgamma, dbeta = bn_triton.batch_norm_backward(dy, cache)
    assert_matches_reference((y, dx, dgamma, dbeta), (x, gamma, beta, dy), dtype)
