"""Fixtures only: the devices PyTorch computes the oracle on, and a seeded generator.

NumPy only at import time, so the NumPy-only test files run where torch is not installed
(``tests/test_torch_rule.py`` checks that they do). Files that compare with PyTorch end in
``_torch.py`` and start with ``torch = pytest.importorskip("torch")``; shared helpers live
in ``bn_lib.testing``, not here.

The CPU is always checked; CUDA is added when ``torch.cuda.is_available()``, marked
``gpu`` (``pytest -m gpu`` runs only those), and skipped otherwise.

Without CUDA, Triton's kernels (bn_triton) can run only in its interpreter, which must be
switched on before triton is first imported. Asking torch whether CUDA is there would
import torch, so the cheap sign of a GPU machine stands in: no ``nvidia-smi``, no CUDA.
"""

import os
import shutil

import numpy as np
import pytest

if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request):
    if request.param == "cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)
