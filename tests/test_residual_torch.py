"""A residual network (bn_lib.residual_mlp) against the same network in PyTorch."""

import pytest

import bn_lib
from bn_lib.testing import assert_close, to_torch, torch_twin

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("norm", ["batch", None])
def test_residual_mlp_matches_pytorch(norm, device, rng):
    model = bn_lib.residual_mlp(5, 4, 3, num_blocks=2, norm=norm, seed=2)
    theirs = torch_twin(model, device=device)
    x, dy = rng.standard_normal((8, 5)), rng.standard_normal((8, 3))
    xt = to_torch(x, device, requires_grad=True)
    yt = theirs(xt)
    (dxt,) = torch.autograd.grad(yt, (xt,), to_torch(dy, device))
    assert_close(model.forward(x), yt, "float64", what="y")
    assert_close(model.backward(dy), dxt, "float64", what="dx")
