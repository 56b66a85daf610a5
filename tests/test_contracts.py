"""The contracts the layers added in wave 3 broke (issue 23's audit), one test per defect.

BatchRenorm, SyncBatchNorm, FrozenBatchNorm, freeze_batchnorm, convert_sync_batchnorm,
update_bn and merge_moments must check their input as BatchNorm does: a clear exception
naming the argument, raised before any state changes, and PyTorch's behaviour where PyTorch
defines it. Only bn_lib's public names are used; torch only where it is the oracle.
"""

import copy

import numpy as np
import pytest

import bn_lib

C = 3  # channels of the layers under test
LAYERS = [bn_lib.BatchNorm, bn_lib.BatchRenorm, bn_lib.SyncBatchNorm]


def modules(model):
    """``model`` and every module inside it, depth first (the walk of ``children()``)."""
    yield model
    for child in model.children():
        yield from modules(child)


def batch_norms(model):
    return [m for m in modules(model) if isinstance(m, bn_lib.BatchNorm)]


def snapshot(layer):
    """What a training forward may change; BatchRenorm also keeps r and d."""
    return {
        "running_mean": copy.deepcopy(layer.running_mean),
        "running_var": copy.deepcopy(layer.running_var),
        "num_batches_tracked": layer.num_batches_tracked,
        "cache": layer.cache,
        "r": copy.deepcopy(getattr(layer, "r", None)),
        "d": copy.deepcopy(getattr(layer, "d", None)),
    }


def assert_unchanged(layer, before):
    np.testing.assert_array_equal(layer.running_mean, before["running_mean"])
    np.testing.assert_array_equal(layer.running_var, before["running_var"])
    assert layer.num_batches_tracked == before["num_batches_tracked"]
    assert layer.cache is before["cache"]  # the failed call stored no new cache
    if isinstance(layer, bn_lib.BatchRenorm):
        np.testing.assert_array_equal(layer.r, before["r"])
        np.testing.assert_array_equal(layer.d, before["d"])


def batch_with_a_constant_channel(rng, n=8):
    """(n, C) float64 data whose channel 1 is constant: variance 0, so eps <= 0 gives NaN."""
    x = 2.0 * rng.standard_normal((n, C)) + 1.0
    x[:, 1] = 4.0
    return x


def trained(cls, rng, steps=2):
    """A layer of class ``cls`` after ``steps`` training steps: every state is set."""
    layer = cls(C)
    for _ in range(steps):
        layer.forward(2.0 * rng.standard_normal((8, C)) + 1.0)
    return layer


# --- 1, 2, 6, 10: a training forward that must raise, and leave the layer as it was -------

# id: (attributes to set after training, input of the failing call, error, message)
FAILING_FORWARDS = {
    "integer_input": ({}, lambda x: x.astype(np.int64), TypeError, None),
    "wrong_channel_count": ({}, lambda x: x[:, :2], ValueError, "channel"),
    "one_value_per_channel": ({}, lambda x: x[:1], ValueError, "more than 1 value per channel"),
    "eps_zero": ({"eps": 0.0}, None, ValueError, "eps"),
    "eps_negative": ({"eps": -1e-5}, None, ValueError, "eps"),
    "gamma_of_length_1": ({"gamma": np.ones(1)}, None, ValueError, "gamma"),
    "beta_of_length_1": ({"beta": np.zeros(1)}, None, ValueError, "beta"),
    "complex_gamma": ({"gamma": np.ones(C) + 1j}, None, TypeError, "gamma"),
    "complex_beta": ({"beta": np.zeros(C) + 1j}, None, TypeError, "beta"),
    "running_mean_one_too_long": ({"running_mean": np.zeros(C + 1)}, None, ValueError,
                                  "running_mean"),
    "running_var_one_too_long": ({"running_var": np.ones(C + 1)}, None, ValueError,
                                 "running_var"),
}


@pytest.mark.parametrize("case", FAILING_FORWARDS)
@pytest.mark.parametrize("cls", LAYERS, ids=lambda cls: cls.__name__)
def test_a_failing_training_forward_raises_and_leaves_the_state_unchanged(cls, case):
    attributes, make_input, error, message = FAILING_FORWARDS[case]
    rng = np.random.default_rng(0)
    layer = trained(cls, rng)
    for name, value in attributes.items():
        setattr(layer, name, value)
    x = batch_with_a_constant_channel(rng)
    before = snapshot(layer)
    with pytest.raises(error, match=message):
        layer.forward(x if make_input is None else make_input(x))
    assert_unchanged(layer, before)


# --- 1: eps = 0 is accepted at construction and in eval mode, refused by training -----------

