"""The first code cell of every chapter and assignment: install bn_lib where it is
missing (Colab).

A chapter opened from the book's launch button runs on Colab, where ``import bn_lib`` fails:
nothing there installs the book's library (d2l's notebooks solve the same problem with a
``pip install d2l`` cell). This module holds that cell, written once: when ``bn_lib`` is not
importable it clones the book's repository (``repository.url`` and ``repository.branch`` of
``_config.yml``, the one place a fork changes), installs it with pip, and moves into the
clone's ``chapters/`` folder, where the chapter's helper module and data files are. Where
``bn_lib`` is installed (``make lab``, ``make test``, Binder) the cell changes nothing.

An assignment (``assignments/source/NN_*.ipynb``) gets the same cell for ``bn_course``,
the grader installed with bn_lib, without the move: the grader finds its tests in the
installed package and grades the notebook wherever it is.

Usage::

    python -m tools.setup_cell                     # every chapters/*.ipynb
    python -m tools.setup_cell chapters/03_backprop.ipynb
    python -m tools.setup_cell --assignments       # every assignments/source/*.ipynb
    python -m bn_course.make_student               # then the blanks, from the sources
    python -m tools.setup_cell --check             # exit 1 if a chapter lacks the cell
    python -m tools.setup_cell --check --assignments

A notebook under ``assignments/`` gets the assignment's cell, any other the chapter's.
The cell is inserted before a notebook's first code cell, or replaces it when that cell is
already the set-up cell (tag ``SETUP_TAG``); it carries no outputs and the tag ``hide-cell``,
so the rendered book folds it away. Its lines fit the rendered column (80 characters).
A fork that changes ``repository.url`` reruns this (``make setup-cell``);
``tests/test_setup_cell.py`` fails until it does.
"""

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
SETUP_TAG = "book-setup"
TAGS = [SETUP_TAG, "hide-cell"]

TEMPLATE = """\
# Set-up for Colab: where {package} is missing, fetch the book and install it.
# Where it is installed (make lab, make test, Binder), it changes nothing.
import importlib.util
import os
import subprocess
import sys

BOOK_REPOSITORY = "{url}"
BOOK_CLONE = "{clone}"
if importlib.util.find_spec("{package}") is None:
    if not os.path.isdir(BOOK_CLONE):
        subprocess.run(
            ["git", "clone", "--depth", "1", "--branch", "{branch}",
             BOOK_REPOSITORY, BOOK_CLONE],
            check=True,
        )
    # "./": a folder to install, not a package name to look up
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet",
         "./" + BOOK_CLONE],
        check=True,
    )
    importlib.invalidate_caches()"""
# a chapter also moves into the clone's chapters/ folder
CHAPTER_TAIL = """
if os.path.isdir(os.path.join(BOOK_CLONE, "chapters")):
    # the chapter's helper module and data
    os.chdir(os.path.join(BOOK_CLONE, "chapters"))"""
CHAPTER, ASSIGNMENT = "chapter", "assignment"
ASSIGNMENT_SOURCES = ROOT / "assignments" / "source"


def repository(config: Path = ROOT / "_config.yml") -> tuple[str, str]:
    """``(url, branch)`` of the book's repository, from ``_config.yml``."""
    settings = yaml.safe_load(config.read_text(encoding="utf-8")).get("repository") or {}
    url = settings.get("url")
    if not url or urlsplit(url).scheme not in ("https", "http"):
        raise ValueError(f"{config}: repository.url must be the book's https URL, not {url!r}")
    return url.rstrip("/"), settings.get("branch", "main")


def kind_of(path: Path) -> str:
    """An assignment's cell for a notebook under ``assignments/``, else a chapter's."""
    return ASSIGNMENT if "assignments" in Path(path).resolve().parts else CHAPTER


def source(url: str | None = None, branch: str | None = None, kind: str = CHAPTER) -> str:
    """The set-up cell's source for a chapter or an assignment (``kind``), for the
    repository in ``_config.yml`` unless given."""
    if url is None or branch is None:
        config_url, config_branch = repository()
        url, branch = url or config_url, branch or config_branch
    clone = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    if not clone:
        raise ValueError(f"no repository name in {url!r}")
    if kind not in (CHAPTER, ASSIGNMENT):
        raise ValueError(f"kind must be {CHAPTER!r} or {ASSIGNMENT!r}, not {kind!r}")
    package = "bn_lib" if kind == CHAPTER else "bn_course"
    cell = TEMPLATE.format(url=url, clone=clone, branch=branch, package=package)
    return cell + CHAPTER_TAIL if kind == CHAPTER else cell


def first_code_cell(notebook) -> int | None:
    return next((i for i, c in enumerate(notebook.cells) if c.cell_type == "code"), None)


def is_setup_cell(cell) -> bool:
    return cell.cell_type == "code" and SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def apply(path: Path, cell_source: str) -> bool:
    """Make ``cell_source`` the first code cell of the notebook at ``path``; True if changed."""
    notebook = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(cell_source, metadata={"tags": list(TAGS)})
    index = first_code_cell(notebook)
    if index is None:
        index = len(notebook.cells)
    elif is_setup_cell(notebook.cells[index]):
        old = notebook.cells[index]
        if old.source == cell_source and not old.outputs and old.metadata.get("tags") == TAGS:
            return False
        cell.id = old.get("id", cell.id)  # keep the cell's identity across updates
        del notebook.cells[index]
    notebook.cells.insert(index, cell)
    nbformat.write(notebook, path)
    return True


def check(path: Path, cell_source: str) -> str | None:
    """A problem if the notebook's first code cell is not the set-up cell, else None."""
    notebook = nbformat.read(path, as_version=4)
    index = first_code_cell(notebook)
    if index is None or not is_setup_cell(notebook.cells[index]):
        return f"{path}: the first code cell is not the set-up cell"
    cell = notebook.cells[index]
    if cell.source != cell_source:
        return f"{path}: the set-up cell differs from tools/setup_cell.py's (run it)"
    if cell.outputs:
        return f"{path}: the set-up cell has outputs"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--assignments", action="store_true",
                        help="every assignments/source/*.ipynb (then run make student)")
    parser.add_argument("--check", action="store_true", help="only check, change nothing")
    args = parser.parse_args(argv)
    default = ASSIGNMENT_SOURCES.glob("*.ipynb") if args.assignments else \
        (ROOT / "chapters").glob("*.ipynb")
    notebooks = args.notebooks or sorted(default)
    cells = {kind: source(kind=kind) for kind in (CHAPTER, ASSIGNMENT)}
    if args.check:
        problems = [p for p in (check(path, cells[kind_of(path)]) for path in notebooks) if p]
        print("\n".join(problems) or f"all {len(notebooks)} notebooks start with the set-up cell")
        return 1 if problems else 0
    for path in notebooks:
        changed = apply(path, cells[kind_of(path)])
        print(f"{path}: {'updated' if changed else 'already up to date'}")
    if any(kind_of(path) == ASSIGNMENT for path in notebooks):
        print("now run `python -m bn_course.make_student` (make student) for the blanks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
