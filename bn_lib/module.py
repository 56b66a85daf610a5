"""The ``Module`` base class: parameters, their gradients, and train/eval mode.

Names copy PyTorch's (``parameters``, ``train``, ``eval``) so what a reader learns here
carries over. Unlike PyTorch there is no autograd: every module implements
``backward(dy)`` itself, returns the gradient for its input, and stores the gradients of
its parameters beside them: parameter ``w`` has gradient ``dw``, an array of the same
shape, overwritten (not accumulated) by each ``backward``, so there is no ``zero_grad``.
"""

from __future__ import annotations

import numpy as np


class Module:
    """Base class. Subclasses list their parameter names in ``param_names``."""

    param_names: tuple[str, ...] = ()

    def __init__(self):
        self.training = True

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def children(self):
        """Sub-modules (a ``Sequential`` returns its layers)."""
        return []

    def set_children(self, children):
        """Put ``children`` (a list as long as ``children()``) in place of the sub-modules."""
        if list(children) != list(self.children()):
            raise NotImplementedError(f"{type(self).__name__} cannot replace its sub-modules")

    def modules(self):
        """This module and every module inside it, depth first (torch's ``modules()``)."""
        yield self
        for child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix=""):
        """Yield ``(name, value, grad)`` for this module and its children."""
        for name in self.param_names:
            yield prefix + name, getattr(self, name), getattr(self, "d" + name)
        for i, child in enumerate(self.children()):
            yield from child.named_parameters(f"{prefix}{i}.")

    def parameters(self):
        """List of ``(value, grad)`` array pairs; optimizers update ``value`` in place."""
        return [(value, grad) for _, value, grad in self.named_parameters()]

    def train(self, mode=True):
        self.training = mode
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def num_parameters(self):
        return sum(value.size for value, _ in self.parameters())

    def init_grads(self):
        """Create a zero gradient ``d<name>`` beside each parameter ``<name>``."""
        for name in self.param_names:
            setattr(self, "d" + name, np.zeros_like(getattr(self, name)))

    def _require_forward(self, attr):
        if getattr(self, attr, None) is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward: "
                "run forward on a batch first"
            )


def replace_modules(module, swap):
    """Walk ``module`` depth first; wherever ``swap(m)`` returns a module, that module takes
    m's place (and the walk does not enter it). Returns the root, itself replaced when
    ``swap(module)`` is not None. The one walk behind ``freeze_batchnorm`` (chapter 09)
    and ``SyncBatchNorm.convert_sync_batchnorm`` (chapter 10)."""
    replacement = swap(module)
    if replacement is not None:
        return replacement
    module.set_children([replace_modules(child, swap) for child in module.children()])
    return module
