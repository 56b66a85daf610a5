"""Assignment 10, task "sync": synchronized Batch Normalization over W simulated ranks
(chapter 10, `eq-10-mean`, `eq-10-var`, `eq-10-sums` and `eq-10-dx`).

The learner writes what one rank computes: its local sums, and its output and dx from the
all-reduced totals. The test plays the network: it calls the learner's functions once
per rank, each with that rank's slice only, and sums their results over the ranks (the
all-reduce). Oracle: PyTorch's BN in training mode on the concatenated batch, with
autograd, which is what ``torch.nn.SyncBatchNorm`` computes; slices of equal and unequal
sizes, one of them empty.
"""

import numpy as np
import pytest
from course_helpers import (
    EPS,
    affine,
    assert_close,
    batch,
    check_array,
    check_number,
    task,
    torch_batch_norm,
    unpack,
)

pytestmark = task("sync")
# bn_lib's synchronized BN and its BN core would answer the task for the learner
BN_LIB_NOT_ALLOWED = ("SyncBatchNorm", "global_moments", "merge_moments", "ThreadWorld",
                      "sync_batch_norm_forward", "sync_batch_norm_backward", "BatchNorm",
                      "batch_norm_forward", "batch_norm_backward", "batch_statistics",
                      "normalize", "input_gradient", "channel_sum", "channel_dot")
CHANNELS = 4
SLICES = {"equal": (4, 4, 4), "unequal": (2, 9, 5), "empty_rank": (3, 0, 6, 7)}


def split(a, sizes):
    """The ranks' slices of ``a`` (rows), in rank order."""
    return np.split(a, np.cumsum(sizes)[:-1])


def allreduce(parts, what, shape=(CHANNELS,)):
    """The sum over the ranks of what each rank's call returned (the collective), each
    part checked first: a float64 array of ``shape`` on every rank."""
    return np.sum([check_array(f"{what} on rank {rank}", part, shape)
                   for rank, part in enumerate(parts)], axis=0)


def synchronized_forward(learner, slices, gamma, beta):
    """Two rounds of all-reduce, then every rank's output; the list of y_r."""
    round_1 = [unpack(learner.call("sync_sums", x_r), ("s_r", "m_r"), "sync_sums")
               for x_r in slices]
    total_sum = allreduce([s_r for s_r, _ in round_1], "s_r from sync_sums")
    total_count = sum(check_number(f"m_r from sync_sums on rank {rank}", m_r)
                      for rank, (_, m_r) in enumerate(round_1))
    round_2 = [learner.call("sync_squares", x_r, total_sum, total_count) for x_r in slices]
    total_squares = allreduce(round_2, "q_r from sync_squares")
    return [learner.call("sync_forward", x_r, gamma, beta, total_sum, total_count,
                         total_squares, EPS)
            for x_r in slices]


def case(name):
    sizes = SLICES[name]
    x = batch((sum(sizes), CHANNELS))
    gamma, beta = affine(CHANNELS)
    return sizes, x, gamma, beta


@pytest.mark.parametrize("name", list(SLICES))
def test_forward_matches_global_batch_norm(learner, name):
    sizes, x, gamma, beta = case(name)
    expected = split(torch_batch_norm(x, gamma, beta), sizes)
    outputs = synchronized_forward(learner, split(x, sizes), gamma, beta)
    for rank, (y_r, expected_r) in enumerate(zip(outputs, expected)):
        assert_close(f"y on rank {rank}", y_r, expected_r,
                     f"F.batch_norm on the concatenated batch, slices of {sizes}")


@pytest.mark.parametrize("name", list(SLICES))
def test_backward_matches_autograd(learner, name):
    sizes, x, gamma, beta = case(name)
    dy = np.random.default_rng(2).standard_normal(x.shape)
    _, dx, dgamma, dbeta = torch_batch_norm(x, gamma, beta, dy)
    inv_std = 1.0 / np.sqrt(x.var(axis=0) + EPS)  # the global statistics, given
    x_hat = (x - x.mean(axis=0)) * inv_std
    local = [unpack(learner.call("sync_backward_sums", dy_r, x_hat_r),
                    ("sum_dy", "sum_dy_x_hat"), "sync_backward_sums")
             for dy_r, x_hat_r in zip(split(dy, sizes), split(x_hat, sizes))]
    total_dy = allreduce([a for a, _ in local], "sum_dy from sync_backward_sums")
    total_dy_x_hat = allreduce([b for _, b in local], "sum_dy_x_hat from sync_backward_sums")
    against = f"PyTorch autograd on the concatenated batch, slices of {sizes}"
    # the two reduced sums are dbeta and dgamma of the global batch (chapter 03)
    assert_close("the all-reduced sum_dy", total_dy, dbeta, f"dbeta by {against}")
    assert_close("the all-reduced sum_dy_x_hat", total_dy_x_hat, dgamma, f"dgamma by {against}")
    for rank, (dy_r, x_hat_r, dx_r) in enumerate(zip(split(dy, sizes), split(x_hat, sizes),
                                                     split(dx, sizes))):
        ours = learner.call("sync_backward", dy_r, x_hat_r, gamma, inv_std, total_dy,
                            total_dy_x_hat, len(x))
        assert_close(f"dx on rank {rank}", ours, dx_r, against)
