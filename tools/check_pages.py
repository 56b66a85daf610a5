"""Check the built book in a real browser, with the network cut.

Every HTML page of ``_build/html`` is opened in headless Chromium (Debian's ``chromium``,
driven by Playwright) through a local HTTP server, with every request that leaves localhost
aborted, as in a classroom without network or a saved copy of the book. On each page the check
asserts:

- math is typeset: MathJax loaded and finished, every math node holds an ``mjx-container``, no
  ``mjx-merror``, and no raw ``$$`` or ``\\(`` left in the text outside code;
- every image loaded (``naturalWidth > 0``);
- no console error, uncaught page error, failed request or HTTP error, except the two console
  errors that stock Jupyter Book 1 pages log everywhere (``ALLOWED_CONSOLE_ERRORS``);
- every exercise solution is a closed dropdown that opens on a click, and every cell the
  chapter folds away (``hide-input``, ``hide-cell``: plot code, the Colab set-up) is closed;
- every launch button (Colab, Binder) points at a notebook that exists in the book's sources;
- no code block or output scrolls sideways: with every folded cell and dropdown opened, as a
  reader who expands them sees it, each ``pre`` and ``div.highlight`` of the article has
  ``scrollWidth <= clientWidth + 1`` (1 px of rounding); a wider one is reported with its cell
  and the first characters of its widest line. The viewport is ``VIEWPORT``, 1440 x 900 (a
  13-inch laptop's default): there the narrowest code column, inside an exercise's solution,
  shows 81 characters of code and the article's column 89 (at 1366 wide: 77 and 85; at 1280:
  69 and 77), so the ``COLUMN_CHARACTERS`` (80) the chapters' code and printed lines are kept
  to (``chapters/ruff.toml``, ``tests/test_output_width.py``) fit everywhere. The check
  measures the figures on each page and reports them.

It also searches the book for Korean words with particles attached (``SEARCHES``), and saves
a full-page screenshot of every page under ``_build/screenshots/``.

Usage::

    python -m tools.check_pages                 # _build/html, Chromium at /usr/bin/chromium
    python -m tools.check_pages --html DIR --screenshots DIR --chromium PATH

Exit status 0 when every page passes, 1 when any fails, 2 when no Chromium can be started.
"""

import argparse
import functools
import http.server
import re
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

CHROMIUM = "/usr/bin/chromium"
# Without these, headless Chromium in a container fails to start (sandbox, GPU) or phones home.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
# Stock Jupyter Book 1.0.4 pages log these on every page; they break nothing a reader sees.
ALLOWED_CONSOLE_ERRORS = (
    "Identifier 'THEBE_JS_URL' has already been declared",
    "Got invalid theme mode",
)
# (query, page that must be among its results). The Korean page has these words only with a
# particle attached (분포가, 분포의, 손실이, 손실을): Sphinx's stock search finds neither.
SEARCHES = (("분포", "chapters/source_notes_ko"), ("손실", "chapters/source_notes_ko"))
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
TIMEOUT_MS = 30_000
# A common laptop screen (see the module docstring for what narrower ones show).
VIEWPORT = {"width": 1440, "height": 900}
COLUMN_CHARACTERS = 80  # the width chapter code and printed lines are kept to

# Runs in the page after MathJax has finished: what a reader would see.
INSPECT_PAGE = r"""
async () => {
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  const settled = (img) => new Promise((done) => {
    img.addEventListener("load", done);
    img.addEventListener("error", done);
  });
  await Promise.all(images.map((img) => (img.complete ? null : settled(img))));
  const mathNodes = Array.from(document.querySelectorAll("span.math, div.math"));
  const prose = document.body.cloneNode(true);
  prose.querySelectorAll("pre, code, script, style, mjx-container, textarea")
       .forEach((node) => node.remove());
  const text = prose.textContent;
  return {
    math: mathNodes.length,
    untypeset: mathNodes.filter((node) => !node.querySelector("mjx-container")).length,
    merrors: document.querySelectorAll("mjx-merror").length,
    rawTex: ["$$", "\\("].filter((marker) => text.includes(marker)),
    images: images.length,
    brokenImages: images.filter((img) => !(img.complete && img.naturalWidth > 0))
                        .map((img) => img.getAttribute("src")),
    solutions: document.querySelectorAll(".solution").length,
    openHiddenCells: document.querySelectorAll("details.hide[open]").length,
    launch: Array.from(document.querySelectorAll("a[href]")).map((a) => a.href)
                 .filter((href) => /colab\.research\.google\.com|\/v2\/gh\//.test(href)),
  };
}
"""

