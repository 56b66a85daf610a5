"""Every printed line of the committed chapters fits the book's code column.

The rendered column shows 80 characters of code (``check_pages.COLUMN_CHARACTERS``; the page
check measures it in a browser); a longer printed line scrolls sideways inside its cell. This
reads the committed notebooks without executing them, so it runs in a moment; the code lines
themselves are held to the same width by ruff (``chapters/ruff.toml``).
"""

import json
import re
import unicodedata
from pathlib import Path

import pytest

from tools.check_pages import COLUMN_CHARACTERS

CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"
NOTEBOOKS = sorted(CHAPTERS.glob("*.ipynb"))
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# An output with one of these is shown as the picture or the table, not as its text/plain.
RICHER_THAN_TEXT = ("image/png", "image/jpeg", "image/svg+xml", "text/html", "text/latex")


def shown_text(output: dict) -> str:
    """The text a reader sees for one output of a code cell ("" for a picture or a table)."""
    if output["output_type"] == "stream":
        return "".join(output["text"])
    if output["output_type"] == "error":
        return ANSI_ESCAPE.sub("", "\n".join(output["traceback"]))
    data = output.get("data", {})
    if any(kind in data for kind in RICHER_THAN_TEXT):
        return ""
    return "".join(data.get("text/plain", ""))


def display_width(line: str) -> int:
    """Columns the line takes in a monospace font: tabs expanded, wide characters count 2."""
    return sum(
        2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line.expandtabs(8)
    )


def wide_output_lines(notebook: Path) -> list[str]:
    """Each printed line wider than the column, as 'cell N, output line K (W chars): start'."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found = []
    for number, cell in enumerate(cells, start=1):
        lines = [
            line for output in cell.get("outputs", []) for line in shown_text(output).splitlines()
        ]
        for line_number, line in enumerate(lines, start=1):
            if display_width(line) > COLUMN_CHARACTERS:
                found.append(
                    f"cell {number}, output line {line_number} "
                    f"({display_width(line)} chars): {line[:50]!r}"
                )
    return found


def test_the_chapters_are_found():
    assert len(NOTEBOOKS) >= 10, f"chapters moved? found {NOTEBOOKS}"


def test_a_wide_line_is_found(tmp_path):
    printed = {"output_type": "stream", "name": "stdout", "text": ["ok\n", "y" * 81 + "\n"]}
    table = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
             "data": {"text/html": "<table/>", "text/plain": "z" * 200}}  # fmt: skip
    cells = [{"cell_type": "code", "source": "", "outputs": [printed, table]}]
    notebook = tmp_path / "wide.ipynb"
    notebook.write_text(json.dumps({"cells": cells}), encoding="utf-8")
    assert wide_output_lines(notebook) == [f"cell 1, output line 2 (81 chars): {'y' * 50!r}"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_printed_lines_fit_the_column(notebook):
    wide = wide_output_lines(notebook)
    assert not wide, (
        f"{notebook.name}: {len(wide)} printed line(s) wider than {COLUMN_CHARACTERS} "
        "characters (they scroll sideways in the book):\n" + "\n".join(wide)
    )
