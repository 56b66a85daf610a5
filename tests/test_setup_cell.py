"""The set-up cell of every chapter and assignment (tools/setup_cell.py): present, a no-op
here, and right for Colab and for forks. Nothing here touches the network: git and pip are
replaced by a recorder where the cell would call them."""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import setup_cell

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
# the sources and the blanks that make student writes from them
ASSIGNMENTS = sorted((ROOT / "assignments" / "source").glob("*.ipynb")) + sorted(
    (ROOT / "assignments").glob("[0-9]*.ipynb"))
FORK = "https://github.com/a-teacher/bn-course"


@pytest.fixture
def recorded_calls(monkeypatch):
    """Replace subprocess.run; a clone 'creates' its folder with a chapters/ inside."""
    calls = []

    def run(command, check=False):
        calls.append(command)
        if command[:2] == ["git", "clone"]:
            (Path(command[-1]) / "chapters").mkdir(parents=True)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def run_cell(cell_source: str) -> dict:
    namespace = {}
    exec(compile(cell_source, "<set-up cell>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_every_chapter_starts_with_the_setup_cell(chapter):
    assert setup_cell.check(chapter, setup_cell.source()) is None, "run `make setup-cell`"
    notebook = nbformat.read(chapter, as_version=4)
    cell = notebook.cells[setup_cell.first_code_cell(notebook)]
    assert "hide-cell" in cell.metadata["tags"]  # folded away in the rendered book


def test_cell_is_a_no_op_where_bn_lib_imports(recorded_calls, tmp_path, monkeypatch):
    assert importlib.util.find_spec("bn_lib") is not None
    monkeypatch.chdir(tmp_path)
    run_cell(setup_cell.source())
    assert recorded_calls == []
    assert Path.cwd() == tmp_path
    assert list(tmp_path.iterdir()) == []


def test_cell_on_colab_clones_the_fork_installs_it_and_enters_its_chapters(
    recorded_calls, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "bn_lib" else real_find_spec(name, *args),
    )
    run_cell(setup_cell.source(url=FORK, branch="spring-term"))
    assert recorded_calls == [
        ["git", "clone", "--depth", "1", "--branch", "spring-term", FORK, "bn-course"],
        [sys.executable, "-m", "pip", "install", "--quiet", "./bn-course"],
    ]
    assert Path.cwd() == tmp_path / "bn-course" / "chapters"


def test_cell_after_a_restart_only_enters_the_clone(recorded_calls, tmp_path, monkeypatch):
    # Colab keeps the clone and the installed bn_lib across a runtime restart, not the cwd.
    (tmp_path / "bn-course" / "chapters").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    run_cell(setup_cell.source(url=FORK, branch="main"))
    assert recorded_calls == []
    assert Path.cwd() == tmp_path / "bn-course" / "chapters"


def test_cell_reads_the_repository_from_config(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text(f"repository:\n  url: {FORK}.git\n  branch: dev\n", encoding="utf-8")
    assert setup_cell.repository(config) == (f"{FORK}.git", "dev")
    url, branch = setup_cell.repository()
    assert f'BOOK_REPOSITORY = "{url}"' in setup_cell.source()
    assert f'"--branch", "{branch}"' in setup_cell.source()
    assert 'BOOK_CLONE = "bn-course"' in setup_cell.source(url=f"{FORK}.git", branch="dev")


def test_config_without_a_repository_url_is_an_error(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("repository:\n  branch: main\n", encoding="utf-8")
    with pytest.raises(ValueError, match="repository.url"):
        setup_cell.repository(config)


def test_command_inserts_then_replaces_the_cell_keeping_the_rest(tmp_path):
    chapter = Path(shutil.copy(CHAPTERS[0], tmp_path / CHAPTERS[0].name))
    before = nbformat.read(chapter, as_version=4)
    setup_cell.apply(chapter, setup_cell.source(url=FORK, branch="main"))
    assert setup_cell.check(chapter, setup_cell.source()) is not None  # another repository
    assert setup_cell.apply(chapter, setup_cell.source()) is True
    assert setup_cell.apply(chapter, setup_cell.source()) is False  # already up to date
    after = nbformat.read(chapter, as_version=4)
    assert setup_cell.check(chapter, setup_cell.source()) is None
    index = setup_cell.first_code_cell(after)
    assert after.cells[index].outputs == [] and after.cells[index].execution_count is None
    others = [cell for cell in after.cells if not setup_cell.is_setup_cell(cell)]
    assert [c.source for c in others] == [
        c.source for c in before.cells if not setup_cell.is_setup_cell(c)
    ]
    assert os.path.getsize(chapter) > 0


@pytest.mark.parametrize("assignment", ASSIGNMENTS,
                         ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_assignment_starts_with_the_setup_cell(assignment):
    cell_source = setup_cell.source(kind=setup_cell.ASSIGNMENT)
    assert setup_cell.kind_of(assignment) == setup_cell.ASSIGNMENT
    assert setup_cell.check(assignment, cell_source) is None, (
        "run `python -m tools.setup_cell --assignments`, then `make student`")


def test_check_mode_passes_on_the_assignments():
    assert setup_cell.main(["--check", "--assignments"]) == 0


@pytest.mark.parametrize("kind", [setup_cell.CHAPTER, setup_cell.ASSIGNMENT])
def test_cell_fits_the_rendered_column(kind):
    assert max(len(line) for line in setup_cell.source(kind=kind).splitlines()) <= 80


def test_assignment_cell_on_colab_installs_the_grader_and_stays_put(
    recorded_calls, tmp_path, monkeypatch
):
    # the grader finds its tests in the installed package: no need to enter the clone
    monkeypatch.chdir(tmp_path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "bn_course" else real_find_spec(name, *args),
    )
    run_cell(setup_cell.source(url=FORK, branch="main", kind=setup_cell.ASSIGNMENT))
    assert recorded_calls == [
        ["git", "clone", "--depth", "1", "--branch", "main", FORK, "bn-course"],
        [sys.executable, "-m", "pip", "install", "--quiet", "./bn-course"],
    ]
    assert Path.cwd() == tmp_path
