"""The layers, losses and optimizers around BatchNorm, against PyTorch; data and training."""

import numpy as np
import pytest
import torch

import bn_lib
from bn_lib.testing import to_numpy, to_torch


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias, rng):
    ours = bn_lib.Linear(5, 3, bias=bias, rng=1)
    ours.b[...] = rng.standard_normal(3) if bias else 0.0
    x, dy = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    xt, wt = (to_torch(a, requires_grad=True) for a in (x, ours.W))
    bt = to_torch(ours.b, requires_grad=True) if bias else None
    yt = torch.nn.functional.linear(xt, wt, bt)
    yt.backward(to_torch(dy))
    np.testing.assert_allclose(ours.forward(x), to_numpy(yt), atol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), to_numpy(xt.grad), atol=1e-12)
    np.testing.assert_allclose(ours.dW, to_numpy(wt.grad), atol=1e-12)
    assert [name for name, _, _ in ours.named_parameters()] == (["W", "b"] if bias else ["W"])
    if bias:
        np.testing.assert_allclose(ours.db, to_numpy(bt.grad), atol=1e-12)


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), (2, 0)])
def test_conv2d_matches_torch(stride, padding, device, rng):
    ours = bn_lib.Conv2d(3, 4, 3, stride=stride, padding=padding, rng=1)
    ours.b[...] = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 7, 6))
    y = ours.forward(x)
    dy = rng.standard_normal(y.shape)
    xt = to_torch(x, device, requires_grad=True)
    wt = to_torch(ours.W, device, requires_grad=True)
    bt = to_torch(ours.b, device, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    yt.backward(to_torch(dy, device))
    np.testing.assert_allclose(y, to_numpy(yt), atol=1e-10)
    np.testing.assert_allclose(ours.backward(dy), to_numpy(xt.grad), atol=1e-10)
    np.testing.assert_allclose(ours.dW, to_numpy(wt.grad), atol=1e-10)
    np.testing.assert_allclose(ours.db, to_numpy(bt.grad), atol=1e-10)


@pytest.mark.parametrize("ours,theirs,shape", [
    (bn_lib.LayerNorm(6), torch.nn.LayerNorm(6), (4, 6)),
    (bn_lib.LayerNorm(6), torch.nn.LayerNorm(6), (2, 5, 6)),
    (bn_lib.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4), (3, 4, 5, 2)),
    (bn_lib.GroupNorm(4, 4), torch.nn.InstanceNorm2d(4, affine=True), (3, 4, 5, 2)),
], ids=lambda v: repr(v) if isinstance(v, bn_lib.Module) else str(v))
def test_layernorm_and_groupnorm_match_torch(ours, theirs, shape, rng):
    theirs = theirs.double()
    ours.gamma[...] = rng.uniform(0.5, 2, ours.gamma.shape)
    ours.beta[...] = rng.standard_normal(ours.beta.shape)
    with torch.no_grad():
        theirs.weight.copy_(to_torch(ours.gamma))
        theirs.bias.copy_(to_torch(ours.beta))
    x, dy = 3 * rng.standard_normal(shape) + 1, rng.standard_normal(shape)
    xt = to_torch(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(to_torch(dy))
    np.testing.assert_allclose(ours.forward(x), to_numpy(yt), atol=1e-10)
    np.testing.assert_allclose(ours.backward(dy), to_numpy(xt.grad), atol=1e-10)
    np.testing.assert_allclose(ours.dgamma, to_numpy(theirs.weight.grad), atol=1e-10)
    np.testing.assert_allclose(ours.dbeta, to_numpy(theirs.bias.grad), atol=1e-10)


@pytest.mark.parametrize("ours,theirs", [(bn_lib.ReLU(), torch.relu),
                                         (bn_lib.Sigmoid(), torch.sigmoid),
                                         (bn_lib.Tanh(), torch.tanh)],
                         ids=["relu", "sigmoid", "tanh"])
def test_activations_match_torch(ours, theirs, rng):
    x = rng.standard_normal((2, 3, 4, 4)) * 4
    xt = to_torch(x, requires_grad=True)
    yt = theirs(xt)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(to_torch(dy))
    np.testing.assert_allclose(ours.forward(x), to_numpy(yt), atol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), to_numpy(xt.grad), atol=1e-12)


