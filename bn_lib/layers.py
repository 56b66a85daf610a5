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

    im2col: the forward pass copies every k x k window of the padded input into one row
    of a (N * H_out * W_out, k * k * C) matrix, so that the convolution and both
    gradients are single BLAS matrix products. The matrix, k * k times the input's size,
    is kept for the weight gradient; the input gradient is the product of dy with the
    kernel, one row per output pixel, added back to the k * k input pixels it came from.
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

    def _kernel_matrix(self):
        """W as (O, k * k * C), its columns in the order of a window's row."""
        return self.W.transpose(0, 2, 3, 1).reshape(self.W.shape[0], -1)

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.W.shape[1]:
            raise ValueError(
                f"Conv2d expects input of shape (N, {self.W.shape[1]}, H, W), got {x.shape}"
            )
        p, s = self.padding, self.stride
        k = self.W.shape[2]
        self.x_shape = x.shape
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        # (N, C, H_out, W_out, k, k), a view into `padded`
        windows = sliding_window_view(padded, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        n, _, h_out, w_out = windows.shape[:4]
        # one row per output pixel: (N * H_out * W_out, k * k * C), a copy
        self.columns = windows.transpose(0, 2, 3, 4, 5, 1).reshape(n * h_out * w_out, -1)
        y = self.columns @ self._kernel_matrix().T  # (N * H_out * W_out, O)
        if self.has_bias:
            y += self.b
        return np.ascontiguousarray(y.reshape(n, h_out, w_out, -1).transpose(0, 3, 1, 2))

    def backward(self, dy):
        self._require_forward("x_shape")
        n, c, h, w = self.x_shape
        p, s = self.padding, self.stride
        o, _, k, _ = self.W.shape
        h_out, w_out = dy.shape[2], dy.shape[3]
        dy_rows = dy.transpose(0, 2, 3, 1).reshape(-1, o)  # (N * H_out * W_out, O)
        self.dW[...] = (dy_rows.T @ self.columns).reshape(o, k, k, c).transpose(0, 3, 1, 2)
        if self.has_bias:
            self.db[...] = dy_rows.sum(axis=0)
        # each output pixel's gradient through the kernel: (N, H_out, W_out, k, k, C)
        d_windows = (dy_rows @ self._kernel_matrix()).reshape(n, h_out, w_out, k, k, c)
        dpadded = np.zeros((n, h + 2 * p, w + 2 * p, c), dtype=d_windows.dtype)
        for i in range(k):
            for j in range(k):
                # output pixel (y, x) saw input pixel (s*y + i, s*x + j) through W[:, :, i, j]
                dpadded[:, i:i + s * h_out:s, j:j + s * w_out:s] += d_windows[:, :, :, i, j]
        return np.ascontiguousarray(dpadded[:, p:p + h, p:p + w].transpose(0, 3, 1, 2))


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

    def set_children(self, children):
        self.layers = list(children)

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for layer in reversed(self.layers):
            dy = layer.backward(dy)
        return dy