@pytest.mark.parametrize("cls", LAYERS, ids=lambda cls: cls.__name__)
def test_eps_zero_is_for_eval_mode_only(cls):
    x = batch_with_a_constant_channel(np.random.default_rng(0))
    layer = cls(C, eps=0)
    y = layer.eval().forward(x)  # divides by sqrt(running_var + 0) = 1, as PyTorch allows
    assert np.all(np.isfinite(y))
    before = snapshot(layer)
    with pytest.raises(ValueError, match="eps"):
        layer.train().forward(x)  # 1 / sqrt(0 + 0) on the constant channel
    assert_unchanged(layer, before)


@pytest.mark.parametrize("eps,error", [(0, ValueError), (-1e-5, ValueError),
                                       ("1e-5", TypeError)],
                         ids=["zero", "negative", "string"])
def test_sync_batch_norm_forward_checks_eps(eps, error):
    x = np.random.default_rng(0).standard_normal((8, C))
    with pytest.raises(error, match="eps"):
        bn_lib.sync_batch_norm_forward(x, np.ones(C), np.zeros(C), lambda a: a, eps=eps)


# --- 2: BatchRenorm's limits r_max and d_max ---------------------------------------------

BAD_LIMITS = {
    "r_max_nan": ({"r_max": float("nan")}, "r_max"),
    "d_max_nan": ({"d_max": float("nan")}, "d_max"),
    "r_max_string": ({"r_max": "3"}, "r_max"),
    "r_max_none": ({"r_max": None}, "r_max"),
    "d_max_string": ({"d_max": "5"}, "d_max"),
    "d_max_none": ({"d_max": None}, "d_max"),
}


@pytest.mark.parametrize("case", BAD_LIMITS)
def test_batch_renorm_refuses_bad_limits(case):
    kwargs, name = BAD_LIMITS[case]
    with pytest.raises((ValueError, TypeError), match=name):
        bn_lib.BatchRenorm(C, **kwargs)


@pytest.mark.parametrize("case", BAD_LIMITS)
def test_renorm_limits_refuses_bad_limits(case):
    kwargs, name = BAD_LIMITS[case]
    with pytest.raises((ValueError, TypeError), match=name):
        bn_lib.renorm_limits(0, **kwargs)


# --- 3: freeze_batchnorm finds every BatchNorm ---------------------------------------------

def bn_in_a_residual():
    return bn_lib.Sequential(bn_lib.Residual(bn_lib.BatchNorm(4)))


def bn_two_sequentials_deep():
    return bn_lib.Sequential(bn_lib.Sequential(bn_lib.BatchNorm(4)))


def bn_three_sequentials_deep():
    return bn_lib.Sequential(bn_lib.Sequential(bn_lib.Sequential(bn_lib.BatchNorm(4))))


def residual_of_a_sequential():
    branch = bn_lib.Sequential(bn_lib.Linear(4, 4, rng=1), bn_lib.BatchNorm(4))
    return bn_lib.Residual(branch)


def lone_batchnorm():
    return bn_lib.BatchNorm(4)


def residual_mlp():
    return bn_lib.residual_mlp(4, 4, 3, num_blocks=2)


@pytest.mark.parametrize("build", [bn_in_a_residual, bn_two_sequentials_deep,
                                   bn_three_sequentials_deep, residual_of_a_sequential,
                                   lone_batchnorm, residual_mlp],
                         ids=lambda build: build.__name__)
def test_freeze_batchnorm_replaces_every_batchnorm(build):
    rng = np.random.default_rng(0)
    model = build()
    for bn in batch_norms(model):  # trained-looking statistics and parameters
        bn.gamma[...] = rng.uniform(0.5, 2.0, bn.num_features)
        bn.beta[...] = rng.standard_normal(bn.num_features)
        bn.running_mean[...] = rng.standard_normal(bn.num_features)
        bn.running_var[...] = rng.uniform(0.5, 2.0, bn.num_features)
    x = 2.0 * rng.standard_normal((6, 4)) + 1.0
    y_eval = copy.deepcopy(model).eval().forward(x)

    frozen = bn_lib.freeze_batchnorm(model)
    assert batch_norms(frozen) == [], "a BatchNorm was left unfrozen"
    if build is lone_batchnorm:
        assert isinstance(frozen, bn_lib.FrozenBatchNorm)
    np.testing.assert_allclose(frozen.train().forward(x), y_eval, rtol=0, atol=1e-12)


# --- 4: convert_sync_batchnorm converts every BatchNorm -----------------------------------

