"""BatchNorm's running statistics against ``nn.BatchNorm``: momentum, the cumulative
average, changing batch sizes, switching tracking off, and eval mode's use of them.

Some cases follow PyTorch's ``test/test_nn.py`` (``TestNNDeviceType``), named at each.
"""

import numpy as np
import pytest

import bn_lib
from bn_lib.testing import assert_close, to_torch, torch_twin

torch = pytest.importorskip("torch")


def assert_same_statistics(ours, theirs, what=""):
    assert_close(ours.running_mean, theirs.running_mean, "float64", "reduction",
                 f"{what} running_mean")
    assert_close(ours.running_var, theirs.running_var, "float64", "reduction",
                 f"{what} running_var")
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize("shape", [(32, 7), (16, 5, 9), (8, 4, 6, 5)], ids=str)
def test_running_statistics_with_changing_batch_sizes(shape, momentum, device, rng):
    c = shape[1]
    ours = bn_lib.BatchNorm(c, momentum=momentum)
    ours.gamma[...], ours.beta[...] = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
    theirs = torch_twin(ours, ndim=len(shape), device=device)
    for step, n in enumerate([shape[0], 3, shape[0] + 5, 2]):
        x = rng.uniform(0.5, 3) * rng.standard_normal((n,) + shape[1:]) + step
        ours.forward(x)
        theirs(to_torch(x, device))
    assert ours.num_batches_tracked == 4
    assert_same_statistics(ours, theirs)


# test_nn.py, _test_batchnorm_simple_average (momentum None, two batches,
# reset_running_stats between them, then both in one run: the running statistics are the
# average of the two single-batch ones)
def test_batchnorm_simple_average():
    rng = np.random.default_rng(6)
    data1, data2 = rng.random((4, 3)), rng.random((4, 3))
    ours = bn_lib.BatchNorm(3, momentum=None)
    theirs = torch_twin(ours)
    singles = []
    for data in (data1, data2):
        assert_close(ours.forward(data), theirs(to_torch(data)), "float64", what="y")
        singles.append((ours.running_mean.copy(), ours.running_var.copy()))
        assert_same_statistics(ours, theirs)
        ours.reset_running_stats()
        theirs.reset_running_stats()
        np.testing.assert_array_equal(ours.running_mean, np.zeros(3))
        np.testing.assert_array_equal(ours.running_var, np.ones(3))
    ours.forward(data1)
    ours.forward(data2)
    np.testing.assert_allclose(ours.running_mean, (singles[0][0] + singles[1][0]) / 2)
    np.testing.assert_allclose(ours.running_var, (singles[0][1] + singles[1][1]) / 2)


# test_nn.py, test_batchnorm_buffer_update_when_stats_are_not_tracked: switching
# track_running_stats off after construction freezes the buffers and the counter; added
# here: eval mode then still normalizes with those frozen buffers
def test_batchnorm_buffer_update_when_stats_are_not_tracked():
    rng = np.random.default_rng(7)
    ours = bn_lib.BatchNorm(4)
    theirs = torch_twin(ours)
    x = rng.random((32, 4))
    assert_close(ours.forward(x), theirs(to_torch(x)), "float64", what="y while tracking")
    theirs.track_running_stats = False
    ours.track_running_stats = False
    x = rng.random((32, 4))
    assert_close(ours.forward(x), theirs(to_torch(x)), "float64", what="train y")
    assert_same_statistics(ours, theirs)
    assert ours.num_batches_tracked == 1
    assert_close(ours.eval().forward(x), theirs.eval()(to_torch(x)), "float64",
                 what="eval y")


# After test_nn.py's _test_batchnorm_update_stats and _test_batchnorm_eval (their bodies
# were not in the copy searched, so this checks what their names state):
# num_batches_tracked counts training steps only, and an eval forward is the same on
# every call and for every batch composition
def test_batchnorm_update_stats_and_eval():
    rng = np.random.default_rng(8)
    ours = bn_lib.BatchNorm(3)
    theirs = torch_twin(ours)
    for _ in range(3):
        x = rng.random((4, 3))
        assert_close(ours.forward(x), theirs(to_torch(x)), "float64", what="train y")
    ours.eval()
    theirs.eval()
    x = rng.random((4, 3))
    y1, y2 = ours.forward(x), ours.forward(x)
    np.testing.assert_array_equal(y1, y2)
    one = theirs(to_torch(x[:1]))
    assert_close(ours.forward(x[:1]), one, "float64", what="eval y of one example")
    assert_close(y1[:1], one, "float64", what="eval y of the same example in a batch")
    assert ours.num_batches_tracked == int(theirs.num_batches_tracked) == 3
