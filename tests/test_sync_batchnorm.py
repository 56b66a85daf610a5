"""Synchronized Batch Normalization (bn_lib.distributed, chapter 10) without an engine:
a world of one equals BatchNorm, threads (``ThreadWorld``) equal BatchNorm on the global
batch, Chan's merge of moments, and bad input. Over real processes joined by
``torch.distributed``: ``test_torch_distributed.py``."""

import numpy as np
import pytest

import bn_lib
from bn_lib import ThreadWorld, merge_moments, sync_batch_norm_forward

SWITCHES = [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: str(s) if s else "defaults")
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (4, 3, 2, 2)])
def test_a_world_of_one_equals_batchnorm(shape, dtype, switches, rng):
    plain, sync = bn_lib.BatchNorm(3, **switches), bn_lib.SyncBatchNorm(3, **switches)
    for _ in range(2):
        x = (3 * rng.standard_normal(shape) + 1).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        assert np.array_equal(plain.forward(x), sync.forward(x))
        assert np.array_equal(plain.backward(dy), sync.backward(dy))
    for name in ("dgamma", "dbeta", "running_mean", "running_var"):
        ours, theirs = getattr(sync, name, None), getattr(plain, name, None)
        assert (ours is None and theirs is None) or np.array_equal(ours, theirs), name
    plain.eval(), sync.eval()
    assert np.array_equal(plain.forward(x), sync.forward(x))
    assert np.array_equal(plain.backward(dy), sync.backward(dy))


def test_sync_batchnorm_refuses_the_wrong_channel_count():
    with pytest.raises(ValueError, match="expected 3 channels"):
        bn_lib.SyncBatchNorm(3).forward(np.ones((4, 2)))


@pytest.mark.parametrize("sizes", [(3, 3, 3, 3), (1, 0, 6, 2)])
def test_threads_match_batchnorm_on_the_global_batch(sizes, rng):
    x = 4 * rng.standard_normal((sum(sizes), 3, 2, 3)) - 2
    dy = rng.standard_normal(x.shape)
    plain = bn_lib.BatchNorm(3, momentum=None)
    y, dx = plain.forward(x), plain.backward(dy)
    edges = np.cumsum((0,) + sizes)
    parts = [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]

    def replica(rank, allreduce_sum, part):
        layer = bn_lib.SyncBatchNorm(3, momentum=None, allreduce_sum=allreduce_sum)
        return layer.forward(x[part]), layer.backward(dy[part]), layer

    outs = ThreadWorld(len(sizes)).run(replica, parts)
    np.testing.assert_allclose(np.concatenate([o[0] for o in outs]), y, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([o[1] for o in outs]), dx, atol=1e-12)
    np.testing.assert_allclose(sum(o[2].dgamma for o in outs), plain.dgamma, atol=1e-12)
    for _, _, layer in outs:
        np.testing.assert_allclose(layer.running_var, plain.running_var, atol=1e-12)


def test_a_global_batch_of_one_value_per_channel_is_refused_on_every_rank():
    def replica(rank, allreduce_sum, x):
        return sync_batch_norm_forward(x, np.ones(2), np.zeros(2), allreduce_sum)

    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ThreadWorld(3).run(replica, [np.ones((1, 2)), np.ones((0, 2)), np.ones((0, 2))])


def test_a_collective_that_changes_the_shape_is_refused():
    with pytest.raises(ValueError, match="allreduce_sum returned shape"):
        sync_batch_norm_forward(np.ones((4, 2)), np.ones(2), np.zeros(2), lambda a: a[:1])


def test_a_rank_that_never_joins_the_collective_times_out():
    def replica(rank, allreduce_sum):
        return allreduce_sum(np.ones(2)) if rank == 0 else None

    with pytest.raises(TimeoutError, match="not joined by every rank"):
        ThreadWorld(2, timeout_s=0.5).run(replica)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_merge_moments_equals_the_moments_of_the_union(dtype, rng):
    sizes = [5, 0, 11, 2]
    parts = [(rng.standard_normal((n, 3)) * 2 + 7).astype(dtype) for n in sizes]
    means = np.array([p.mean(axis=0) if len(p) else np.zeros(3) for p in parts], dtype=dtype)
    m2s = np.array([((p - p.mean(axis=0)) ** 2).sum(axis=0) if len(p) else np.zeros(3)
                    for p in parts], dtype=dtype)
    count, mean, m2 = merge_moments(sizes, means, m2s)
    union = np.concatenate(parts).astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert count == sum(sizes)
    np.testing.assert_allclose(mean, union.mean(axis=0), rtol=tol)
    np.testing.assert_allclose(m2, ((union - union.mean(axis=0)) ** 2).sum(axis=0), rtol=tol)


def test_convert_sync_batchnorm_keeps_parameters_and_statistics(rng):
    model = bn_lib.mlp([4, 6, 3], norm="batch")
    model.forward(rng.standard_normal((8, 4)))  # running statistics move off their start
    before = model[1]
    converted = bn_lib.SyncBatchNorm.convert_sync_batchnorm(model, lambda a: a)
    after = converted[1]
    assert isinstance(after, bn_lib.SyncBatchNorm)
    for name in ("gamma", "beta", "running_mean", "running_var"):
        assert np.array_equal(getattr(before, name), getattr(after, name)), name
    assert after.num_batches_tracked == 1
