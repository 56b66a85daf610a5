"""Shared fixtures: the devices PyTorch computes the oracle on.

The CPU is always checked; CUDA is added when ``torch.cuda.is_available()``, marked
``gpu`` (``pytest -m gpu`` runs only those), and skipped otherwise.
"""

import numpy as np
import pytest
import torch

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


def to_torch(a, device="cpu", requires_grad=False):
    return torch.tensor(a, device=device, requires_grad=requires_grad)


def to_numpy(t):
    return t.detach().cpu().numpy()
