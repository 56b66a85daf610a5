"""Synchronized Batch Normalization (bn_lib.distributed, chapter 10).

The specification: W processes running ``SyncBatchNorm`` on their slices of a global batch,
with ``torch.distributed`` (gloo) moving the statistics, compute what ``torch.nn.BatchNorm``
computes on the concatenated batch: y and dx slice by slice, dgamma and dbeta as the sum of
the processes' contributions, the same running statistics on every process, and eval mode.
One launch of 2 processes runs the whole matrix (equal, unequal and empty slices; (N, C)
and (N, C, H, W); 3 steps with momentum 0.1 and None; float64 at 1e-10), the known mistakes
(each must be caught), float32 with a large mean, PyTorch's form of the forward statistics
(an all-gather and Chan's merge) against bn_lib's two rounds, and a probe of
``torch.nn.SyncBatchNorm`` on the CPU. Two more launches check that a failing or missing
rank ends a launch with an error instead of a hang. The NumPy-only parts (a world of one,
threads, Chan's merge, bad input) are tested without torch.distributed.
"""

import time

import numpy as np
import pytest

from bn_lib import (
    SyncBatchNorm,
    batch_norm_backward,
    global_moments,
    merge_moments,
    sync_batch_norm_forward,
    torch_distributed,
)
from bn_lib.testing import TOLERANCES, scaled_error, to_numpy, to_torch, torch_batch_norm

torch = pytest.importorskip("torch")

# every test that reads the launch runs on the same xdist worker, so the launch runs once
pytestmark = pytest.mark.xdist_group("gloo")

LAUNCH_TIMEOUT_S = 120  # the launch takes a few seconds; the timeout only stops a hang
TOL64 = TOLERANCES["float64"]["elementwise"]  # 1e-10, as for every float64 check
STEPS = 3
# rows of the global batch held by rank 0 and rank 1
SPLITS = {"equal": (5, 5), "unequal": (2, 7), "empty": (0, 9)}
FEATURE_SHAPES = {"(N, C)": (3,), "(N, C, H, W)": (3, 4, 5)}
MOMENTA = {"momentum 0.1": 0.1, "momentum None": None}
CASES = [(split, shape, momentum) for split in SPLITS for shape in FEATURE_SHAPES
         for momentum in MOMENTA]
# float32 with a large mean: the bound on the relative error of the global variance
# (the two-round form centres on the global mean before squaring, chapter 10)
FLOAT32_MEAN, FLOAT32_VAR_BOUND = 1e4, 1e-5


def make_case(split, shape, momentum, seed):
    """Global inputs of one case: STEPS training batches, their dy, and an eval batch."""
    rng = np.random.default_rng(seed)
    n, features = sum(SPLITS[split]), FEATURE_SHAPES[shape]
    c = features[0]
    return {
        "split": SPLITS[split], "momentum": MOMENTA[momentum],
        "gamma": rng.uniform(0.5, 2.0, c), "beta": rng.standard_normal(c),
        "xs": [5 * rng.standard_normal((n, *features)) + 12 for _ in range(STEPS)],
        "dys": [rng.standard_normal((n, *features)) for _ in range(STEPS)],
        "x_eval": 5 * rng.standard_normal((n, *features)) + 12,
    }


def _slice(a, split, rank):
    start = sum(split[:rank])
    return a[start:start + split[rank]]


def run_sync_case(rank, case, allreduce_sum):
    """One process's side of a case: SyncBatchNorm on its slices, every output kept."""
    split = case["split"]
    layer = SyncBatchNorm(len(case["gamma"]), momentum=case["momentum"],
                          allreduce_sum=allreduce_sum)
    layer.gamma[...], layer.beta[...] = case["gamma"], case["beta"]
    out = {"y": [], "dx": [], "dgamma": [], "dbeta": []}
    for x, dy in zip(case["xs"], case["dys"]):
        out["y"].append(layer.forward(_slice(x, split, rank)))
        out["dx"].append(layer.backward(_slice(dy, split, rank)))
        out["dgamma"].append(layer.dgamma.copy())
        out["dbeta"].append(layer.dbeta.copy())
    out["running_mean"], out["running_var"] = layer.running_mean, layer.running_var
    out["num_batches_tracked"] = layer.num_batches_tracked
    layer.eval()
    out["y_eval"] = layer.forward(_slice(case["x_eval"], split, rank))
    return out