def test_convert_sync_batchnorm_converts_all_five_of_residual_mlp():
    x = 2.0 * np.random.default_rng(0).standard_normal((10, 8)) + 1.0
    original = bn_lib.residual_mlp(8, 16, 3, 2, seed=0)
    converted = bn_lib.SyncBatchNorm.convert_sync_batchnorm(
        bn_lib.residual_mlp(8, 16, 3, 2, seed=0), lambda a: a)
    assert [type(m) for m in modules(converted)].count(bn_lib.BatchNorm) == 0
    assert sum(isinstance(m, bn_lib.SyncBatchNorm) for m in modules(converted)) == 5
    np.testing.assert_allclose(converted.train().forward(x), original.train().forward(x),
                               rtol=0, atol=1e-12)


def test_converted_residual_mlp_on_two_threads_equals_it_on_the_whole_batch():
    x = 2.0 * np.random.default_rng(0).standard_normal((10, 8)) + 1.0

    def forward_on_rank(rank, allreduce_sum, x_rank):
        model = bn_lib.SyncBatchNorm.convert_sync_batchnorm(
            bn_lib.residual_mlp(8, 16, 3, 2, seed=0), allreduce_sum)
        return model.train().forward(x_rank)

    halves = bn_lib.ThreadWorld(2).run(forward_on_rank, [x[:5], x[5:]])
    expected = bn_lib.residual_mlp(8, 16, 3, 2, seed=0).train().forward(x)
    # the two ranks sum their halves in another order than one pass over x: not bit-equal
    np.testing.assert_allclose(np.concatenate(halves), expected, rtol=0, atol=1e-10)


def test_convert_sync_batchnorm_of_a_lone_batchnorm():
    x = 2.0 * np.random.default_rng(0).standard_normal((6, C, 2, 2)) + 1.0
    sync = bn_lib.SyncBatchNorm.convert_sync_batchnorm(bn_lib.BatchNorm(C), lambda a: a)
    assert type(sync) is bn_lib.SyncBatchNorm
    np.testing.assert_allclose(sync.train().forward(x), bn_lib.BatchNorm(C).forward(x),
                               rtol=0, atol=1e-12)


# --- 5: update_bn ------------------------------------------------------------------------

def bn_state(model):
    return [(bn.running_mean.copy(), bn.running_var.copy(), bn.num_batches_tracked,
             bn.momentum) for bn in batch_norms(model)]


def assert_same_bn_state(model, before):
    after = bn_state(model)
    assert len(after) == len(before)
    for (mean, var, tracked, momentum), (mean0, var0, tracked0, momentum0) in zip(after,
                                                                                  before):
        np.testing.assert_array_equal(mean, mean0)
        np.testing.assert_array_equal(var, var0)
        assert tracked == tracked0
        assert momentum == momentum0


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "2", None],
                         ids=["zero", "negative", "float", "string", "none"])
def test_update_bn_checks_batch_size_before_changing_anything(batch_size):
    rng = np.random.default_rng(0)
    model = bn_lib.residual_mlp(4, 6, 3, num_blocks=1)
    for _ in range(3):
        model.forward(2.0 * rng.standard_normal((8, 4)) + 1.0)
    model.eval()
    before = bn_state(model)
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        bn_lib.update_bn(model, rng.standard_normal((10, 4)), batch_size=batch_size)
    assert_same_bn_state(model, before)
    assert not model.training


def test_update_bn_with_one_value_per_channel_raises_and_restores_the_statistics():
    rng = np.random.default_rng(0)
    model = bn_lib.mlp([5, 6, 3], norm="batch")
    for _ in range(3):
        model.forward(2.0 * rng.standard_normal((8, 5)) + 1.0)
    before = bn_state(model)
    with pytest.raises(ValueError):  # batches of one (N, C) row: one value per channel
        bn_lib.update_bn(model, rng.standard_normal((10, 5)), batch_size=1)
    assert_same_bn_state(model, before)


