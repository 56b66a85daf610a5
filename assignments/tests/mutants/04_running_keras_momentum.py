"""Keras's momentum convention in PyTorch's place: momentum weighs the old running value.
At momentum 0.5 the two conventions coincide; at 0.1 they do not."""

MUST_FAIL = "test_04_test_time.py::test_running_stats_follow_pytorch[momentum=0.1]"


def update_running_stats(running_mean, running_var, batch_mean, batch_var, m, momentum, step):
    keep = 1.0 / step if momentum is None else momentum
    unbiased_var = batch_var * m / (m - 1)
    return (keep * running_mean + (1 - keep) * batch_mean,
            keep * running_var + (1 - keep) * unbiased_var)
