"""Residual blocks (bn_lib.residual): gradients, and zero_init_residual starting every
block as the identity. Against PyTorch: ``test_residual_torch.py``."""

import numpy as np
import pytest

import bn_lib


def test_residual_gradients(rng):
    branch = bn_lib.Sequential(bn_lib.Linear(4, 4, rng=1), bn_lib.Tanh(),
                               bn_lib.Linear(4, 4, rng=2))
    errors = bn_lib.check_module_gradients(bn_lib.Residual(branch),
                                           rng.standard_normal((5, 4)))
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("norm", ["batch", None])
def test_residual_mlp_gradients(norm, rng):
    model = bn_lib.residual_mlp(5, 4, 3, num_blocks=2, norm=norm, seed=3)
    errors = bn_lib.check_module_gradients(model, rng.standard_normal((6, 5)), normwise=True)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("norm", ["batch", None])
def test_zero_init_residual_makes_every_block_the_identity(norm, rng):
    model = bn_lib.residual_mlp(6, 5, 3, num_blocks=3, norm=norm, zero_init_residual=True)
    x = rng.standard_normal((10, 6))
    h = x
    for layer in model.layers[:3 if norm else 2]:  # the stem
        h = layer.forward(h)
    shallow = model.layers[-1].forward(h)  # stem then head, no blocks
    np.testing.assert_allclose(model.forward(x), shallow, rtol=0, atol=1e-12)


def test_branch_must_keep_the_shape():
    block = bn_lib.Residual(bn_lib.Linear(4, 3))
    with pytest.raises(ValueError, match="changed the shape"):
        block.forward(np.ones((2, 4)))