def run_mistakes(rank, world_size, case, allreduce_sum):
    """The known mistakes, each on the unequal (N, C) case's first step."""
    split, x, dy = case["split"], case["xs"][0], case["dys"][0]
    x_r, dy_r = _slice(x, split, rank), _slice(dy, split, rank)
    gamma, beta = case["gamma"], case["beta"]
    out = {}

    no_sync = SyncBatchNorm(len(gamma))  # a world of one: plain BN on each process
    no_sync.gamma[...], no_sync.beta[...] = gamma, beta
    out["no sync: y"] = no_sync.forward(x_r)

    y, cache = sync_batch_norm_forward(x_r, gamma, beta, allreduce_sum)
    out["synced forward, local backward: dx"] = batch_norm_backward(dy_r, cache)[0]

    # average the per-process means with equal weights instead of weighting by m_r
    mean = allreduce_sum(x_r.mean(axis=0)) / world_size
    count = allreduce_sum(np.array([float(len(x_r))]))[0]
    var = allreduce_sum(((x_r - mean) ** 2).sum(axis=0)) / count
    out["equal-weight means: y"] = gamma * (x_r - mean) / np.sqrt(var + 1e-5) + beta

    # Bessel's correction with the local count m_r instead of the global M (momentum 0.1)
    m_r = len(x_r)
    out["Bessel with the local count: running_var"] = 0.9 + 0.1 * cache.var * m_r / (m_r - 1)
    return out


def run_float32(rank, case, allreduce_sum):
    split = case["split"]
    layer = SyncBatchNorm(len(case["gamma"]), allreduce_sum=allreduce_sum)
    y = layer.forward(_slice(case["x"], split, rank))
    return {"y": y, "var": layer.cache.var, "running_var": layer.running_var.copy()}


def run_chan_merge(rank, case):
    """PyTorch's form on real processes: all-gather (count, mean, M2), Chan's merge."""
    x_r = _slice(case["xs"][0], case["split"], rank)
    mean_r = x_r.mean(axis=0) if len(x_r) else np.zeros(x_r.shape[1])
    row = np.concatenate([[len(x_r)], mean_r, ((x_r - mean_r) ** 2).sum(axis=0)])
    table = torch_distributed.all_gather(row)  # (W, 2C + 1)
    c = x_r.shape[1]
    count, mean, m2 = merge_moments(table[:, 0], table[:, 1:1 + c], table[:, 1 + c:])
    mean_ref, var_ref, count_ref, _ = global_moments(x_r, torch_distributed.allreduce_sum)
    return {"count": (count, count_ref), "mean": (mean, mean_ref), "var": (m2 / count, var_ref)}


def probe_torch_sync_batchnorm():
    """What torch.nn.SyncBatchNorm does with CPU tensors in a real process group."""
    layer = torch.nn.SyncBatchNorm(3).train()
    try:
        layer(torch.randn(4, 3))
    except Exception as error:  # the refusal is the expected outcome, recorded as text
        return f"{type(error).__name__}: {error}"
    return None


def worker(rank, world_size, cases, mistake_case, float32_case):
    allreduce = torch_distributed.allreduce_sum
    return {
        "cases": {key: run_sync_case(rank, case, allreduce) for key, case in cases.items()},
        "mistakes": run_mistakes(rank, world_size, mistake_case, allreduce),
        "float32": run_float32(rank, float32_case, allreduce),
        "chan": run_chan_merge(rank, mistake_case),
        "torch SyncBatchNorm on CPU": probe_torch_sync_batchnorm(),
        "backend": torch.distributed.get_backend(),
    }


def float32_case():
    rng = np.random.default_rng(1)
    x = (FLOAT32_MEAN + rng.standard_normal((64, 4))).astype(np.float32)
    return {"split": (23, 41), "gamma": np.ones(4), "x": x}


@pytest.fixture(scope="module")
def launched():
    cases = {key: make_case(*key, seed=i) for i, key in enumerate(CASES)}
    mistake_case = make_case("unequal", "(N, C)", "momentum 0.1", seed=100)
    results = torch_distributed.launch(worker, 2, cases, mistake_case, float32_case(),
                                       backend="gloo", timeout_s=LAUNCH_TIMEOUT_S)
    return {"cases": cases, "mistake_case": mistake_case, "results": results}


def torch_reference(case):
    """torch.nn.BatchNorm on the concatenated global batch: the oracle."""
    c, ndim = len(case["gamma"]), case["xs"][0].ndim
    layer = torch_batch_norm(ndim, c, momentum=case["momentum"])
    with torch.no_grad():
        layer.weight.copy_(to_torch(case["gamma"]))
        layer.bias.copy_(to_torch(case["beta"]))
    ref = {"y": [], "dx": [], "dgamma": [], "dbeta": []}
    for x, dy in zip(case["xs"], case["dys"]):
        xt = to_torch(x, requires_grad=True)
        layer.weight.grad = layer.bias.grad = None
        y = layer(xt)
        y.backward(to_torch(dy))
        ref["y"].append(to_numpy(y))
        ref["dx"].append(to_numpy(xt.grad))
        ref["dgamma"].append(to_numpy(layer.weight.grad))
        ref["dbeta"].append(to_numpy(layer.bias.grad))
    ref["running_mean"] = to_numpy(layer.running_mean)
    ref["running_var"] = to_numpy(layer.running_var)
    layer.eval()
    with torch.no_grad():
        ref["y_eval"] = to_numpy(layer(to_torch(case["x_eval"])))
    return ref


