"""SGD, RMSProp and Adam against torch.optim: gamma and beta are updated like any
parameter, by any optimizer (seed 000), and a setting out of range is refused with
torch.optim's message.

The configurations are PyTorch's ``common_optimizers.py`` (``optim_inputs_func_sgd / _adam
/ _rmsprop``) that bn_lib's optimizers support; left out: SGD's dampening and nesterov,
Adam's amsgrad, RMSProp's centered and momentum, maximize, Tensor betas, param groups,
and the CUDA, foreach, fused and capturable flags.
"""

import numpy as np
import pytest

import bn_lib
from bn_lib.testing import assert_close, to_torch

torch = pytest.importorskip("torch")

TORCH_OPTIMIZERS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam,
                    "RMSProp": torch.optim.RMSprop}
OPTIMIZER_INPUTS = [
    ("sgd default", "SGD", {}),
    ("sgd non-default lr", "SGD", {"lr": 1e-2}),
    ("sgd tensor lr", "SGD", {"lr": "tensor 0.001"}),
    ("sgd non-zero weight_decay", "SGD", {"weight_decay": 0.5}),
    ("sgd momentum", "SGD", {"momentum": 0.9}),
    ("sgd weight_decay w/ momentum", "SGD", {"momentum": 0.9, "weight_decay": 0.1}),
    ("sgd lr 0.1, momentum", "SGD", {"lr": 0.1, "momentum": 0.9}),
    ("adam default", "Adam", {}),
    ("adam non-default lr", "Adam", {"lr": 0.01}),
    ("adam nonzero weight_decay", "Adam", {"weight_decay": 0.1}),
    ("adam betas, eps", "Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-8}),
    ("rmsprop default", "RMSProp", {}),
    ("rmsprop non-default lr", "RMSProp", {"lr": 1e-3}),
    ("rmsprop nonzero weight_decay", "RMSProp", {"weight_decay": 0.1}),
    ("rmsprop alpha, eps", "RMSProp", {"lr": 0.01, "alpha": 0.9, "eps": 1e-8}),
]


@pytest.mark.parametrize("desc,name,kwargs", OPTIMIZER_INPUTS,
                         ids=[case[0] for case in OPTIMIZER_INPUTS])
def test_optimizers_match_torch(desc, name, kwargs):
    rng = np.random.default_rng(15)
    ours_kwargs, theirs_kwargs = dict(kwargs), dict(kwargs)
    if kwargs.get("lr") == "tensor 0.001":
        ours_kwargs["lr"] = np.array(0.001)
        theirs_kwargs["lr"] = torch.tensor(0.001, dtype=torch.float64)
    if name == "SGD" and "lr" not in kwargs:  # bn_lib's SGD has a default lr, torch's 1e-3
        ours_kwargs["lr"] = theirs_kwargs["lr"] = 1e-3
    values = [rng.standard_normal((3, 2)), rng.standard_normal(3)]
    targets = [rng.standard_normal(v.shape) for v in values]
    grads = [np.zeros_like(v) for v in values]
    ours = getattr(bn_lib, name)(list(zip(values, grads)), **ours_kwargs)
    params = [torch.nn.Parameter(to_torch(v)) for v in values]
    theirs = TORCH_OPTIMIZERS[name](params, **theirs_kwargs)
    for _ in range(5):  # loss = sum((value - target)**2 * 1.5) on both sides
        for value, grad, target in zip(values, grads, targets):
            grad[...] = 3.0 * (value - target)
        for p, target in zip(params, targets):
            p.grad = 3.0 * (p.detach() - to_torch(target))
        ours.step()
        theirs.step()
    for value, p in zip(values, params):
        assert_close(value, p, "float64", what=f"{desc} after 5 steps")


@pytest.mark.parametrize("name,kwargs,match", [
    ("Adam", {"betas": (1.0, 0.0)}, "Invalid beta parameter at index 0"),
    ("Adam", {"betas": (0.9, 1.0)}, "Invalid beta parameter at index 1"),
    ("Adam", {"eps": -1e-8}, "Invalid epsilon value"),
    ("RMSProp", {"eps": -1e-8}, "Invalid epsilon value"),
    ("RMSProp", {"alpha": -0.5}, "Invalid alpha value"),
    ("SGD", {"momentum": -0.5}, "Invalid momentum value: -0.5"),
    ("SGD", {"weight_decay": -1.0}, "Invalid weight_decay value"),
    ("SGD", {"lr": -0.1}, "Invalid learning rate"),
], ids=str)
def test_optimizer_settings_are_range_checked_like_torch(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TORCH_OPTIMIZERS[name]([torch.nn.Parameter(torch.ones(2))], **kwargs)
    with pytest.raises(ValueError, match=match):
        getattr(bn_lib, name)(bn_lib.Linear(2, 2).parameters(), **kwargs)