def test_update_bn_collects_batch_renorm_statistics_as_plain_batchnorm_would():
    """During update_bn a BatchRenorm layer works as BN (r = 1, d = 0): its output feeds the
    next layer, whose statistics would otherwise depend on the reset running statistics."""
    rng = np.random.default_rng(0)

    def network(norm):
        return bn_lib.Sequential(bn_lib.Linear(5, 6, bias=False, rng=0), norm(6), bn_lib.ReLU(),
                                 bn_lib.Linear(6, 4, bias=False, rng=1), norm(4))

    renorm = network(lambda c: bn_lib.BatchRenorm(c, r_max=3.0, d_max=5.0))
    for _ in range(4):
        renorm.forward(2.0 * rng.standard_normal((8, 5)) + 1.0)
    limits = [layer.r_max for layer in renorm.modules() if isinstance(layer, bn_lib.BatchRenorm)]
    plain = network(bn_lib.BatchNorm)
    x = 2.0 * rng.standard_normal((40, 5)) + 1.0
    bn_lib.update_bn(renorm, x, batch_size=8)
    bn_lib.update_bn(plain, x, batch_size=8)
    for ours, theirs in zip(renorm.modules(), plain.modules()):
        if isinstance(theirs, bn_lib.BatchNorm):
            np.testing.assert_allclose(ours.running_mean, theirs.running_mean, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ours.running_var, theirs.running_var, rtol=1e-12)
    assert limits == [layer.r_max for layer in renorm.modules()
                      if isinstance(layer, bn_lib.BatchRenorm)]


@pytest.mark.parametrize("batch_size", [2, 1], ids=["last_batch_of_one_image",
                                                    "every_batch_one_image"])
def test_update_bn_uses_batches_of_one_image_like_torch(batch_size):
    torch = pytest.importorskip("torch")
    x = 2.0 * np.random.default_rng(0).standard_normal((5, C, 4, 4)) + 1.0
    ours = bn_lib.BatchNorm(C)
    bn_lib.update_bn(ours, x, batch_size=batch_size)
    theirs = torch.nn.BatchNorm2d(C, dtype=torch.float64)
    loader = [torch.tensor(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    torch.optim.swa_utils.update_bn(loader, theirs)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(),
                               rtol=0, atol=1e-12)


def test_update_bn_keeps_num_batches_tracked_and_the_renorm_schedule():
    rng = np.random.default_rng(0)
    layer = bn_lib.BatchRenorm(C, warmup_steps=2, ramp_steps=2)
    for _ in range(5):
        layer.forward(2.0 * rng.standard_normal((8, C)) + 1.0)
    limits = layer.limits()
    x = 2.0 * rng.standard_normal((8, C)) + 1.0
    bn_lib.update_bn(layer, x, batch_size=4)
    assert layer.num_batches_tracked == 5
    assert layer.limits() == limits
    # the statistics were still recomputed: two equal batches average to the mean of x
    np.testing.assert_allclose(layer.running_mean, x.mean(axis=0), rtol=0, atol=1e-12)


# --- 7: FrozenBatchNorm's constructor -------------------------------------------------------

@pytest.mark.parametrize("num_features", [2.5, 0, -1, "3"],
                         ids=["float", "zero", "negative", "string"])
def test_frozen_batchnorm_refuses_bad_num_features(num_features):
    with pytest.raises((ValueError, TypeError), match="num_features"):
        bn_lib.FrozenBatchNorm(num_features)


def test_frozen_batchnorm_refuses_negative_eps():
    with pytest.raises((ValueError, TypeError), match="eps"):
        bn_lib.FrozenBatchNorm(C, eps=-1)


# --- 8: sync_batch_norm_backward without a cache -------------------------------------------

def test_sync_batch_norm_backward_names_a_missing_cache():
    dy = np.ones((4, C))
    with pytest.raises(TypeError, match="cache"):
        bn_lib.sync_batch_norm_backward(dy, None, lambda a: a)


# --- 9: merge_moments ----------------------------------------------------------------------

def moments_of_three_ranks():
    rng = np.random.default_rng(0)
    return np.array([4.0, 3.0, 5.0]), rng.standard_normal((3, C)), rng.uniform(1, 2, (3, C))


@pytest.mark.parametrize("counts", [[4.0, 3.0], [4.0, 3.0, 5.0, 2.0]],
                         ids=["shorter_than_the_rows", "longer_than_the_rows"])
def test_merge_moments_needs_one_count_per_row(counts):
    _, means, m2s = moments_of_three_ranks()
    with pytest.raises(ValueError, match="counts"):
        bn_lib.merge_moments(np.array(counts), means, m2s)


def test_merge_moments_refuses_a_negative_count():
    _, means, m2s = moments_of_three_ranks()
    with pytest.raises(ValueError, match="count"):
        bn_lib.merge_moments(np.array([4.0, -1.0, 5.0]), means, m2s)


@pytest.mark.parametrize("m2s_shape", [(2, C), (3, C + 1)],
                         ids=["fewer_rows", "more_channels"])
def test_merge_moments_needs_means_and_m2s_of_one_shape(m2s_shape):
    counts, means, _ = moments_of_three_ranks()
    with pytest.raises(ValueError, match="m2s"):
        bn_lib.merge_moments(counts, means, np.ones(m2s_shape))
