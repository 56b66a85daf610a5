"""relative_error that returns the absolute error max |a - b|: no denominator."""

import numpy as np

MUST_FAIL = "test_03_backward.py::test_relative_error_values"


def relative_error(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
