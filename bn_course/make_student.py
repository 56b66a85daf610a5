"""Write the blank assignments from the sources: ``make student``.

Command line (from the repository root)::

    python -m bn_course.make_student [--check]

For every ``assignments/source/NN_topic.ipynb`` it writes ``assignments/NN_topic.ipynb``,
where each solution region (nbgrader's markup, ``### BEGIN SOLUTION`` to
``### END SOLUTION``) becomes

    # YOUR CODE HERE
    raise NotImplementedError("function: what to write")

(the text after ``BEGIN SOLUTION`` says what to write; a message that would make the line
wider than 80 characters is split into string literals on lines of their own), and every
output is cleared.
``--check`` writes nothing: it exits 1 when a committed blank differs from what the
sources give, or when a line of a solution survives in a blank.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import textwrap
from pathlib import Path

import nbformat

from bn_course.grade import ASSIGNMENTS, SOURCES

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
DEF = re.compile(r"^\s*def\s+(\w+)\s*\(")
WIDTH = 80  # the book's code column: a blank's lines fit it


def _hint(line):
    """What to write, from the text after ``### BEGIN SOLUTION`` (": ..." or nothing)."""
    return line.split(BEGIN, 1)[1].strip().lstrip(":").strip()


def _stub(indent, message):
    """The lines ``raise NotImplementedError("message")``, the message split into string
    literals on lines of their own where one line would be wider than :data:`WIDTH`."""
    line = f"{indent}raise NotImplementedError({json.dumps(message)})"
    if len(line) <= WIDTH:
        return [line]
    inner = indent + " " * 4
    # each literal with its quotes (2) and, on the last line, the closing parenthesis (1)
    words = textwrap.wrap(message, WIDTH - len(inner) - 3, break_long_words=False,
                          break_on_hyphens=False)
    pieces = [word + " " for word in words[:-1]] + words[-1:]
    if "".join(pieces) != message:  # runs of spaces: keep the message exact, on one line
        pieces = [message]
    literals = [inner + json.dumps(piece) for piece in pieces]
    literals[-1] += ")"
    return [f"{indent}raise NotImplementedError("] + literals


def blank_source(source):
    """The cell's source with every solution region replaced by the stub."""
    lines, out, function, inside = source.split("\n"), [], None, False
    for line in lines:
        match = DEF.match(line)
        if match and not inside:
            function = match.group(1)
        if BEGIN in line:
            if inside:
                raise ValueError(f"nested {BEGIN} in:\n{source}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            what = _hint(line) or "this part"
            message = f"{function}: {what}" if function else what
            out += [f"{indent}# YOUR CODE HERE", *_stub(indent, message)]
        elif END in line:
            if not inside:
                raise ValueError(f"{END} without {BEGIN} in:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END} in:\n{source}")
    return "\n".join(out)


def make_blank(notebook):
    """A copy of the source notebook with the solutions removed and no outputs."""
    blank = copy.deepcopy(notebook)
    # only what a learner's Jupyter needs: no record of the Python that ran the source
    blank.metadata = {"kernelspec": notebook.metadata.get("kernelspec", {}),
                      "language_info": {"name": "python"}}
    for cell in blank.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.source = blank_source(cell.source)
        cell.get("metadata", {}).pop("execution", None)
    return blank


def solution_lines(notebook):
    """The stripped code lines inside solution regions that appear nowhere outside them."""
    inside_lines, outside_lines = set(), set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        inside = False
        for line in cell.source.split("\n"):
            text = line.strip()
            if BEGIN in line:
                inside = True
            elif END in line:
                inside = False
            elif text and not text.startswith("#"):
                (inside_lines if inside else outside_lines).add(text)
    return inside_lines - outside_lines


def blank_path(source):
    return ASSIGNMENTS / Path(source).name


def render(notebook):
    text = nbformat.writes(notebook)
    return text if text.endswith("\n") else text + "\n"


def check(sources=None):
    """Problems with the committed blanks: out of date, or leaking a solution line."""
    problems = []
    for source in sources or sorted(SOURCES.glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(source, as_version=4)
        target = blank_path(source)
        if not target.exists():
            problems.append(f"{target} is missing: run make student")
            continue
        committed = target.read_text()
        if committed != render(make_blank(notebook)):
            problems.append(f"{target} differs from a fresh make student")
        blank = nbformat.reads(committed, as_version=4)
        blank_lines = {line.strip() for cell in blank.cells if cell.cell_type == "code"
                       for line in cell.source.split("\n")}
        for line in sorted(solution_lines(notebook) & blank_lines):
            problems.append(f"{target} contains the solution line {line!r}")
        if any(cell.get("outputs") for cell in blank.cells):
            problems.append(f"{target} has outputs")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="check the committed blanks instead of writing them")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem)
        print("blanks: up to date, no solution line in them" if not problems else
              f"blanks: {len(problems)} problem(s)")
        return 1 if problems else 0
    for source in sorted(SOURCES.glob("[0-9][0-9]_*.ipynb")):
        blank = make_blank(nbformat.read(source, as_version=4))
        blank_path(source).write_text(render(blank))
        print(f"wrote {blank_path(source).relative_to(ASSIGNMENTS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
