"""What the graded tests share: inputs built with bn_lib and NumPy, PyTorch as the oracle,
and comparisons whose failure message says what differs and where.

The tests never feed one task's answer into another task: every input comes from here,
so a blank or wrong answer to one task costs points in that task only.

A test receives the learner's work through the ``learner`` fixture (provided by the
grader, ``bn_course/learner.py``): ``learner.call("name", *args)`` calls the learner's
function ``name`` on copies of the arguments and returns its result, turning a
``NotImplementedError`` (the blank's stub) into "not attempted";
``learner.call_with_arguments("name", *args)`` returns ``(result, args, kwargs)``, the
copies as they are after the call (to check that an answer leaves its input alone: the
test's own arrays never change). In the grade of record the function runs in another
process and sends back data only: arrays, numbers, strings, tuples, lists and dicts;
anything else arrives as a ``ForeignObject``, which every check here reports.

What a test may pass: arrays, numbers, strings, None, tuples, lists and dicts of them,
bn_lib objects (pickled into the learner's process), and functions (a function passed,
such as the ``f`` of a gradient check, runs in the grader's process: the learner's code
calls it with data). Not generators, nor objects of classes defined in a test file.

Each test file declares ``BN_LIB_NOT_ALLOWED``, the bn_lib objects its task asks the
learner to write (``"batch_norm_forward"``, or a method, ``"BatchNorm.backward"``): the
grader makes them raise in the learner's process, so an answer cannot call them. The list
holds for every task of the assignment (one process runs the whole notebook); it must not
name a class whose instances the assignment's tests pass.
"""

from __future__ import annotations

import numpy as np
import pytest

import bn_lib
from bn_course.wire import ForeignObject
from bn_lib import testing
from bn_lib.testing import EPS, TOLERANCES, scaled_error, to_numpy, to_torch

# float64 throughout, with the project's tolerance for it (bn_lib.testing.TOLERANCES): a
# right answer agrees with PyTorch to rounding, a wrong one misses by orders of magnitude.
TOL = TOLERANCES["float64"]["elementwise"]
FLOAT32_ERRORS = (1e-8, 1e-4)  # scaled errors typical of float32 rounding (eps 1.2e-7)


def task(name):
    """Mark a test as part of one graded task (the grader scores each task separately)."""
    return pytest.mark.task(name)


def batch(shape, seed=0, scale=5.0, shift=12.0):
    """Input of the form ``scale * randn + shift`` (non-zero mean, non-unit spread, as in
    CS231n's checks: an implementation that forgets to centre or scale cannot pass)."""
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal(shape) + shift


def affine(channels, seed=1):
    """A gamma and a beta away from 1 and 0, shape (C,) each."""
    rng = np.random.default_rng(seed)
    return 1.0 + 0.5 * rng.standard_normal(channels), 0.5 * rng.standard_normal(channels)


def upstream(shape, seed=2):
    """A random upstream gradient dL/dy."""
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- oracle


def torch_batch_norm(x, gamma, beta, dy=None, eps=EPS):
    """PyTorch's training-mode BN (``F.batch_norm``), with autograd when ``dy`` is given.

    Returns ``y`` or ``(y, dx, dgamma, dbeta)``, as float64 NumPy arrays.
    """
    import torch.nn.functional as F

    xt, gt, bt = (to_torch(np.asarray(a, dtype=np.float64), requires_grad=dy is not None)
                  for a in (x, gamma, beta))
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps)
    if dy is None:
        return to_numpy(yt)
    yt.backward(to_torch(np.asarray(dy, dtype=np.float64)))
    return to_numpy(yt), to_numpy(xt.grad), to_numpy(gt.grad), to_numpy(bt.grad)


def torch_batch_stats(x):
    """The batch mean and biased variance per channel (axis 1), by PyTorch."""
    xt = to_torch(np.asarray(x, dtype=np.float64))
    dims = [0] + list(range(2, xt.ndim))
    return to_numpy(xt.mean(dim=dims)), to_numpy(xt.var(dim=dims, unbiased=False))


def torch_bn_layer(x_ndim, channels, momentum=0.1, eps=EPS):
    """``nn.BatchNorm1d`` or ``nn.BatchNorm2d`` in float64, for input with ``x_ndim`` axes."""
    return testing.torch_batch_norm(x_ndim, channels, eps=eps, momentum=momentum)


def bn_cache(x, gamma, beta, eps=EPS):
    """bn_lib's forward pass: the x_hat and 1/sigma a backward pass starts from."""
    _, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps)
    return cache.x_hat, cache.inv_std


# ----------------------------------------------------------------------------- checks


