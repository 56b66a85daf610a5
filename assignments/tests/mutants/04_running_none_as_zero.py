"""momentum=None treated as 0: the running statistics never move from their start."""

MUST_FAIL = "test_04_test_time.py::test_running_stats_follow_pytorch[momentum=None]"


def update_running_stats(running_mean, running_var, batch_mean, batch_var, m, momentum, step):
    weight = momentum or 0.0
    unbiased_var = batch_var * m / (m - 1)
    return ((1 - weight) * running_mean + weight * batch_mean,
            (1 - weight) * running_var + weight * unbiased_var)
