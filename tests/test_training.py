"""The digits data set, the ready-made networks and the training loop."""

import numpy as np
import pytest

import bn_lib


def test_digits_split_is_seeded_and_standardized():
    a, b = bn_lib.load_digits_split(seed=3), bn_lib.load_digits_split(seed=3)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    total = len(a.x_train) + len(a.x_val) + len(a.x_test)
    assert total == 1797 and a.x_train.shape[1] == 64
    assert np.abs(a.x_train.mean(axis=0)).max() < 1e-12
    assert bn_lib.load_digits_split(images=True).x_train.shape[1:] == (1, 8, 8)
    sizes = [len(xb) for xb, _ in bn_lib.batches(a.x_train, a.y_train, 100, rng=0)]
    assert sizes == [100] * (len(a.x_train) // 100)


def test_fit_learns_digits_and_records_history():
    data = bn_lib.load_digits_split(seed=0)
    model = bn_lib.mlp([64, 32, 10], norm="batch", seed=0)
    history = bn_lib.fit(model, bn_lib.SGD(model.parameters(), lr=0.1, momentum=0.9), data,
                         epochs=3, batch_size=32, seed=0)
    assert not history["diverged"]
    assert len(history["loss"]) == 3 * (len(data.x_train) // 32)
    assert history["val_acc"][-1] > 0.9
    assert model.training  # fit leaves the model as it found it: in training mode


def test_fit_records_divergence_instead_of_raising():
    data = bn_lib.load_digits_split(seed=0)
    model = bn_lib.mlp([64, 32, 10], seed=0, init_scale=10.0)
    history = bn_lib.fit(model, bn_lib.SGD(model.parameters(), lr=1e200), data, epochs=2)
    assert history["diverged"]
    # the eval lists end with the divergence, so history["val_acc"][-1] always exists
    assert np.isnan(history["val_loss"][-1]) and history["val_acc"][-1] == 0.0


@pytest.mark.parametrize("norm,cls", [("batch", bn_lib.BatchNorm), ("layer", bn_lib.LayerNorm),
                                      ("group", bn_lib.GroupNorm)])
def test_mlp_builds_each_norm(norm, cls):
    model = bn_lib.mlp([8, 6, 6, 3], norm=norm, num_groups=2, eps=1e-3)
    norms = [layer for layer in model.layers if isinstance(layer, cls)]
    assert len(norms) == 2 and all(layer.eps == 1e-3 for layer in norms)
    assert not model.layers[0].has_bias and model.layers[-1].has_bias
    assert model.forward(np.ones((4, 8))).shape == (4, 3)
