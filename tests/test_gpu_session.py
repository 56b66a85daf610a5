"""tools/gpu_session.sh, the one run on a CUDA machine, rehearsed on the CPU.

The GPU machine has only torch, triton, numpy, pytest, pytest-xdist, hypothesis,
scikit-learn and matplotlib, and nothing can be installed there. Its dry run
(``DEVICE=cpu``) runs here with every other package hidden by
``tools/gpu_sitecustomize/sitecustomize.py``, so that the script cannot come to need one.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_session.sh"
HIDE = ROOT / "tools" / "gpu_sitecustomize"


def gpu_machine_env(**extra):
    """The environment of a Python that sees only the GPU machine's packages."""
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(HIDE), **extra}
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


def needs_the_gpu_machines_packages():
    pytest.importorskip("torch")
    pytest.importorskip("triton", reason="the session's last step runs bn_triton's "
                        "kernels: `make test` installs requirements-triton.txt")


def python(code, env):
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_packages_the_gpu_machine_lacks_are_hidden():
    needs_the_gpu_machines_packages()
    env = gpu_machine_env(PYTHONPATH=f"{HIDE}{os.pathsep}{ROOT}")
    refused = python("import nbformat", env)
    assert refused.returncode != 0 and "gpu_sitecustomize" in refused.stderr
    unlisted = python("import importlib.metadata as m; m.version('nbval')", env)
    assert "PackageNotFoundError" in unlisted.stderr  # so pytest loads no nbval plugin
    kept = python("import torch, triton, numpy, pytest, xdist, hypothesis, sklearn, "
                  "matplotlib, bn_lib, bn_triton", env)
    assert kept.returncode == 0, kept.stderr


def test_dry_run_passes_with_only_the_gpu_machines_packages(tmp_path):
    needs_the_gpu_machines_packages()
    reports = {p.name: p.read_bytes() for p in (ROOT / "reports").iterdir()}
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True,
                         env=gpu_machine_env(DEVICE="cpu", OUT=str(out)), timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    for step in ("pytest -m gpu", "verify", "bench_triton"):
        assert f"=== {step}: exit status 0" in run.stdout
    assert {p.name for p in out.iterdir()} == {
        "session.log", "verification_cpu.json", "verification_cpu.md", "triton_cpu.json",
        "triton_cpu.md"}
    verification = json.loads((out / "verification_cpu.json").read_text())
    assert verification["passed"] and verification["bandwidth"]["rows"]
    triton = json.loads((out / "triton_cpu.json").read_text())
    assert triton["complete"] and all(r["correct"] for r in triton["rows"])
    # the recorded reports are the real runs': a dry run writes only into OUT
    assert {p.name: p.read_bytes() for p in (ROOT / "reports").iterdir()} == reports


def test_every_file_with_gpu_tests_is_in_the_session():
    listed = subprocess.run(["bash", str(SCRIPT), "--list-tests"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-m", "gpu", "--collect-only", "-q",
         "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stdout[-3000:]
    with_gpu_tests = {line.split("::")[0] for line in collected.stdout.splitlines()
                      if "::" in line}
    assert with_gpu_tests, "no test is marked gpu"
    assert with_gpu_tests <= set(listed), f"not in the session: {with_gpu_tests - set(listed)}"


def test_the_session_fits_twice_in_15_minutes_of_gpu_time():
    """Budget plus 5 s to kill each of the three steps, under 7 minutes."""
    script = SCRIPT.read_text()
    cuda = script[script.index("  cuda)"):script.index("  cpu)")]
    budget = int(re.search(r"BUDGET_S=\$\{BUDGET_S:-(\d+)\}", cuda)[1])
    assert budget + 3 * 5 <= 7 * 60
    pytest_limit, verify_limit = map(int, re.search(r"limits=\((\d+) (\d+)\)", cuda).groups())
    assert pytest_limit + verify_limit < budget  # the benchmark keeps some time
