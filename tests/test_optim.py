"""The optimizers refuse a bad parameter list or setting, naming it as torch.optim does.

Cases from PyTorch's ``common_optimizers.py`` (``optim_error_inputs_func_sgd/adam/rmsprop``,
``get_error_inputs_for_all_optims``, CPU), where bn_lib has the setting.
"""

import numpy as np
import pytest

import bn_lib

# (desc, optimizer, how the parameters are passed, kwargs, bn_lib's error, regex)
OPTIMIZER_ERROR_INPUTS = [
    ("invalid param type", "SGD", "one array", {}, TypeError, "iterable of"),
    ("duplicate parameters", "SGD", "duplicate", {}, ValueError, "more than once"),
    ("Tensor lr must be 1-element", "SGD", "pairs", {"lr": np.array([0.001, 0.001])},
     TypeError, "single number"),
    ("sgd momentum should be between 0 and 1", "SGD", "pairs",
     {"lr": 1e-2, "momentum": -0.5}, ValueError, "Invalid momentum value: -0.5"),
    ("adam beta1 should be between 0 and 1", "Adam", "pairs",
     {"lr": 1e-2, "betas": (1.0, 0.0)}, ValueError, "Invalid beta parameter at index 0: 1.0"),
    ("adam weight_decay should > 0", "Adam", "pairs", {"lr": 1e-2, "weight_decay": -1},
     ValueError, "Invalid weight_decay value: -1"),
]


@pytest.mark.parametrize("desc,name,how,kwargs,error,match", OPTIMIZER_ERROR_INPUTS,
                         ids=[case[0] for case in OPTIMIZER_ERROR_INPUTS])
def test_optim_error_inputs(desc, name, how, kwargs, error, match):
    value = np.ones((1, 1))
    pair = (value, np.zeros_like(value))
    params = {"one array": value, "duplicate": [pair, pair], "pairs": [pair]}[how]
    with pytest.raises(error, match=match):
        getattr(bn_lib, name)(params, **kwargs)


def test_rmsprop_alpha_above_one_is_refused():
    """alpha = 1.5 makes the average of squares negative and every parameter NaN at the
    first step; torch.optim.RMSprop checks only alpha >= 0, bn_lib also alpha <= 1."""
    with pytest.raises(ValueError, match="Invalid alpha value: 1.5"):
        bn_lib.RMSProp(bn_lib.Linear(2, 2).parameters(), alpha=1.5)

