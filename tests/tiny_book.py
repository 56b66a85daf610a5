"""A two-page book built with the real book's configuration, for testing the page check.

It has what the check looks at: inline and display math, an image, an exercise with its
solution in a dropdown, a Korean sentence whose words carry particles, and a notebook page
with code cells (one folded away) and a printed line, each 70 characters wide. Built once per
test process (5-10 s) into a temporary folder; tests copy the HTML and damage the copy.
"""

import json
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What _config.yml refers to: the MathJax copy, the search extension, the bibliography.
SHARED = ("_config.yml", "_vendor", "_ext", "references.bib")

TOC = """format: jb-book
root: intro
chapters:
  - file: korean
  - file: code
"""

INTRO = r"""# A tiny book

Inline math $\mu_\mathcal{B} = \frac{1}{m} \sum_i x_i$ and a numbered equation:

$$
\hat x_i = \frac{x_i - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}}
$$ (eq-tiny)

![A square](square.png)

```{exercise}
:label: ex-tiny

What is the mean of $\hat x$?
```

```{solution} ex-tiny
:class: dropdown

Zero, up to rounding.
```
"""

KOREAN = """# 한국어 쪽 (A Korean page)

배치 정규화에서 평균이 0이 되고 분산은 1이 됩니다.
"""


# Each 70 characters wide, well inside the code column; the tests widen them to 150.
CODE_LINE = "# a line of code 70 characters wide: " + "x" * 33
OUTPUT_LINE = "a printed line 70 characters wide: " + "y" * 35
FOLDED_LINE = "# a folded line 70 characters wide: " + "z" * 34


def code_notebook() -> dict:
    """A notebook page, stored executed (the book never executes): a code cell that prints
    a line, and a code cell folded away (``hide-input``)."""

    def cell(source: str, tags: list[str], outputs: list[dict]) -> dict:
        metadata = {"tags": tags} if tags else {}
        return {"cell_type": "code", "execution_count": 1, "metadata": metadata,
                "source": source, "outputs": outputs}  # fmt: skip

    printed = {"output_type": "stream", "name": "stdout", "text": OUTPUT_LINE + "\n"}
    return {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# Code that fits the page"},
            cell(CODE_LINE + "\nprint(printed_line)", [], [printed]),
            cell(FOLDED_LINE, ["hide-input"], []),
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 4,
    }  # fmt: skip


def grey_png(size: int = 8) -> bytes:
    """A ``size`` x ``size`` mid-grey PNG, encoded here so the test needs no image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = b"".join(b"\x00" + b"\x80" * size for _ in range(size))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def write_sources(folder: Path) -> Path:
    """Write the tiny book's sources into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy(source, folder / name)
    (folder / "_toc.yml").write_text(TOC, encoding="utf-8")
    (folder / "intro.md").write_text(INTRO, encoding="utf-8")
    (folder / "korean.md").write_text(KOREAN, encoding="utf-8")
    (folder / "code.ipynb").write_text(json.dumps(code_notebook(), indent=1), encoding="utf-8")
    (folder / "square.png").write_bytes(grey_png())
    return folder


@cache
def build() -> Path:
    """Build the tiny book strictly, once per process; returns its ``_build/html``."""
    folder = write_sources(Path(_BUILD_DIR.name) / "tiny_book")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", str(folder), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"the tiny book did not build:\n{result.stdout}\n{result.stderr}")
    return folder / "_build" / "html"


_BUILD_DIR = tempfile.TemporaryDirectory(prefix="tiny_book_")  # removed when the process ends
