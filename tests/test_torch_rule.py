"""The torch rule: bn_lib needs only NumPy, and so do its NumPy-only tests.

Each check runs in a fresh Python in which ``import torch`` raises ImportError, as on a
machine without PyTorch: a ``sitecustomize.py`` on PYTHONPATH installs a meta-path finder
that refuses torch (and everything under it) with ModuleNotFoundError, as for a package
that is not installed, before anything else is imported.
"""

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import bn_lib

ROOT = Path(__file__).resolve().parent.parent

# bn_lib's tests that use no PyTorch; those that do start with
# ``torch = pytest.importorskip("torch")`` and most end in ``_torch.py``
NUMPY_ONLY_TESTS = [
    "test_adapt.py", "test_errors.py", "test_gradcheck.py", "test_layers.py",
    "test_numerics.py", "test_optim.py", "test_properties.py", "test_renorm.py",
    "test_residual.py", "test_sync_batchnorm.py", "test_training.py",
]

NO_TORCH = '''
import sys


class NoTorch:
    """Refuse torch, as an environment without PyTorch would."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (made unimportable by the "
                                      "test)", name=name)
        return None


sys.meta_path.insert(0, NoTorch())
'''


def run_without_torch(args, tmp_path, timeout):
    (tmp_path / "sitecustomize.py").write_text(NO_TORCH)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def test_torch_is_refused_in_the_subprocess(tmp_path):
    out = run_without_torch(["-c", "import torch"], tmp_path, timeout=60)
    assert out.returncode != 0 and "made unimportable by the test" in out.stderr


def test_every_module_of_bn_lib_imports_without_torch(tmp_path):
    modules = sorted(info.name for info in pkgutil.iter_modules(bn_lib.__path__))
    assert {"testing", "torch_distributed", "functional"} <= set(modules)
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module('bn_lib.' + name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = run_without_torch(["-c", code], tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]"]


def test_importing_bn_lib_imports_neither_torch_nor_its_torch_modules():
    """Even where torch is installed, ``import bn_lib`` leaves it alone."""
    code = ("import sys, bn_lib; print('torch' in sys.modules, "
            "'bn_lib.testing' in sys.modules, 'bn_lib.torch_distributed' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.split() == ["False", "False", "False"]


@pytest.mark.xdist_group("numpy-only-suite")
def test_numpy_only_tests_pass_without_torch(tmp_path):
    files = [f"tests/{name}" for name in NUMPY_ONLY_TESTS]
    assert all((ROOT / f).exists() for f in files)
    args = ["-m", "pytest", *files, "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    out = run_without_torch(args, tmp_path, timeout=900)
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary, summary


def test_tests_that_need_torch_skip_without_it(tmp_path):
    """Each file that compares with PyTorch says so, ``pytest.importorskip("torch")``, so
    a machine without torch skips it instead of failing to collect it."""
    files = sorted(f"tests/{path.name}" for path in (ROOT / "tests").glob("test_*_torch.py"))
    files += ["tests/test_testing.py", "tests/test_torch_distributed.py"]
    out = run_without_torch(["-m", "pytest", *files, "-q", "-p", "no:cacheprovider",
                             "-p", "no:xdist"], tmp_path, timeout=300)
    summary = out.stdout.strip().splitlines()[-1]
    # exit code 5: no test ran, because every file was skipped at import
    assert out.returncode == 5 and summary.startswith(f"{len(files)} skipped"), out.stdout
