"""Binder's configuration (binder/) builds the environment the chapters are tested in."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def requirement_lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_binder_installs_the_pinned_requirements_with_cpu_torch():
    lines = requirement_lines(BINDER / "requirements.txt")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    # pip reads a nested -r relative to the file that names it
    nested = [line.split(maxsplit=1)[1] for line in lines if line.startswith("-r ")]
    assert [(BINDER / name).resolve() for name in nested] == [ROOT / "requirements.txt"]
    assert "torch==2.13.0" in requirement_lines(ROOT / "requirements.txt")


def test_binder_uses_the_python_ci_uses_and_installs_bn_lib():
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    ci_python = re.search(r'python-version: "([\d.]+)"', workflow).group(1)
    assert (BINDER / "runtime.txt").read_text(encoding="utf-8").strip() == f"python-{ci_python}"
    post_build = BINDER / "postBuild"
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    assert "pip install --no-deps --no-build-isolation -e ." in post_build.read_text("utf-8")
