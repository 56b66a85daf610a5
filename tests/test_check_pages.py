"""The page check (tools/check_pages.py) passes a sound book and fails on each planted fault.

A tiny book is built with the real ``_config.yml`` (tests/tiny_book.py), its HTML copied, and
one fault planted in each copy: the kinds of breakage a reader would see and ``make test``
would otherwise pass. Skipped when no Chromium is installed (``apt-get install chromium``).
"""

import re
import shutil
from pathlib import Path

import pytest
import tiny_book

from tools import check_pages

pytestmark = pytest.mark.skipif(
    not Path(check_pages.CHROMIUM).exists(), reason=f"no Chromium at {check_pages.CHROMIUM}"
)
SEARCHES = (("평균", "korean"),)  # the page says 평균이
CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


@pytest.fixture(scope="module")
def built():
    return tiny_book.build()


@pytest.fixture(scope="module")
def browser():
    with check_pages.chromium() as browser:
        yield browser


@pytest.fixture
def site(built, tmp_path):
    """A fresh copy of the tiny book's HTML, to damage."""
    return Path(shutil.copytree(built, tmp_path / "html"))


def problems(site, browser, only=None, searches=()):
    """The problems found on each page checked, and the reports."""
    sources = tiny_book.build().parent.parent  # where the launch buttons' notebooks are
    reports = check_pages.check_book(
        site, tmp_path_screens(site), browser, searches=searches, only=only, source_dir=sources
    )
    return {report.page: report.problems for report in reports}, reports


def tmp_path_screens(site):
    return site.parent / "screenshots"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}: the tiny book changed shape"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_sound_book_passes_with_math_images_solution_and_screenshots(site, browser):
    found, reports = problems(site, browser, searches=SEARCHES)
    assert len(found) == 7  # genindex, index (a redirect), intro, korean, code, search, a search
    assert all(not listed for listed in found.values()), check_pages.format_reports(reports)
    intro = next(report for report in reports if report.page == "intro.html")
    assert intro.math >= 3 and intro.images == 1 and intro.solutions == 1
    assert (tmp_path_screens(site) / "intro.png").stat().st_size > 0
    assert (tmp_path_screens(site) / "korean.png").stat().st_size > 0
    code = next(report for report in reports if report.page == "code.html")
    narrowest, widest = code.columns
    assert check_pages.COLUMN_CHARACTERS <= narrowest <= widest  # the 70-character lines fit


def test_deleted_image_fails(site, browser):
    image = next((site / "_images").glob("square*.png"))
    image.unlink()
    found, _ = problems(site, browser, only=["intro.html"])
    assert any("image did not load" in problem for problem in found["intro.html"])


def test_solution_without_dropdown_fails(site, browser):
    # What `{solution}` without `:class: dropdown` renders to: the same admonition, not folded.
    edit(site / "intro.html", 'class="solution dropdown admonition"', 'class="solution admonition"')
    found, _ = problems(site, browser, only=["intro.html"])
    assert any("not a closed dropdown" in problem for problem in found["intro.html"])


def test_mathjax_from_the_cdn_fails_offline(site, browser):
    # What Sphinx's default mathjax_path renders to: the script from a CDN.
    page = site / "intro.html"
    script = re.search(r'src="(_static/mathjax/tex-mml-chtml\.js[^"]*)"', page.read_text("utf-8"))
    edit(page, script.group(1), CDN)
    found, _ = problems(site, browser, only=["intro.html"])
    assert any("needs the network" in problem for problem in found["intro.html"])
    assert any("MathJax did not load" in problem for problem in found["intro.html"])


def test_script_error_fails(site, browser):
    edit(site / "korean.html", "</body>", "<script>undefinedFunction()</script></body>")
    found, _ = problems(site, browser, only=["korean.html"])
    assert any("undefinedFunction" in problem for problem in found["korean.html"])


def test_tex_error_fails(site, browser):
    edit(site / "intro.html", r"\sum_i x_i", r"\sum_i x_i \frac{1}")
    found, _ = problems(site, browser, only=["intro.html"])
    assert any("mjx-merror" in problem for problem in found["intro.html"])


def test_search_for_a_word_on_no_page_fails(site, browser):
    found, _ = problems(site, browser, only=[], searches=(("공분산행렬", "korean"),))
    assert any("did not find korean" in problem for problem in found["search.html?q=공분산행렬"])


@pytest.mark.parametrize(
    ("url", "path"),
    [
        (
            "https://colab.research.google.com/github/o/r/blob/main/chapters/03_backprop.ipynb",
            "chapters/03_backprop.ipynb",
        ),
        (
            "https://mybinder.org/v2/gh/o/r/main?urlpath=lab/tree/chapters/03_backprop.ipynb",
            "chapters/03_backprop.ipynb",
        ),
        ("https://github.com/o/r", None),
    ],
)
def test_launch_path(url, path):
    assert check_pages.launch_path(url) == path


def test_launch_button_to_a_missing_notebook_fails(site, browser):
    colab = "https://colab.research.google.com/github/o/r/blob/main/chapters/gone.ipynb"
    edit(site / "korean.html", "</body>", f'<a href="{colab}">Colab</a></body>')
    found, _ = problems(site, browser, only=["korean.html"])
    assert any("launch button opens no notebook" in problem for problem in found["korean.html"])


def test_folded_cell_shown_open_fails(site, browser):
    folded = '<details class="hide above-input" open><summary>code</summary><pre>x</pre></details>'
    edit(site / "korean.html", "</body>", folded + "</body>")
    found, _ = problems(site, browser, only=["korean.html"])
    assert any("folded cells" in problem for problem in found["korean.html"])


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (tiny_book.CODE_LINE, "code cell 1 (input)"),
        (tiny_book.OUTPUT_LINE, "code cell 1 (output)"),
        (tiny_book.FOLDED_LINE, "code cell 2 (input)"),  # measured as a reader who opens it
    ],
)
def test_code_line_of_150_characters_fails(site, browser, line, where):
    wide = line + line[-1] * 80
    edit(site / "code.html", line[-20:], wide[-100:])
    found, _ = problems(site, browser, only=["code.html"])
    [problem] = found["code.html"]
    assert problem.startswith(f"{where} scrolls sideways by ")
    assert problem.endswith(f"its widest line has 150 characters, starting {wide[:40]!r}")
