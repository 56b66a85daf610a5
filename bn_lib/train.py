"""A small training loop that returns a history, used by every experiment chapter."""

from __future__ import annotations

import numpy as np

from .data import batches
from .losses import accuracy, softmax_cross_entropy


def evaluate(model, x, y, batch_size=512):
    """Loss and accuracy of ``model`` on (x, y) in eval mode; restores the mode after."""
    was_training = model.training
    model.eval()
    logits = np.concatenate([model.forward(x[i:i + batch_size])
                             for i in range(0, len(x), batch_size)])
    model.train(was_training)
    loss, _ = softmax_cross_entropy(logits, y)
    return loss, accuracy(logits, y)


def train_step(model, optimizer, xb, yb):
    """One step of mini-batch training; returns the batch's loss and accuracy."""
    model.train()
    logits = model.forward(xb)
    loss, dlogits = softmax_cross_entropy(logits, yb)
    model.backward(dlogits)
    optimizer.step()
    return loss, accuracy(logits, yb)


def fit(model, optimizer, data, epochs=1, batch_size=64, seed=0, eval_every=None,
        callback=None):
    """Train ``model`` on ``data`` (a :class:`bn_lib.data.Split`) with mini-batches.

    Returns a history dict of lists: ``step``, ``loss`` and ``acc`` per training step
    (on the batch, in training mode), and ``eval_step``, ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc`` every ``eval_every`` steps (default: once per epoch), in
    eval mode. ``callback(step, model)``, if given, runs after every step. A loss that
    becomes NaN or infinite ends training early and is recorded as such: a diverged run
    is a result, not an error (``history["diverged"]`` is True, and a last evaluation
    with NaN losses and accuracy 0 closes the eval lists).
    """
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(data.x_train) // batch_size
    eval_every = eval_every or steps_per_epoch
    history = {k: [] for k in ("step", "loss", "acc", "eval_step", "train_loss",
                               "train_acc", "val_loss", "val_acc")}
    step = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for _ in range(epochs):
            for xb, yb in batches(data.x_train, data.y_train, batch_size, rng):
                loss, acc = train_step(model, optimizer, xb, yb)
                step += 1
                history["step"].append(step)
                history["loss"].append(loss)
                history["acc"].append(acc)
                if callback is not None:
                    callback(step, model)
                if not np.isfinite(loss):
                    _record_divergence(history, step)
                    return history
                if step % eval_every == 0:
                    _record_eval(history, step, model, data)
    if not history["eval_step"] or history["eval_step"][-1] != step:
        _record_eval(history, step, model, data)
    history["diverged"] = False
    return history


def _record_divergence(history, step):
    history["diverged"] = True
    history["eval_step"].append(step)
    for key in ("train_loss", "val_loss"):
        history[key].append(float("nan"))
    for key in ("train_acc", "val_acc"):
        history[key].append(0.0)


def _record_eval(history, step, model, data):
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
    val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
    history["eval_step"].append(step)
    history["train_loss"].append(train_loss)
    history["train_acc"].append(train_acc)
    history["val_loss"].append(val_loss)
    history["val_acc"].append(val_acc)
