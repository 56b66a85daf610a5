"""The layers and the loss around BatchNorm against PyTorch: Linear, Conv2d, the
activations, Dropout, softmax cross-entropy, NaN propagation, and BN folded into the
layer before it (``torch.nn.utils.fusion``).

Some cases follow PyTorch's ``test/test_nn.py`` (``_test_dropout``,
``test_nonlinearity_propagate_nan``) and ``common_methods_invocations.py``
(``sample_inputs_dropout``), named at each.
"""

import math

import numpy as np
import pytest
from layer_cases import conv_and_trained_bn

import bn_lib
from bn_lib.testing import assert_close, to_numpy, to_torch, torch_twin

torch = pytest.importorskip("torch")
F = torch.nn.functional


def assert_layer_matches(ours, x, device="cpu"):
    """y, dx and the parameter gradients of a bn_lib layer against its torch twin."""
    theirs = torch_twin(ours, ndim=np.ndim(x), device=device)
    xt = to_torch(x, device, requires_grad=True)
    yt = theirs(xt)
    dy = np.random.default_rng(1).standard_normal(tuple(yt.shape))
    grads = torch.autograd.grad(yt, [xt, *theirs.parameters()], to_torch(dy, device))
    assert_close(ours.forward(x), yt, "float64", what="y")
    assert_close(ours.backward(dy), grads[0], "float64", what="dx")
    for (name, _, grad), grad_t in zip(ours.named_parameters(), grads[1:], strict=True):
        assert_close(grad, grad_t, "float64", "reduction", "d" + name)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(bias, rng):
    ours = bn_lib.Linear(5, 3, bias=bias, rng=1)
    ours.b[...] = rng.standard_normal(3) if bias else 0.0
    assert [name for name, _, _ in ours.named_parameters()] == (["W", "b"] if bias else ["W"])
    assert_layer_matches(ours, rng.standard_normal((4, 5)))


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 0), (3, 1, 1), (3, 2, 1), (3, 2, 0),
                                                   (1, 1, 0), (2, 2, 0), (5, 3, 2),
                                                   (3, 1, 2)])
def test_conv2d_matches_torch(kernel, stride, padding, device, rng):
    ours = bn_lib.Conv2d(3, 4, kernel, stride=stride, padding=padding, rng=1)
    ours.b[...] = rng.standard_normal(4)
    assert_layer_matches(ours, rng.standard_normal((2, 3, 9, 7)), device)


@pytest.mark.parametrize("ours", [bn_lib.ReLU(), bn_lib.Sigmoid(), bn_lib.Tanh()], ids=repr)
def test_activations_match_torch(ours, rng):
    assert_layer_matches(ours, rng.standard_normal((2, 3, 4, 4)) * 4)


def test_softmax_cross_entropy_matches_torch(rng):
    logits, labels = rng.standard_normal((6, 5)) * 3, rng.integers(0, 5, 6)
    lt = to_torch(logits, requires_grad=True)
    loss_t = F.cross_entropy(lt, torch.tensor(labels))
    loss_t.backward()
    loss, dlogits = bn_lib.softmax_cross_entropy(logits, labels)
    assert abs(loss - loss_t.item()) < 1e-12
    assert_close(dlogits, lt.grad, "float64", what="dlogits")


# test_nn.py, test_nonlinearity_propagate_nan: the ones bn_lib has; ReLU also keeps
# infinities as torch.relu does
@pytest.mark.parametrize("name,ours,theirs", [
    ("relu", lambda x: bn_lib.ReLU().forward(x), F.relu),
    ("tanh", lambda x: bn_lib.Tanh().forward(x), torch.tanh),
    ("sigmoid", lambda x: bn_lib.Sigmoid().forward(x), torch.sigmoid),
    ("softmax", lambda x: bn_lib.softmax(x[None])[0], lambda t: F.softmax(t, 0)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_nonlinearity_propagate_nan(name, ours, theirs):
    assert math.isnan(theirs(torch.tensor([math.nan])).item())
    assert np.isnan(ours(np.array([math.nan]))).all()


def test_relu_of_nan_and_infinities_is_torch_relu():
    x = np.array([[np.nan, -1.0, 0.0, 2.0, np.inf, -np.inf]])
    np.testing.assert_array_equal(bn_lib.ReLU().forward(x), torch.relu(torch.from_numpy(x)))
    assert np.isnan(bn_lib.ReLU().forward(x.astype(np.float32))[0, 0])


# common_methods_invocations.py, sample_inputs_dropout: shapes (S, S), (S,), () with
# p in {0, 0.5, 1}, training True and False (S = 5)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(5, 5), (5,), ()])
def test_sample_inputs_dropout(shape, p, training):
    x = np.random.default_rng(13).uniform(-9, 9, shape)
    theirs = to_numpy(F.dropout(to_torch(x), p=p, training=training))
    layer = bn_lib.Dropout(p, rng=0).train(training)
    ours = layer.forward(x)
    assert np.shape(ours) == np.shape(theirs)
    if not training or p == 0.0 or p == 1.0:  # deterministic: compare values
        np.testing.assert_array_equal(ours, theirs)
    else:  # each value is dropped or scaled by 1 / (1 - p), on both sides
        for out in (ours, theirs):
            np.testing.assert_allclose(np.where(out == 0, 0, out / x), np.where(
                out == 0, 0, 1 / (1 - p)))
    if training and p == 1.0:
        expected = np.zeros(shape)
    else:
        expected = np.where(np.asarray(ours) == 0, 0, 1 / (1 - p) if training else 1)
    np.testing.assert_array_equal(layer.backward(np.ones(shape)), expected)


def test_folding_matches_torch_fuse_conv_bn_eval(rng):
    conv, bn = conv_and_trained_bn(rng)
    folded = bn_lib.fold_batchnorm(conv, bn)
    fused = torch.nn.utils.fusion.fuse_conv_bn_eval(torch_twin(conv).eval(),
                                                    torch_twin(bn, ndim=4))
    assert_close(folded.W, fused.weight, "float64", what="W")
    assert_close(folded.b, fused.bias, "float64", what="b")
