"""bn_lib.adapt against PyTorch: FrozenBatchNorm against PyTorch's eval-mode BatchNorm,
and update_bn against ``torch.optim.swa_utils.update_bn``."""

import numpy as np
import pytest

import bn_lib
from bn_lib.testing import assert_close, to_torch, torch_twin

torch = pytest.importorskip("torch")


def trained_bn(rng, c=4):
    bn = bn_lib.BatchNorm(c)
    for _ in range(3):
        bn.forward(3 * rng.standard_normal((10, c)) + 2)
    bn.gamma[...], bn.beta[...] = rng.uniform(0.5, 2, c), rng.standard_normal(c)
    return bn


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 6), (2, 4, 3, 3)], ids=str)
def test_frozen_batchnorm_matches_pytorch_eval_in_both_modes(shape, device, rng):
    bn = trained_bn(rng)
    frozen = bn_lib.FrozenBatchNorm.from_batchnorm(bn)
    theirs = torch_twin(bn, ndim=len(shape), device=device).eval()
    before = {k: getattr(frozen, k).copy() for k in ("gamma", "beta", "running_mean",
                                                    "running_var")}
    for mode in (True, False):
        frozen.train(mode)
        x, dy = 2 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
        xt = to_torch(x, device, requires_grad=True)
        yt = theirs(xt)
        (dxt,) = torch.autograd.grad(yt, (xt,), to_torch(dy, device))
        assert_close(frozen.forward(x), yt, "float64", what="y")
        assert_close(frozen.backward(dy), dxt, "float64", what="dx")
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(frozen, name), value, err_msg=name)
    assert frozen.num_parameters() == 0


@pytest.mark.parametrize("batch_size", [16, 8])  # 8: a last batch of 2
def test_update_bn_matches_torch_swa_utils(batch_size, rng):
    model = bn_lib.mlp([5, 6, 6, 3], norm="batch", seed=1)
    x = 2 * rng.standard_normal((50, 5)) + 1
    for bn in model.layers:  # some stale statistics, to be replaced
        if isinstance(bn, bn_lib.BatchNorm):
            bn.running_mean[...] = 5.0
    model.eval()
    theirs = torch_twin(model)
    assert bn_lib.update_bn(model, x, batch_size=batch_size) == 2
    loader = torch.utils.data.DataLoader(to_torch(x), batch_size=batch_size)
    torch.optim.swa_utils.update_bn(loader, theirs)
    assert not model.training
    for ours, t in zip(model.layers, theirs):
        if isinstance(ours, bn_lib.BatchNorm):
            assert ours.momentum == t.momentum == 0.1
            assert_close(ours.running_mean, t.running_mean, "float64", "reduction", "mean")
            assert_close(ours.running_var, t.running_var, "float64", "reduction", "var")
