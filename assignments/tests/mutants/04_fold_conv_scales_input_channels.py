"""The convolution's kernel scaled along its input channels (axis 1), not its outputs."""

import numpy as np

MUST_FAIL = "test_04_test_time.py::test_fold_conv_matches_torch_fuse[with_bias]"


def fold_conv_bn(W, b, bn):
    scale = bn.gamma / np.sqrt(bn.running_var + bn.eps)
    bias = np.zeros(W.shape[0]) if b is None else b
    return W * scale[None, : W.shape[1], None, None], scale * (bias - bn.running_mean) + bn.beta
