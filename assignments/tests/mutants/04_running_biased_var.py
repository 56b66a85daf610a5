"""The running variance updated with the biased batch variance (no m / (m - 1))."""

MUST_FAIL = "test_04_test_time.py::test_running_stats_follow_pytorch[momentum=0.1]"


def update_running_stats(running_mean, running_var, batch_mean, batch_var, m, momentum, step):
    weight = 1.0 / step if momentum is None else momentum
    return ((1 - weight) * running_mean + weight * batch_mean,
            (1 - weight) * running_var + weight * batch_var)
