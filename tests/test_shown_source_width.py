"""The library code the chapters show fits the book's code column.

A chapter shows part of the library with MyST's ``literalinclude`` directive (in a markdown
cell of a notebook, or in a ``.md`` page), usually ``:pyobject: NAME``. The rendered column
shows 80 characters of code (``check_pages.COLUMN_CHARACTERS``); a longer line scrolls
sideways. The rest of a library file may run to ruff's 100, so ruff cannot hold the shown
regions to 80: this test does. It reads the files without executing or building anything,
resolving each region as Sphinx's ``LiteralIncludeReader`` does: ``:pyobject:`` (the object's
lines, decorators included), then ``:start-after:``/``:start-at:``, ``:end-before:``/
``:end-at:``, ``:lines:`` (counted within what is left) and ``:dedent:``.
"""

import ast
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tools.check_pages import COLUMN_CHARACTERS

CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"
BOOK_ROOT = CHAPTERS.parent  # where a path starting with "/" is resolved, as in Sphinx
# An opening fence of backticks or colons, its directive, then the argument (the file).
OPENING = re.compile(r"^(?P<fence>`{3,}|:{3,})\{literalinclude\}[ \t]+(?P<path>\S+)[ \t]*$")
OPTION = re.compile(r"^:(?P<name>[\w-]+):(?:[ \t]+(?P<value>.*?))?[ \t]*$")


@dataclass
class Directive:
    page: str  # the chapter file, and the cell for a notebook
    path: Path  # the included file
    options: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        shown = self.options.get("pyobject", "whole file")
        return f"{self.page}: {self.path.relative_to(BOOK_ROOT)} ({shown})"


def directives_in(text: str, page: str, page_dir: Path) -> list[Directive]:
    """Each literalinclude in one markdown text, with the options that follow its opening."""
    found = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        opening = OPENING.match(line.strip())
        if not opening:
            continue
        argument = opening["path"]
        path = BOOK_ROOT / argument[1:] if argument.startswith("/") else page_dir / argument
        directive = Directive(page, path.resolve())
        for option_line in lines[index + 1 :]:
            option = OPTION.match(option_line.strip())
            if not option:
                break
            directive.options[option["name"]] = option["value"] or ""
        found.append(directive)
    return found


