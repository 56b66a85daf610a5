"""Layers needed to train real networks from scratch: Linear, Conv2d, activations,
Dropout, Flatten and Sequential. Each has ``forward`` and ``backward``; shapes follow
PyTorch."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .module import Module


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class Linear(Module):
    """y = x @ W.T + b: (N, in_features) -> (N, out_features), with W of shape
    (out_features, in_features) and b of shape (out_features,), as in PyTorch.

    ``init_scale=None`` draws W with He (Kaiming) scaling sqrt(2 / in_features); a number
    gives W ~ init_scale * N(0, 1), the knob of the initialization sweeps in chapter 06.
    ``bias=False`` is the usual choice before BatchNorm, whose beta makes b redundant
    (chapter 02).
    """

    param_names = ("W", "b")

    def __init__(self, in_features, out_features, bias=True, init_scale=None, rng=0):
        super().__init__()
        scale = np.sqrt(2.0 / in_features) if init_scale is None else init_scale
        self.W = scale * _rng(rng).standard_normal((out_features, in_features))
        self.b = np.zeros(out_features)
        if not bias:
            self.param_names = ("W",)
        self.init_grads()
        self.x = None

    @property
    def has_bias(self):
        return "b" in self.param_names

    def __repr__(self):
        out_features, in_features = self.W.shape
        return f"Linear({in_features}, {out_features}, bias={self.has_bias})"

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.W.shape[1]:
            raise ValueError(
                f"Linear expects input of shape (N, {self.W.shape[1]}), got {x.shape}"
            )
        self.x = x
        y = x @ self.W.T
        return y + self.b if self.has_bias else y

    def backward(self, dy):
        self._require_forward("x")
        self.dW[...] = dy.T @ self.x
        if self.has_bias:
            self.db[...] = dy.sum(axis=0)
        return dy @ self.W


class Conv2d(Module):
    """2-D convolution (cross-correlation, as in PyTorch): (N, C, H, W) ->
    (N, O, H_out, W_out) with H_out = (H + 2 * padding - k) // stride + 1, W of shape
    (O, C, k, k) and b of shape (O,).

    The forward pass views the padded input as sliding windows (no copy) and contracts
    them with the kernel in one ``tensordot``; the backward pass scatters the gradient
    back one kernel offset at a time.
    """

    param_names = ("W", "b")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, init_scale=None, rng=0):
        super().__init__()
        k = kernel_size
        fan_in = in_channels * k * k
        scale = np.sqrt(2.0 / fan_in) if init_scale is None else init_scale
        self.W = scale * _rng(rng).standard_normal((out_channels, in_channels, k, k))
        self.b = np.zeros(out_channels)
        if not bias:
            self.param_names = ("W",)
        self.init_grads()
        self.stride, self.padding = stride, padding
        self.x_shape = None

    @property
    def has_bias(self):
        return "b" in self.param_names

    def __repr__(self):
        o, c, k, _ = self.W.shape
        return (f"Conv2d({c}, {o}, kernel_size={k}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.has_bias})")

    def _windows(self, x):
        p, s = self.padding, self.stride
        k = self.W.shape[2]
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        # (N, C, H_out, W_out, k, k), a view into `padded`
        return sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::s, ::s]

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.W.shape[1]:
            raise ValueError(
                f"Conv2d expects input of shape (N, {self.W.shape[1]}, H, W), got {x.shape}"
            )
        self.x_shape = x.shape
        self.windows = self._windows(x)
        y = np.tensordot(self.windows, self.W, axes=([1, 4, 5], [1, 2, 3]))
        y = y.transpose(0, 3, 1, 2)  # (N, H_out, W_out, O) -> (N, O, H_out, W_out)
        if self.has_bias:
            y = y + self.b.reshape(1, -1, 1, 1)
        return np.ascontiguousarray(y)

    def backward(self, dy):
        self._require_forward("x_shape")
        n, c, h, w = self.x_shape
        p, s = self.padding, self.stride
        k = self.W.shape[2]
        h_out, w_out = dy.shape[2], dy.shape[3]
        self.dW[...] = np.tensordot(dy, self.windows, axes=([0, 2, 3], [0, 2, 3]))
        if self.has_bias:
            self.db[...] = dy.sum(axis=(0, 2, 3))
        dpadded = np.zeros((n, c, h + 2 * p, w + 2 * p), dtype=dy.dtype)
        for i in range(k):
            for j in range(k):
                # every output pixel saw input pixel (s*y + i, s*x + j) through W[:, :, i, j]
                dpadded[:, :, i:i + s * h_out:s, j:j + s * w_out:s] += np.einsum(
                    "nohw,oc->nchw", dy, self.W[:, :, i, j]
                )
        return dpadded[:, :, p:p + h, p:p + w] if p else dpadded


class ReLU(Module):
    def __repr__(self):
        return "ReLU()"

    def forward(self, x):
        self.mask = x > 0
        return np.maximum(x, 0)  # propagates NaN, as torch.relu does (NaN > 0 is False)

    def backward(self, dy):
        self._require_forward("mask")
        return dy * self.mask


class Sigmoid(Module):
    def __repr__(self):
        return "Sigmoid()"

    def forward(self, x):
        # split by sign so exp never overflows
        e = np.exp(-np.abs(x))
        self.y = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return self.y

    def backward(self, dy):
        self._require_forward("y")
        return dy * self.y * (1.0 - self.y)


class Tanh(Module):
    def __repr__(self):
        return "Tanh()"

    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, dy):
        self._require_forward("y")
        return dy * (1.0 - self.y**2)


class Dropout(Module):
    """Inverted dropout: in training, zero each unit with probability p and scale the
    survivors by 1/(1-p), so eval mode is the identity. p = 1 zeroes every unit."""

    def __init__(self, p=0.5, rng=0):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.rng = _rng(rng)
        self.mask = None

    def __repr__(self):
        return f"Dropout(p={self.p})"

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self.mask = np.ones((1,) * np.ndim(x))
            return x
        keep = self.rng.random(np.shape(x)) >= self.p
        # p = 1 drops everything (PyTorch returns zeros); avoid the 0 * inf = NaN of 1/(1-p)
        self.mask = keep / (1.0 - self.p) if self.p < 1.0 else np.zeros(np.shape(x))
        return x * self.mask

    def backward(self, dy):
        self._require_forward("mask")
        return dy * self.mask


class Flatten(Module):
    def __repr__(self):
        return "Flatten()"

    def forward(self, x):
        self.shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        self._require_forward("shape")
        return dy.reshape(self.shape)


class Sequential(Module):
    """Layers applied in order; ``backward`` runs them in reverse."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def children(self):
        return self.layers

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy
