"""bn_lib: Batch Normalization from scratch in NumPy, verified against PyTorch.

The book (chapters/) explains every piece; each docstring names its chapter and equation.
Only NumPy is imported here: PyTorch is needed by ``bn_lib.testing`` (the oracle) and
``bn_lib.torch_distributed`` (the transport of chapter 10) alone, both imported by name.
"""

from .adapt import FrozenBatchNorm, freeze_batchnorm, update_bn
from .batchnorm import BatchNorm
from .data import Split, batches, load_digits_split
from .distributed import (
    SyncBatchNorm,
    global_moments,
    merge_moments,
    sync_batch_norm_backward,
    sync_batch_norm_forward,
)
from .fold import fold_batchnorm, fold_sequential
from .functional import (
    BatchNormCache,
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_inference,
)
from .gradcheck import check_module_gradients, numerical_gradient, relative_error
from .layers import (
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
)
from .losses import accuracy, softmax, softmax_cross_entropy
from .models import mlp
from .module import Module
from .norms import GroupNorm, LayerNorm
from .optim import SGD, Adam, RMSProp
from .renorm import BatchRenorm, renorm_limits
from .residual import Residual, residual_mlp
from .thread_world import ThreadWorld
from .train import evaluate, fit, train_step

__version__ = "1.0.0"

__all__ = [
    "BatchNorm", "BatchNormCache", "batch_norm_forward", "batch_norm_backward",
    "batch_norm_inference", "Module", "Linear", "Conv2d", "ReLU", "Sigmoid", "Tanh",
    "Dropout", "Flatten", "Sequential", "LayerNorm", "GroupNorm",
    "softmax", "softmax_cross_entropy", "accuracy", "SGD", "RMSProp", "Adam",
    "numerical_gradient", "relative_error", "check_module_gradients", "Split",
    "load_digits_split", "batches", "fit", "evaluate", "train_step", "mlp",
    "fold_batchnorm", "fold_sequential", "SyncBatchNorm", "ThreadWorld", "global_moments",
    "merge_moments", "sync_batch_norm_forward", "sync_batch_norm_backward",
    "BatchRenorm", "renorm_limits", "FrozenBatchNorm",
    "freeze_batchnorm", "update_bn", "Residual", "residual_mlp",
]
