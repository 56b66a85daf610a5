"""The digits data set: 1,797 real 8x8 handwritten digits that ship with scikit-learn,
so every experiment in the book runs offline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Split:
    """Train, validation and test arrays. ``x_*`` are float, ``y_*`` int64 labels 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __repr__(self):
        return (f"Split(train={self.x_train.shape}, val={self.x_val.shape}, "
                f"test={self.x_test.shape})")


def load_digits_split(seed=0, val_fraction=0.2, test_fraction=0.2, images=False,
                      standardize=True, dtype=np.float64):
    """Load scikit-learn's digits and split them with a seeded shuffle.

    ``standardize`` rescales every pixel with the training set's mean and standard
    deviation (pixels that are constant in the training set become 0), the input
    normalization of chapter 01. ``images=True`` returns (N, 1, 8, 8) for Conv2d,
    otherwise (N, 64).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float64)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    n_val = int(round(val_fraction * len(x)))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    if standardize:
        mean = x[train].mean(axis=0)
        std = x[train].std(axis=0)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    x = x.astype(dtype)
    if images:
        x = x.reshape(-1, 1, 8, 8)
    return Split(x[train], y[train], x[val], y[val], x[test], y[test])


def batches(x, y, batch_size, rng=None, shuffle=True, drop_last=True):
    """Yield mini-batches ``(x_batch, y_batch)`` covering the data once (one epoch).

    ``drop_last=True`` (the default) skips a short final batch: a batch of one would make
    a BatchNorm layer fail in training mode, and a very small one is noisy.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n = len(x)
    if shuffle:
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        order = rng.permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]