def gathered(outs, key, step=None):
    """Rank outputs put back together: slices concatenated, gradient contributions summed."""
    parts = [o[key] if step is None else o[key][step] for o in outs]
    if key in ("dgamma", "dbeta"):
        return np.sum(parts, axis=0)
    return np.concatenate(parts)


@pytest.mark.parametrize("case_key", CASES, ids=[" ".join(k) for k in CASES])
def test_sync_batchnorm_matches_torch_on_the_global_batch(launched, case_key):
    case = launched["cases"][case_key]
    outs = [r["cases"][case_key] for r in launched["results"]]
    ref = torch_reference(case)
    for step in range(STEPS):
        for key in ("y", "dx", "dgamma", "dbeta"):
            err = scaled_error(gathered(outs, key, step), ref[key][step])
            assert err < TOL64, f"step {step} {key}: error {err:.2e}"
    for key in ("running_mean", "running_var"):
        for rank, out in enumerate(outs):  # every process keeps the same statistics
            err = scaled_error(out[key], ref[key])
            assert err < TOL64, f"rank {rank} {key}: error {err:.2e}"
    assert [o["num_batches_tracked"] for o in outs] == [STEPS, STEPS]
    err = scaled_error(gathered(outs, "y_eval"), ref["y_eval"])
    assert err < TOL64, f"eval y: error {err:.2e}"
    # the outputs keep each process's own shape, including an empty slice
    assert [o["y"][0].shape[0] for o in outs] == list(case["split"])


MISTAKES = ["no sync: y", "synced forward, local backward: dx", "equal-weight means: y",
            "Bessel with the local count: running_var"]


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_known_mistake_is_caught(launched, mistake):
    case = launched["mistake_case"]
    ref = torch_reference({**case, "xs": case["xs"][:1], "dys": case["dys"][:1]})
    key = mistake.split(": ")[1]
    theirs = ref[key][0] if key in ("y", "dx") else ref[key]
    outs = [r["mistakes"][mistake] for r in launched["results"]]
    ours = outs[0] if key == "running_var" else np.concatenate(outs)
    assert scaled_error(ours, theirs) > 1e-3  # ten million times the float64 tolerance


def test_float32_with_a_large_mean_keeps_the_variance(launched):
    case = float32_case()
    outs = [r["float32"] for r in launched["results"]]
    x64 = case["x"].astype(np.float64)
    var64 = x64.var(axis=0)
    var_err = np.abs(outs[0]["var"] - var64) / var64
    assert var_err.max() < FLOAT32_VAR_BOUND, var_err
    y = gathered(outs, "y")
    assert y.dtype == np.float32
    # y inherits the float32 rounding of the mean it subtracts: half a unit in the last
    # place of 1e4 (about 5e-4) over a standard deviation of about 1
    y64 = (x64 - x64.mean(axis=0)) / np.sqrt(var64 + 1e-5)
    half_ulp = np.spacing(np.float32(FLOAT32_MEAN)) / 2
    assert np.abs(y - y64).max() < 2 * half_ulp / np.sqrt(var64.min())


def test_all_gather_and_chans_merge_agree_with_the_two_rounds(launched):
    for rank, result in enumerate(launched["results"]):
        for key, (merged, two_rounds) in result["chan"].items():
            np.testing.assert_allclose(merged, two_rounds, rtol=1e-12, err_msg=f"rank {rank} {key}")


def test_torch_sync_batchnorm_still_refuses_cpu_tensors(launched):
    # Chapter 10 compares its synchronized BN with BN on the concatenated batch because
    # PyTorch's SyncBatchNorm refuses to synchronize CPU tensors: in training mode inside a
    # process group it raises (in eval mode, or outside a group, it runs as plain BN). If this
    # fails, PyTorch has changed: compare against torch.nn.SyncBatchNorm directly here and
    # update chapter 10's text.
    assert launched["results"][0]["backend"] == "gloo"
    message = launched["results"][0]["torch SyncBatchNorm on CPU"]
    assert message is not None, (
        "torch.nn.SyncBatchNorm now synchronizes CPU tensors (training mode, in a process group)")
    assert "GPU" in message, message


def _fails_on_rank_1(rank, world_size):
    if rank == 1:
        raise ValueError("rank 1 gives up")
    torch_distributed.allreduce_sum(np.ones(3))  # rank 1 never joins
    return rank


def test_a_failing_worker_fails_the_launch_with_its_traceback():
    with pytest.raises(torch_distributed.WorkerError, match="rank 1 gives up") as info:
        torch_distributed.launch(_fails_on_rank_1, 2, timeout_s=30)
    assert "Traceback" in str(info.value) and "_fails_on_rank_1" in str(info.value)


def _rank_1_never_arrives(rank, world_size):
    if rank == 1:
        time.sleep(600)  # alive, but never joins the collective
    torch_distributed.allreduce_sum(np.ones(3))


def test_a_collective_that_one_rank_never_joins_ends_in_a_timeout_not_a_hang():
    with pytest.raises(torch_distributed.WorkerError):
        torch_distributed.launch(_rank_1_never_arrives, 2, timeout_s=5)