def test_softmax_cross_entropy_matches_torch(rng):
    logits, labels = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, 6)
    lt = to_torch(logits, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(lt, torch.tensor(labels))
    loss_t.backward()
    loss, dlogits = bn_lib.softmax_cross_entropy(logits, labels)
    assert abs(loss - loss_t.item()) < 1e-12
    np.testing.assert_allclose(dlogits, to_numpy(lt.grad), atol=1e-12)


@pytest.mark.parametrize("ours_cls,theirs_cls,kwargs", [
    (bn_lib.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (bn_lib.SGD, torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.01}),
    (bn_lib.RMSProp, torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-8}),
    (bn_lib.Adam, torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-8}),
])
def test_optimizers_match_torch(ours_cls, theirs_cls, kwargs, rng):
    """gamma and beta are updated like any parameter, by any optimizer (seed 000)."""
    value = rng.standard_normal(4)
    grad = np.zeros(4)
    param = to_torch(value.copy(), requires_grad=True)
    ours, theirs = ours_cls([(value, grad)], **kwargs), theirs_cls([param], **kwargs)
    for _ in range(5):
        g = rng.standard_normal(4)
        grad[...] = g
        param.grad = to_torch(g.copy())
        ours.step()
        theirs.step()
    np.testing.assert_allclose(value, to_numpy(param), atol=1e-12)


def test_folding_matches_the_unfolded_network_and_torch(rng):
    conv, bn = bn_lib.Conv2d(2, 3, 3, padding=1, rng=1), bn_lib.BatchNorm(3)
    bn.gamma[...] = rng.uniform(0.5, 2, 3)
    bn.beta[...] = rng.standard_normal(3)
    for _ in range(3):
        bn.forward(conv.forward(rng.standard_normal((4, 2, 5, 5)) + 1))
    bn.eval()
    x = rng.standard_normal((2, 2, 5, 5))
    folded = bn_lib.fold_batchnorm(conv, bn)
    np.testing.assert_allclose(folded.forward(x), bn.forward(conv.forward(x)), atol=1e-12)

    tconv = torch.nn.Conv2d(2, 3, 3, padding=1).double().eval()
    tbn = torch.nn.BatchNorm2d(3).double().eval()
    with torch.no_grad():
        tconv.weight.copy_(to_torch(conv.W))
        tconv.bias.copy_(to_torch(conv.b))
        for name, value in [("weight", bn.gamma), ("bias", bn.beta),
                            ("running_mean", bn.running_mean), ("running_var", bn.running_var)]:
            getattr(tbn, name).copy_(to_torch(value))
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(tconv, tbn)
    np.testing.assert_allclose(folded.W, to_numpy(fused.weight), atol=1e-12)
    np.testing.assert_allclose(folded.b, to_numpy(fused.bias), atol=1e-12)

    model = bn_lib.Sequential(bn_lib.Linear(4, 3, bias=False), bn_lib.BatchNorm(3),
                              bn_lib.ReLU(), bn_lib.Linear(3, 2))
    model.forward(rng.standard_normal((8, 4)))
    model.eval()
    x = rng.standard_normal((5, 4))
    folded_model = bn_lib.fold_sequential(model)
    assert len(folded_model) == 3
    np.testing.assert_allclose(folded_model.forward(x), model.forward(x), atol=1e-12)


def test_dropout_train_and_eval(rng):
    layer = bn_lib.Dropout(0.5, rng=0)
    x = np.ones((200, 50))
    y = layer.forward(x)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs(y.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(layer.backward(x), y)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), x)


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


@pytest.mark.parametrize("kernel,stride,padding", [(1, 1, 0), (2, 2, 0), (5, 3, 2), (3, 1, 2)])
def test_conv2d_kernel_sizes_match_torch(kernel, stride, padding, rng):
    ours = bn_lib.Conv2d(2, 3, kernel, stride=stride, padding=padding, rng=2)
    ours.b[...] = rng.standard_normal(3)
    x = rng.standard_normal((3, 2, 9, 7))
    y = ours.forward(x)
    dy = rng.standard_normal(y.shape)
    xt = to_torch(x, requires_grad=True)
    wt = to_torch(ours.W, requires_grad=True)
    bt = to_torch(ours.b, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=padding)
    yt.backward(to_torch(dy))
    np.testing.assert_allclose(y, to_numpy(yt), atol=1e-10)
    np.testing.assert_allclose(ours.backward(dy), to_numpy(xt.grad), atol=1e-10)
    np.testing.assert_allclose(ours.dW, to_numpy(wt.grad), atol=1e-10)
    np.testing.assert_allclose(ours.db, to_numpy(bt.grad), atol=1e-10)