def describe(value):
    """A value's kind in a learner's words: "a dict", "an object of type Foo"."""
    if isinstance(value, ForeignObject):
        return value.description
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def unpack(result, names, what):
    """Check that a function returned a tuple of len(names) and return it."""
    if result is None:
        raise AssertionError(f"{what} returned None; it must return {', '.join(names)}")
    if not isinstance(result, tuple) or len(result) != len(names):
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else describe(result)
        raise AssertionError(f"{what} must return a tuple ({', '.join(names)}), got {got}")
    return result


def _where(index, shape):
    return str(tuple(int(i) for i in np.unravel_index(index, shape))) if shape else "()"


def check_array(name, actual, shape, dtype=np.float64):
    """``actual`` as a NumPy array, or an AssertionError that says how it is not a real
    floating array of ``shape`` and ``dtype``: None, not an array (a list, an object),
    complex, integer or object values, another shape, another precision (float32 where
    float64 is expected), a NaN or an infinity."""
    dtype = np.dtype(dtype)
    want = f"a {dtype} array of shape {tuple(shape)}"
    if actual is None:
        raise AssertionError(f"{name} is None; expected {want}")
    if isinstance(actual, float) and not isinstance(actual, np.generic):
        actual = np.float64(actual)  # a Python float is a float64 scalar
    if not isinstance(actual, (np.ndarray, np.generic)):
        raise AssertionError(f"{name} is {describe(actual)}; expected {want} (return "
                             "NumPy arrays)")
    actual = np.asarray(actual)
    if actual.dtype.kind == "c":
        raise AssertionError(f"{name} is complex ({actual.dtype}); expected real values, "
                             f"{want}")
    if actual.dtype.kind != "f":
        raise AssertionError(f"{name} has dtype {actual.dtype}; expected {want}")
    if actual.shape != tuple(shape):
        raise AssertionError(f"{name} has shape {actual.shape}; expected {want}")
    if actual.dtype != dtype:
        raise AssertionError(f"{name} has the wrong precision: yours is {actual.dtype}, "
                             f"expected {dtype} (compute in {dtype}, as the inputs are)")
    if not np.all(np.isfinite(actual)):
        index = int(np.argmax(~np.isfinite(actual).ravel()))
        raise AssertionError(f"{name} has a non-finite value at {_where(index, actual.shape)}")
    return actual


def check_number(name, actual):
    """``actual`` as a float, or an AssertionError unless it is one real number."""
    if isinstance(actual, (bool, np.bool_)) or not isinstance(
            actual, (int, float, np.integer, np.floating)):
        shape = f" of shape {np.shape(actual)}" if isinstance(actual, np.ndarray) else ""
        raise AssertionError(f"{name} must be one real number, got {describe(actual)}{shape}")
    return float(actual)


def assert_close(name, actual, expected, against, tol=None):
    """Assert ``actual`` equals ``expected`` by the project's criterion,
    ``bn_lib.testing.scaled_error(actual, expected) <= tol``, that is
    ``max|actual - expected| <= tol * max(1, max|expected|)``, with float64's tolerance
    (``bn_lib.testing.TOLERANCES``) unless ``tol`` is given. A learner-facing wrapper of
    ``bn_lib.testing.assert_close``'s check; ``actual`` must first pass
    :func:`check_array` (a real array of ``expected``'s shape, in float64).

    The message names the quantity, the reference, the largest error and where it is,
    e.g. "dx differs from PyTorch autograd: largest error 3.2e-01 at (3, 1)", with ten
    digits of the two values; with the default tolerance, an error of the size float32's
    rounding leaves adds a question: did part of the computation run in float32?
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = check_array(name, actual, expected.shape)
    # float32 keeps about 7 digits: a float64 result with part of its computation in float32
    # (an input cast, then upcast again) misses by about FLOAT32_ERRORS; not said where the
    # test sets its own tolerance (finite differences, exact checks): other causes there
    suspect_float32 = tol is None
    tol = TOL if tol is None else tol
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    scaled = scaled_error(actual, expected)
    if scaled > tol:
        error = np.abs(actual - expected)
        index = int(np.argmax(error))
        hint = ("; an error at float32's precision: did part of your computation run in "
                "float32?") if suspect_float32 and \
            FLOAT32_ERRORS[0] <= scaled <= FLOAT32_ERRORS[1] else ""
        raise AssertionError(
            f"{name} differs from {against}: largest error {error.flat[index]:.2e} at "
            f"{_where(index, error.shape)} (yours {actual.flat[index]:.10g}, expected "
            f"{expected.flat[index]:.10g}; tolerance {tol * scale:.1e}){hint}"
        )
