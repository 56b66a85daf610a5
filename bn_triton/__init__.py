"""bn_triton: Batch Normalization from scratch in Triton, for the GPU (chapter 07).

A companion of bn_lib, kept out of it because it needs PyTorch and Triton: bn_lib stays
NumPy-only. ``kernels.py`` holds the four kernels (forward: statistics, normalize;
backward: the two sums, dx), ``batchnorm.py`` the functions that launch them.

Without a GPU the kernels run in Triton's interpreter, on CPU tensors, when
``TRITON_INTERPRET=1`` is set before this package is imported.
"""

from .batchnorm import (
    INTERPRETED,
    SUPPORTED_DTYPES,
    BatchNormCache,
    BatchNormFunction,
    LaunchConfig,
    batch_norm,
    batch_norm_backward,
    batch_norm_forward,
    launch_config,
)

__all__ = ["INTERPRETED", "SUPPORTED_DTYPES", "BatchNormCache", "BatchNormFunction",
           "LaunchConfig", "batch_norm", "batch_norm_backward", "batch_norm_forward",
           "launch_config"]