# The body of a solution (everything after its title) is visible when it occupies space.
SOLUTION_STATES = r"""
() => Array.from(document.querySelectorAll(".solution")).map((solution) => {
  const body = Array.from(solution.children)
    .filter((child) => !child.classList.contains("admonition-title"));
  return {
    id: solution.id || solution.querySelector(".admonition-title")?.textContent.trim(),
    open: body.some((child) => child.getClientRects().length > 0 && child.offsetHeight > 0),
  };
})
"""


# Opens every folded cell and dropdown, then measures each code block and output the way a
# reader who expands them sees it: one that scrolls sideways is wider than its column.
MEASURE_CODE_WIDTH = r"""
() => {
  document.querySelectorAll("details").forEach((details) => { details.open = true; });
  const article = document.querySelector("article") || document.body;
  const cells = Array.from(article.querySelectorAll("div.cell"));
  const blocks = Array.from(article.querySelectorAll("pre, div.highlight"));
  const loose = Array.from(article.querySelectorAll("div.highlight"))
    .filter((block) => !block.closest("div.cell"));
  const wide = [];
  const seen = new Set();
  for (const block of blocks) {
    if (block.scrollWidth <= block.clientWidth + 1) continue;
    const pre = block.matches("pre") ? block : block.querySelector("pre");
    if (pre && seen.has(pre)) continue;  // a div.highlight and its pre: one report
    if (pre) seen.add(pre);
    const cell = block.closest("div.cell");
    const part = block.closest(".cell_output") ? "output" : "input";
    const lines = (pre || block).textContent.split("\n");
    const widest = lines.reduce((a, b) => (b.length > a.length ? b : a), "");
    wide.push({
      where: cell ? `code cell ${cells.indexOf(cell) + 1} (${part})`
                  : `code block ${loose.indexOf(block.closest("div.highlight")) + 1}`
                    + " outside the cells",
      overflow: block.scrollWidth - block.clientWidth,
      characters: widest.length,
      start: widest.trim().slice(0, 40),
    });
  }
  // Characters of code each block's column shows: a probe line of 100 characters in it.
  const columns = [];
  for (const pre of article.querySelectorAll("pre")) {
    if (!pre.clientWidth) continue;  // not displayed
    const probe = document.createElement("span");
    probe.textContent = "x".repeat(100);
    pre.appendChild(probe);
    const perCharacter = probe.getBoundingClientRect().width / 100;
    probe.remove();
    const style = getComputedStyle(pre);
    const inner = pre.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight);
    columns.push(Math.floor(inner / perCharacter + 0.01));
  }
  return {wide, columns};
}
"""


@dataclass
class PageReport:
    page: str
    math: int = 0
    images: int = 0
    solutions: int = 0
    # Characters of code the narrowest and the widest column on the page show (a solution's
    # or a folded cell's column is narrower than the article's); None: no code.
    columns: tuple[int, int] | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.IGNORECASE)


def launch_path(url: str) -> str | None:
    """The notebook path (relative to the repository) a Colab or Binder launch URL opens."""
    parts = urlsplit(url)
    if "colab.research.google.com" in parts.netloc and "/blob/" in parts.path:
        return parts.path.split("/blob/", 1)[1].split("/", 1)[1]  # after the branch
    for key in ("urlpath=lab/tree/", "urlpath=tree/", "filepath="):
        if key in parts.query:
            return unquote(parts.query.split(key, 1)[1].split("&", 1)[0])
    return None


def redirect_target(html_dir: Path, page_path: str) -> str | None:
    """The page a redirect page (Jupyter Book's index.html) points to, or None."""
    match = REDIRECT.search((html_dir / page_path).read_text(encoding="utf-8"))
    if match is None:
        return None
    return (Path(page_path).parent / match.group(1)).as_posix()


def html_pages(html_dir: Path) -> list[str]:
    """Every page of the built book, relative to ``html_dir`` (sources excluded)."""
    pages = [
        path.relative_to(html_dir).as_posix()
        for path in sorted(html_dir.rglob("*.html"))
        if not path.relative_to(html_dir).parts[0].startswith("_")
    ]
    if not pages:
        raise FileNotFoundError(f"no HTML pages under {html_dir}: build the book first")
    return pages


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the check reports failures itself
        pass


