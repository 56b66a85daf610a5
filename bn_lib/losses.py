"""Softmax cross-entropy, the loss of every classifier in the book."""

from __future__ import annotations

import numpy as np


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)  # avoids overflow in exp
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)``.

    Inputs: ``logits`` of shape (N, K), ``labels`` of shape (N,) with values in 0..K-1.
    Returns ``(loss, dlogits)``: a float and an (N, K) array,
    ``dlogits = (softmax(logits) - one_hot(labels)) / N``, the gradient of the mean loss.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, classes), got {logits.shape}")
    if labels.shape != (logits.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be {logits.shape[0]} integers, got shape {labels.shape} "
            f"and dtype {labels.dtype}"
        )
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {logits.shape[1]}), got {labels.min()}..{labels.max()}"
        )
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), labels].mean()
    dlogits = np.exp(log_probs)
    dlogits[np.arange(n), labels] -= 1.0
    return float(loss), dlogits / n


def accuracy(logits, labels):
    return float((np.argmax(logits, axis=1) == labels).mean())
