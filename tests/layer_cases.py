"""Layers in states that the tests of several files start from (not a test file)."""

import bn_lib


def conv_and_trained_bn(rng):
    """A ``Conv2d(2, 3, 3)`` and the ``BatchNorm`` after it, in eval mode after three
    training batches, with gamma and beta away from 1 and 0: what BN folding starts from."""
    conv, bn = bn_lib.Conv2d(2, 3, 3, padding=1, rng=1), bn_lib.BatchNorm(3)
    bn.gamma[...] = rng.uniform(0.5, 2, 3)
    bn.beta[...] = rng.standard_normal(3)
    for _ in range(3):
        bn.forward(conv.forward(rng.standard_normal((4, 2, 5, 5)) + 1))
    bn.eval()
    return conv, bn
