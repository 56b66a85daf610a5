"""The layers around BatchNorm that need no oracle: Dropout's statistics, and BN folded
into the layer before it computing what the unfolded network computes (eval mode)."""

import numpy as np
from layer_cases import conv_and_trained_bn

import bn_lib


def test_dropout_train_and_eval():
    layer = bn_lib.Dropout(0.5, rng=0)
    x = np.ones((200, 50))
    y = layer.forward(x)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs(y.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(layer.backward(x), y)
    layer.eval()
    np.testing.assert_array_equal(layer.forward(x), x)


def test_dropout_keeps_the_mean():
    # test_nn.py, _test_dropout: p = 0.2 on an input filled with 1 - p; the output and the
    # gradient keep the mean within 0.05 (input of test_Dropout: torch.empty(1000))
    p = 0.2
    x = np.full(1000, 1 - p)
    layer = bn_lib.Dropout(p, rng=0)
    y = layer.forward(x)
    assert abs(y.mean() - (1 - p)) < 0.05
    assert abs(layer.backward(x).mean() - (1 - p)) < 0.05
    assert set(np.unique(y)) <= {0.0, 1.0}  # survivors scaled by 1 / (1 - p)


def test_folding_matches_the_unfolded_network(rng):
    conv, bn = conv_and_trained_bn(rng)
    x = rng.standard_normal((2, 2, 5, 5))
    folded = bn_lib.fold_batchnorm(conv, bn)
    np.testing.assert_allclose(folded.forward(x), bn.forward(conv.forward(x)), atol=1e-12)

    model = bn_lib.Sequential(bn_lib.Linear(4, 3, bias=False), bn_lib.BatchNorm(3),
                              bn_lib.ReLU(), bn_lib.Linear(3, 2))
    model.forward(rng.standard_normal((8, 4)))
    model.eval()
    x = rng.standard_normal((5, 4))
    folded_model = bn_lib.fold_sequential(model)
    assert len(folded_model) == 3
    np.testing.assert_allclose(folded_model.forward(x), model.forward(x), atol=1e-12)
