"""Fixtures only: the devices PyTorch computes the oracle on, and a seeded generator.

The CPU is always checked; CUDA is added when ``torch.cuda.is_available()``, marked
``gpu`` (``pytest -m gpu`` runs only those), and skipped otherwise. Shared helpers live
in ``bn_lib.testing``, not here.

Without CUDA, Triton's kernels (bn_triton) can run only in its interpreter, which must be
switched on before triton is first imported: hence TRITON_INTERPRET=1 here, first.
"""

import os

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)