def chapter_directives(chapters: Path = CHAPTERS) -> list[Directive]:
    """Every literalinclude of the chapters: notebooks' markdown cells and .md pages."""
    found = []
    for notebook in sorted(chapters.glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for number, cell in enumerate(cells, start=1):
            if cell["cell_type"] == "markdown":
                source = "".join(cell["source"])
                page = f"{notebook.name} cell {number}"
                found += directives_in(source, page, chapters)
    for markdown in sorted(chapters.glob("*.md")):
        found += directives_in(markdown.read_text(encoding="utf-8"), markdown.name, chapters)
    return found


def object_lines(source: str, dotted_name: str) -> range:
    """The 1-based line numbers of a top-level (or dotted, nested) def or class."""
    body = ast.parse(source).body
    node = None
    for part in dotted_name.split("."):
        matches = [
            child
            for child in body
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and child.name == part
        ]
        if not matches:
            raise LookupError(f"no object named {dotted_name!r}")
        node = matches[-1]  # a later definition replaces an earlier one, as at import
        body = node.body
    first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
    return range(first, node.end_lineno + 1)


def line_selection(spec: str, count: int) -> list[int]:
    """0-based indices for a Sphinx line spec such as '1,3-5,8-' over ``count`` lines."""
    indices = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-", 1)
            start = int(low) if low else 1
            stop = int(high) if high else count
            indices += range(start - 1, stop)
        else:
            indices.append(int(part) - 1)
    if not indices or min(indices) < 0 or max(indices) >= count:
        raise LookupError(f":lines: {spec} does not fit a region of {count} lines")
    return indices


def shown_region(directive: Directive) -> list[tuple[int, str]]:
    """The lines the book shows, each with its line number in the included file."""
    options = directive.options
    source = directive.path.read_text(encoding="utf-8")
    region = list(enumerate(source.splitlines(), start=1))
    if "pyobject" in options:
        wanted = object_lines(source, options["pyobject"])
        region = [(number, text) for number, text in region if number in wanted]
    for option, keeps_marker, is_start in [
        ("start-after", False, True),
        ("start-at", True, True),
        ("end-before", False, False),
        ("end-at", True, False),
    ]:
        if option not in options:
            continue
        marker = options[option]
        hits = [index for index, (_, text) in enumerate(region) if marker in text]
        if not hits:
            raise LookupError(f":{option}: {marker!r} is not in the region")
        if is_start:
            region = region[hits[0] + (0 if keeps_marker else 1) :]
        else:
            region = region[: hits[0] + (1 if keeps_marker else 0)]
    if "lines" in options:
        region = [region[index] for index in line_selection(options["lines"], len(region))]
    if "dedent" in options:
        numbers = [number for number, _ in region]
        if options["dedent"]:
            width = int(options["dedent"])
            texts = [text[width:] if not text[:width].strip() else text for _, text in region]
        else:
            texts = textwrap.dedent("\n".join(text for _, text in region)).split("\n")
        region = list(zip(numbers, texts))
    return region


def wide_lines(directive: Directive) -> list[str]:
    """Each shown line wider than the column, as 'line N (W chars): start'."""
    return [
        f"line {number} ({len(text.expandtabs(8))} chars): {text.strip()[:50]!r}"
        for number, text in shown_region(directive)
        if len(text.expandtabs(8)) > COLUMN_CHARACTERS
    ]


DIRECTIVES = chapter_directives()


def test_the_included_regions_are_found():
    assert len(DIRECTIVES) >= 10, f"literalinclude directives moved? found {DIRECTIVES}"
    for directive in DIRECTIVES:
        assert directive.path.is_file(), f"{directive.label}: the included file is missing"


def test_a_directive_is_read_as_sphinx_reads_it(tmp_path):
    module = tmp_path / "module.py"
    module.write_text(
        "import functools\n"
        "\n"
        "\n"
        "@functools.cache\n"
        "def shown():\n"
        "    return 1  " + "#" * 80 + "\n"
        "\n"
        "\n"
        "class Layer:\n"
        "    def forward(self):\n"
        "        pass\n",
        encoding="utf-8",
    )
    cell = {
        "cell_type": "markdown",
        "source": "Text.\n\n```{literalinclude} module.py\n:pyobject: shown\n:lines: 2-\n```\n\n"
        "::::{literalinclude} /module.py\n:pyobject: Layer.forward\n::::\n",
    }
    notebook = tmp_path / "page.ipynb"
    notebook.write_text(json.dumps({"cells": [cell]}), encoding="utf-8")
    first, second = chapter_directives(tmp_path)
    assert first.options == {"pyobject": "shown", "lines": "2-"}
    assert first.path == module.resolve()
    assert [number for number, _ in shown_region(first)] == [5, 6]
    assert wide_lines(first) == [f"line 6 (94 chars): {'return 1  ' + '#' * 40!r}"]
    assert second.path == (BOOK_ROOT / "module.py").resolve()
    second.path = module
    assert [text for _, text in shown_region(second)] == ["    def forward(self):", "        pass"]
    between = Directive("page", module, {"start-after": "functools", "end-before": "class"})
    assert [number for number, _ in shown_region(between)] == [2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(LookupError, match="no object named 'missing'"):
        shown_region(Directive("page", module, {"pyobject": "missing"}))


@pytest.mark.parametrize("directive", DIRECTIVES, ids=lambda directive: directive.label)
def test_shown_source_fits_the_column(directive):
    wide = wide_lines(directive)
    assert not wide, (
        f"{directive.label}: {len(wide)} shown line(s) wider than {COLUMN_CHARACTERS} "
        "characters (they scroll sideways in the book):\n" + "\n".join(wide)
    )
