"""Property-based fuzzing of bn_lib against PyTorch (hypothesis).

Random shapes (2-D to 5-D, N = 1 with spatial positions, up to 100,000 channels,
non-contiguous layouts), dtypes, eps and values for the functional core, and random
programs of training and eval steps with mixed batch sizes for the layer (momentum 0, 1,
None or in between, with and without affine parameters and running statistics, and
``track_running_stats`` switched off midway), each
step compared with PyTorch through ``bn_lib.testing``'s tolerance table. Bounded so
the file adds seconds to ``make test``: a fixed number of examples, derandomized (the
same examples on every run, so CI is reproducible), and a generous per-example deadline
that only catches a hang.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import bn_lib
from bn_lib.testing import assert_close, to_torch, torch_twin

torch = pytest.importorskip("torch")
F = torch.nn.functional

FUZZ = settings(max_examples=40, deadline=5000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def inputs(draw, training=True):
    """x (N, C, ...) in float64 or float32, possibly a non-contiguous view, with gamma,
    beta, dy, eps and a seed for the running statistics."""
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    if draw(st.integers(0, 9)) == 0:  # now and then a wide layer: 100,000 channels, (N, C)
        ndim, c = 2, 100_000
        event("100,000 channels")
    else:
        ndim, c = draw(st.integers(2, 5)), draw(st.integers(1, 6))
    spatial = tuple(draw(st.lists(st.integers(1, 4), min_size=ndim - 2, max_size=ndim - 2)))
    n = draw(st.integers(1 if (training and np.prod(spatial) > 1) or not training else 2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = (n, c) + spatial
    loc, scale = draw(st.floats(-50, 50)), draw(st.floats(0.1, 20))
    if draw(st.booleans()):  # a view with the channels last in memory
        x = np.moveaxis(rng.standard_normal(shape[:1] + shape[2:] + shape[1:2]), -1, 1)
    else:
        x = rng.standard_normal(shape)
    x = (loc + scale * x).astype(dtype)
    gamma, beta = rng.uniform(-2, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    eps = draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    return x, gamma, beta, dy, eps, rng


@FUZZ
@given(inputs(training=True))
def test_functional_training_matches_torch(case):
    x, gamma, beta, dy, eps, _ = case
    y, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps)
    xt, gt, bt = (to_torch(np.ascontiguousarray(a), requires_grad=True) for a in (x, gamma, beta))
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    assert_close(y, yt, x.dtype, "elementwise", "y")
    dx, dgamma, dbeta = bn_lib.batch_norm_backward(dy, cache)
    dxt, dgt, dbt = torch.autograd.grad(yt, (xt, gt, bt), to_torch(dy))
    assert_close(dx, dxt, x.dtype, "elementwise", "dx")
    assert_close(dgamma, dgt, x.dtype, "reduction", "dgamma")
    assert_close(dbeta, dbt, x.dtype, "reduction", "dbeta")


@FUZZ
@given(inputs(training=False))
def test_functional_inference_matches_torch(case):
    x, gamma, beta, dy, eps, rng = case
    c = x.shape[1]
    mean = rng.uniform(-50, 50, c).astype(x.dtype)
    var = rng.uniform(0.01, 400, c).astype(x.dtype)
    y, cache = bn_lib.batch_norm_inference(x, mean, var, gamma, beta, eps)
    xt = to_torch(np.ascontiguousarray(x), requires_grad=True)
    yt = F.batch_norm(xt, to_torch(mean), to_torch(var), to_torch(gamma), to_torch(beta),
                      training=False, eps=eps)
    assert_close(y, yt, x.dtype, "elementwise", "eval y")
    (dxt,) = torch.autograd.grad(yt, xt, to_torch(dy))
    assert_close(bn_lib.batch_norm_backward(dy, cache)[0], dxt, x.dtype,
                 "elementwise", "eval dx")


@st.composite
def programs(draw):
    """A layer configuration and a list of ("train" | "eval" | "untrack", batch size)
    steps."""
    c = draw(st.integers(1, 5))
    spatial = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    momentum = draw(st.one_of(st.sampled_from([0.0, 1.0, None, 0.1]), st.floats(0.0, 1.0)))
    affine, track = draw(st.booleans()), draw(st.booleans())
    # "untrack" switches track_running_stats off mid-program (the statistics freeze)
    steps = draw(st.lists(st.tuples(st.sampled_from(["train", "eval", "untrack"]),
                                    st.integers(1, 6)), min_size=1, max_size=6))
    return c, spatial, momentum, affine, track, steps, draw(st.integers(0, 2**32 - 1))


@FUZZ
@given(programs())
def test_layer_programs_match_torch(program):
    c, spatial, momentum, affine, track, steps, seed = program
    rng = np.random.default_rng(seed)
    ours = bn_lib.BatchNorm(c, momentum=momentum, affine=affine, track_running_stats=track)
    if affine:
        ours.gamma[...], ours.beta[...] = rng.uniform(0.5, 2, c), rng.standard_normal(c)
    theirs = torch_twin(ours, ndim=2 + len(spatial))
    for step, (mode, n) in enumerate(steps):
        if mode == "untrack":
            ours.track_running_stats = theirs.track_running_stats = False
            continue
        x = rng.standard_normal((n, c) + spatial) * (1 + step) + 3 * step
        batch_statistics = mode == "train" or not track
        if batch_statistics and n * int(np.prod(spatial)) == 1:
            continue  # both refuse one value per channel (tests/test_errors_torch.py)
        getattr(ours, mode)()
        getattr(theirs, mode)()
        xt = to_torch(x, requires_grad=True)
        yt = theirs(xt)
        assert_close(ours.forward(x), yt, "float64", "elementwise", f"step {step} {mode} y")
        dy = rng.standard_normal(x.shape)
        (dxt,) = torch.autograd.grad(yt, xt, to_torch(dy))
        assert_close(ours.backward(dy), dxt, "float64", "elementwise", f"step {step} dx")
        if track:
            assert_close(ours.running_mean, theirs.running_mean, "float64", "reduction",
                         f"step {step} running_mean")
            assert_close(ours.running_var, theirs.running_var, "float64", "reduction",
                         f"step {step} running_var")
            assert ours.num_batches_tracked == int(theirs.num_batches_tracked)
