"""Assignment 09, task "recalibrate": the running statistics that
``torch.optim.swa_utils.update_bn`` leaves in a BN layer after one pass over a loader
(chapter 09, `eq-09-update-bn`): every batch weighted equally, the unbiased variance of
each batch, the last batch shorter.

Oracle: PyTorch's ``update_bn`` itself, on a float64 ``BatchNorm1d`` or ``BatchNorm2d``
(alone, or after a fixed ``Linear`` layer) fed the same batches.
"""

import pytest
import torch
from course_helpers import assert_close, batch, task, unpack

from bn_lib.testing import to_numpy, to_torch

pytestmark = task("recalibrate")
# bn_lib's update_bn and its BN layers would answer the task for the learner
BN_LIB_NOT_ALLOWED = ("update_bn", "BatchNorm", "BatchRenorm", "batch_norm_forward",
                      "batch_statistics")
LOADERS = {"equal_batches": (32, 8), "short_last_batch": (50, 16)}  # (examples, batch size)


def loader(examples, batch_size, row_shape, seed=0):
    """The batches of a loader over ``examples`` rows, in order; the last may be shorter."""
    data = batch((examples,) + row_shape, seed=seed)
    return [data[start:start + batch_size] for start in range(0, examples, batch_size)]


def torch_update_bn(model, batches):
    """PyTorch's update_bn over the batches; the model's last BN layer's statistics."""
    torch.optim.swa_utils.update_bn([to_torch(b) for b in batches], model)
    bn = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    return to_numpy(bn[-1].running_mean), to_numpy(bn[-1].running_var)


def recalibrate(learner, batches):
    result = learner.call("recalibrate", batches)
    return unpack(result, ("running_mean", "running_var"), "recalibrate")


def compare(result, expected, against):
    for label, ours, theirs in zip(("running_mean", "running_var"), result, expected):
        assert_close(label, ours, theirs, against)


@pytest.mark.parametrize("name", list(LOADERS))
def test_matches_update_bn(learner, name):
    examples, batch_size = LOADERS[name]
    batches = loader(examples, batch_size, (5,))
    layer = torch.nn.BatchNorm1d(5, dtype=torch.float64)
    expected = torch_update_bn(layer, batches)
    sizes = ", ".join(str(len(b)) for b in batches)
    compare(recalibrate(learner, batches), expected,
            f"update_bn on BatchNorm1d, batches of {sizes}")


def test_after_a_fixed_layer(learner):
    # update_bn runs the whole model: the BN layer sees the Linear layer's outputs, which
    # are what the learner receives
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4, dtype=torch.float64),
                                torch.nn.BatchNorm1d(4, dtype=torch.float64))
    inputs = loader(20, 8, (6,), seed=3)
    with torch.no_grad():
        activations = [to_numpy(model[0](to_torch(b))) for b in inputs]
    expected = torch_update_bn(model, inputs)
    compare(recalibrate(learner, activations), expected,
            "update_bn on Linear then BatchNorm1d, batches of 8, 8, 4")


def test_feature_maps(learner):
    # (N, C, H, W): statistics per channel over N * H * W values, Bessel's factor with them
    batches = loader(9, 4, (3, 5, 5), seed=5)
    expected = torch_update_bn(torch.nn.BatchNorm2d(3, dtype=torch.float64), batches)
    compare(recalibrate(learner, batches), expected,
            "update_bn on BatchNorm2d, batches of 4, 4, 1 images")