@contextmanager
def serve(directory: Path):
    """Serve ``directory`` on a free localhost port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def chromium(executable: str = CHROMIUM):
    """A headless Chromium browser, started through Playwright (nothing is downloaded)."""
    from playwright.sync_api import sync_playwright

    if not Path(executable).exists():
        raise FileNotFoundError(f"no Chromium at {executable} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def _cut_network(route):
    """Abort every request that leaves localhost, as without network."""
    if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
        route.continue_()
    else:
        route.abort("internetdisconnected")


def _watch(page, problems: list[str]) -> None:
    """Record console errors, page errors, failed requests and HTTP errors in ``problems``."""

    def on_console(message):
        if message.type == "error" and not any(a in message.text for a in ALLOWED_CONSOLE_ERRORS):
            problems.append(f"console error: {message.text}")

    def on_page_error(error):
        if not any(allowed in str(error) for allowed in ALLOWED_CONSOLE_ERRORS):
            problems.append(f"page error: {error}")

    def on_request_failed(request):
        host = urlsplit(request.url).hostname
        why = "needs the network" if host not in LOCAL_HOSTS else request.failure
        problems.append(f"request failed ({why}): {request.url}")

    def on_response(response):
        if response.status >= 400:
            problems.append(f"HTTP {response.status}: {response.url}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    page.on("requestfailed", on_request_failed)
    page.on("response", on_response)


def _await_mathjax(page) -> str | None:
    """Wait until MathJax has typeset the page; returns a problem, or None."""
    loaded = page.evaluate("() => Boolean(window.MathJax?.startup?.promise)")
    if not loaded:
        return "MathJax did not load: the page's math stays raw TeX"
    try:
        page.evaluate("() => MathJax.startup.promise.then(() => true)")
    except Exception as error:  # a rejected promise is a typesetting failure
        return f"MathJax failed: {error}"
    return None


def check_page(
    browser, base_url: str, page_path: str, screenshot: Path | None, source_dir: Path
) -> PageReport:
    """Open one page and check what a reader would see; see the module docstring."""
    report = PageReport(page_path)
    start = time.perf_counter()
    context = browser.new_context(viewport=VIEWPORT)
    try:
        context.route("**/*", _cut_network)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        _watch(page, report.problems)
        page.goto(base_url + page_path, wait_until="load")
        if page.evaluate("() => document.querySelectorAll('span.math, div.math').length"):
            problem = _await_mathjax(page)
            if problem:
                report.problems.append(problem)
        seen = page.evaluate(INSPECT_PAGE)
        report.math, report.images = seen["math"], seen["images"]
        report.solutions = seen["solutions"]
        if seen["untypeset"]:
            report.problems.append(f"{seen['untypeset']} of {seen['math']} math nodes not typeset")
        if seen["merrors"]:
            report.problems.append(f"{seen['merrors']} MathJax errors (mjx-merror)")
        for marker in seen["rawTex"]:
            report.problems.append(f"raw TeX {marker!r} in the text outside code")
        if seen["openHiddenCells"]:
            report.problems.append(f"{seen['openHiddenCells']} folded cells (hide-*) shown open")
        for src in seen["brokenImages"]:
            report.problems.append(f"image did not load: {src}")
        for url in seen["launch"]:
            path = launch_path(url)
            if path is None or not (source_dir / path).is_file():
                report.problems.append(f"launch button opens no notebook of the book: {url}")
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        report.problems.extend(_check_solutions(page))
        report.problems.extend(_check_code_width(page, report))
    finally:
        context.close()
    report.seconds = time.perf_counter() - start
    return report


def _check_solutions(page) -> list[str]:
    """Each solution starts closed and opens when its title is clicked."""
    problems = []
    titles = page.locator(".solution > .admonition-title")
    for index, before in enumerate(page.evaluate(SOLUTION_STATES)):
        if before["open"]:
            problems.append(f"solution {before['id']!r} is shown: not a closed dropdown")
            continue
        titles.nth(index).click()
        page.wait_for_timeout(50)
        if not page.evaluate(SOLUTION_STATES)[index]["open"]:
            problems.append(f"solution {before['id']!r} does not open on a click")
    return problems


def _check_code_width(page, report: PageReport) -> list[str]:
    """Each code block and output fits its column (measured with every fold opened)."""
    measured = page.evaluate(MEASURE_CODE_WIDTH)
    if measured["columns"]:
        report.columns = (min(measured["columns"]), max(measured["columns"]))
    return [
        f"{block['where']} scrolls sideways by {block['overflow']} px: its widest line has "
        f"{block['characters']} characters, starting {block['start']!r}"
        for block in measured["wide"]
    ]


def check_search(browser, base_url: str, query: str, expected_page: str) -> list[str]:
    """Search the book for ``query``; a problem unless ``expected_page`` is among the results."""
    context = browser.new_context()
    try:
        context.route("**/*", _cut_network)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base_url}search.html?q={quote(query)}", wait_until="load")
        page.wait_for_function(
            "() => document.querySelector('#search-results p.search-summary, .search-summary')"
        )
        links = page.eval_on_selector_all(
            "#search-results ul.search li a", "links => links.map(a => a.getAttribute('href'))"
        )
    finally:
        context.close()
    if not any(expected_page in (href or "") for href in links):
        return [f"search for {query!r} did not find {expected_page} (found {links})"]
    return []


def check_book(
    html_dir: Path,
    screenshots: Path | None = None,
    browser=None,
    executable: str = CHROMIUM,
    searches=SEARCHES,
    only: list[str] | None = None,
    source_dir: Path | None = None,
) -> list[PageReport]:
    """Check every page of the book in ``html_dir`` (or the pages in ``only``) and run the
    ``searches``; one report per page and per search. ``source_dir``, where the launch buttons'
    notebooks must be, defaults to the book's root (``html_dir``'s grandparent)."""
    html_dir = Path(html_dir)
    source_dir = html_dir.resolve().parent.parent if source_dir is None else Path(source_dir)
    pages = html_pages(html_dir)
    if browser is None:
        with chromium(executable) as own_browser:
            return check_book(
                html_dir, screenshots, own_browser, executable, searches, only, source_dir
            )
    reports = []
    with serve(html_dir) as base_url:
        for page_path in pages if only is None else only:
            target = redirect_target(html_dir, page_path)
            if target is not None:  # checked where it points
                report = PageReport(f"{page_path} -> {target}")
                if target not in pages:
                    report.problems.append(f"redirects to a missing page: {target}")
                reports.append(report)
                continue
            shot = (
                None
                if screenshots is None
                else Path(screenshots)
                / (page_path.removesuffix(".html").replace("/", "__") + ".png")
            )
            reports.append(check_page(browser, base_url, page_path, shot, source_dir))
        for query, expected in searches:
            report = PageReport(f"search.html?q={query}")
            report.problems = check_search(browser, base_url, query, expected)
            reports.append(report)
    return reports


def format_reports(reports: list[PageReport]) -> str:
    """A table of the reports; timings are left out (they vary), the problems listed."""
    lines = [f"{'page':<40} {'math':>5} {'images':>6} {'solutions':>9} {'column':>6}  result"]
    for r in reports:
        verdict = "ok" if not r.problems else f"{len(r.problems)} problem(s)"
        column = "" if r.columns is None else "{}-{}".format(*r.columns)
        lines.append(
            f"{r.page:<40} {r.math:>5} {r.images:>6} {r.solutions:>9} {column:>6}  {verdict}"
        )
        lines.extend(f"    - {problem}" for problem in r.problems)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"))
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        reports = check_book(args.html, args.screenshots, executable=args.chromium)
    except FileNotFoundError as error:
        print(f"check-pages: {error}", file=sys.stderr)
        return 2
    print(format_reports(reports))
    failed = [report for report in reports if report.problems]
    math = sum(report.math for report in reports)
    columns = [report.columns for report in reports if report.columns is not None]
    if columns:
        print(
            f"check-pages: at {VIEWPORT['width']}x{VIEWPORT['height']} a code column shows "
            f"{min(c[0] for c in columns)} (narrowest) to {max(c[1] for c in columns)} "
            "characters of code"
        )
    print(
        f"check-pages: {len(reports) - len(failed)} of {len(reports)} checks passed; "
        f"{math} math elements typeset offline; screenshots in {args.screenshots}/ "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
