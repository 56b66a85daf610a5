"""The claim map (chapters/data/claims.yml, rendered by _ext/claim_map.py): every section it
cites exists, every verdict is in its vocabulary, every claim of the design's coverage table
is in it, its verdicts agree with chapter 6's computed ones (and cite every row of them), and
both pages render it from the file. No book build: the tables are checked as the Markdown the
directives parse."""

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin
from myst_parser.mdit_to_docutils.base import default_slugify

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
sys.path.insert(0, str(ROOT / "_ext"))
import claim_map  # noqa: E402  (a Sphinx local extension, not a package)

ALL = ["000", "001", "002", "003", "004"]
# The coverage table of the design contract (DESIGN.md, "Coverage of the seed notes"): each
# row must be answered somewhere in the book, for each of its seeds. Copied, since the
# design document does not ship with the repository.
DESIGN_COVERAGE = [
    ("normalize z, not a; the a-vs-z debate", ["000", "001", "004"]),
    ("mu, sigma^2, z_norm, gamma/beta: the algorithm", ALL),
    ("gamma = sqrt(var + eps), beta = mu gives the identity", ["000", "002", "004"]),
    ("why not fix mean 0, variance 1 (sigmoid linear region, nonlinearity lost)",
     ["000", "003"]),
    ("gamma/beta updated by GD, momentum, RMSProp, Adam", ["000"]),
    ("the bias b becomes unnecessary", ["000", "001", "004"]),
    ("mini-batch statistics", ALL),
    ("later layers less affected by earlier weights / covariate shift", ["000", "001", "003"]),
    ("regularization through mini-batch noise; with dropout", ["000", "001", "002", "003"]),
    ("faster training, higher learning rates, less dependence on initialization",
     ["001", "002", "003"]),
    ("easier hyperparameter search, robustness", ["001", "004"]),
    ("input normalization and gradient descent on contours", ["001", "002"]),
    ("whitening vs BN", ["002"]),
    ("backward pass through gamma and beta by the chain rule", ["002"]),
    ("CNN: statistics over batch x H x W, one gamma/beta per feature map", ["002"]),
    ("test time: exponentially weighted averages; mean of means and m/(m-1)",
     ["000", "001", "002", "004"]),
    ("too few test samples to estimate statistics", ["004"]),
    ("sigmoid saturation and vanishing gradients; ReLU half zero", ["003"]),
    ("no BN on the output layer", ["004"]),
    ("what value of epsilon?", ["002"]),
    ("BN vs no BN experiment (training loss converges faster)", ["002"]),
    ("tf.nn.batch_normalization (framework APIs)", ["001"]),
    ('"normalized values fall in [-1, 1]" (not true: unit variance)', ["003"]),
]
# Chapter 6's closing table says "holds", "partly", "does not hold" or "not decided here";
# the claim map's words that each allows.
CHAPTER_6_VERDICTS = {
    "holds": {"holds", "holds at this scale"},
    "partly": {"partly"},
    "does not hold": {"does not hold"},
    "not decided here": {"not decided here"},
}
PAGES = {"en": CHAPTERS / "intro.md", "ko": CHAPTERS / "source_notes_ko.md"}


@pytest.fixture(scope="module")
def data():
    return claim_map.load(ROOT / claim_map.DATA)


def markdown_cells(notebook: Path):
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"]


def labels() -> set:
    """Every `(label)=` target in the chapters' Markdown cells."""
    found = set()
    for notebook in CHAPTERS.glob("*.ipynb"):
        for source in markdown_cells(notebook):
            found |= set(re.findall(r"^\((\S+)\)=\s*$", source, re.M))
    return found


def heading_slugs(notebook: Path) -> set:
    """The anchors MyST gives the notebook's headings down to level 3
    (``myst_heading_anchors: 3``): its slug rule, on the text and code of the heading,
    without its math, numbered -1, -2 where two headings share one."""
    parser = MarkdownIt("commonmark").use(dollarmath_plugin)
    slugs = set()
    for source in markdown_cells(notebook):
        tokens = parser.parse(source)
        for opening, inline in zip(tokens, tokens[1:]):
            if opening.type != "heading_open" or opening.tag not in ("h1", "h2", "h3"):
                continue
            title = "".join(child.content for child in inline.children
                            if child.type in ("text", "code_inline"))
            slug, number = default_slugify(title), 1
            while slug in slugs:
                slug, number = f"{default_slugify(title)}-{number}", number + 1
            slugs.add(slug)
    return slugs


def test_heading_slugs_follow_myst():
    slugs = heading_slugs(CHAPTERS / "02_bn_algorithm.ipynb")
    assert "-and--can-undo-the-normalization" in slugs  # "$\gamma$ and $\beta$ can undo..."
    assert "the-same-numbers-from-bn_lib-and-from-pytorch" in slugs  # code is kept


def test_every_section_exists(data):
    known = labels()
    for target in data["sections"]:
        file, _, slug = target.partition("#")
        if ".ipynb" not in file:
            assert target in known, f"{target}: no `({target})=` target in chapters/*.ipynb"
            continue
        assert (CHAPTERS / file).exists(), f"{target}: no chapters/{file}"
        if slug:
            assert slug in heading_slugs(CHAPTERS / file), f"{target}: no such heading"


def test_every_section_is_cited(data):
    cited = {target for quote in data["quotes"] for target in quote["where"]}
    assert set(data["sections"]) == cited, "a section nobody cites, or one without names"


def test_verdicts_are_the_vocabulary(data):
    used = {quote["verdict"] for quote in data["quotes"]}
    assert used <= set(data["verdicts"])
    assert used == set(data["verdicts"]), "a verdict in the vocabulary that no quote uses"
    for claim in data["claims"]:
        assert claim_map.claim_verdict(data, claim["id"]) in data["verdicts"]


def test_every_claim_of_the_design_is_answered_for_each_of_its_seeds(data):
    rows = dict(DESIGN_COVERAGE)
    for claim in data["claims"]:
        for row in claim["design"]:
            assert row in rows, f"claim {claim['id']!r}: {row!r} is not a design row"
    for row, seeds in DESIGN_COVERAGE:
        claims = [claim["id"] for claim in data["claims"] if row in claim["design"]]
        assert claims, f"design row {row!r}: no claim answers it"
        notes = {note for claim in claims for note in claim_map.claim_notes(data, claim)}
        assert set(seeds) <= notes, f"{row!r}: no quote from {sorted(set(seeds) - notes)}"


def chapter_6_verdicts() -> dict:
    """Chapter 6's closing table, read from the notebook's stored output: claim -> verdict."""
    notebook = json.loads((CHAPTERS / "06_experiments.ipynb").read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("data", {}).get("text/markdown", ""))
            if text.startswith("| claim (seeds) |"):
                rows = [line.strip("| ").split(" | ") for line in text.splitlines()[2:]]
                return {row[0]: row[-1] for row in rows}
    raise AssertionError("chapter 6 has no stored verdict table starting '| claim (seeds) |'")


def test_verdicts_agree_with_chapter_6(data):
    measured = chapter_6_verdicts()
    for quote in data["quotes"]:
        if "verdict_row" not in quote:
            continue
        row = quote["verdict_row"]
        assert row in measured, f"chapter 6's verdict table has no row {row!r}"
        allowed = CHAPTER_6_VERDICTS.get(measured[row], set())
        assert quote["verdict"] in allowed, (
            f"note {quote['note']}, {quote['en']!r}: {quote['verdict']!r} here, "
            f"{measured[row]!r} in chapter 6")
    cited = {quote["verdict_row"] for quote in data["quotes"] if "verdict_row" in quote}
    of_the_notes = {row for row in measured if not row.startswith("(not in the notes)")}
    assert cited == of_the_notes, f"rows no quote cites: {sorted(of_the_notes - cited)}"


def targets(lines) -> set:
    """The sections a rendered table links: {ref} labels and notebook links."""
    text = "\n".join(lines)
    return set(re.findall(r"<([\w-]+)>`", text)) | set(re.findall(r"\]\(([^)]+)\)", text))


def test_english_table_rows(data):
    lines = claim_map.english_table(data)
    assert lines[0].startswith("| claim in the notes (notes) |")
    assert len(lines) == 2 + len(data["claims"])
    for line, claim in zip(lines[2:], data["claims"]):
        cells = line.strip("| ").split(" | ")
        notes = ", ".join(claim_map.claim_notes(data, claim["id"]))
        assert len(cells) == 3 and cells[0] == f"{claim['en']} ({notes})"
        assert cells[1].startswith(f"**{claim_map.claim_verdict(data, claim['id'])}**: ")
    few = next(line for line in lines if "a few parameters" in line)
    assert "(002) | **corrected**: " in few
    assert "(01_covariate_shift.ipynb#internal-covariate-shift-measured)" in few
    # dropout, weight decay and the distortion earn three verdicts, so the claim is partly
    decay = next(line for line in lines if "weight decay and photometric" in line)
    assert "**partly**" in decay and "<sec-06-decay>`" in decay and "<sec-06-noise>`" in decay


def test_korean_tables_rows(data):
    rows = 0
    for note in data["notes"]:
        lines = claim_map.korean_table(data, note)
        quotes = [quote for quote in data["quotes"] if quote["note"] == note]
        assert len(lines) == 2 + len(quotes)
        for line, quote in zip(lines[2:], quotes):
            assert line.strip("| ").split(" | ")[0] == quote["ko"]
        rows += len(quotes)
    assert rows == len(data["quotes"])
    gaussian = next(line for line in claim_map.korean_table(data, "003") if "가우시안" in line)
    assert "<sec-02-gaussian>`" in gaussian and "sec-02-range" not in gaussian
    assert claim_map.korean_table(data, "000")[2].endswith(
        "{ref}`2장: z와 a 중 무엇을 정규화하나 <sec-02-z-vs-a>` |")
    # seed 002's "dropout, weight decay and distortion may be dropped": one row for each
    unnecessary = [re.search(r"\| \*\*([^*]+)\*\* \(", line).group(1)
                   for line in claim_map.korean_table(data, "002") if "안 써도 괜찮다" in line]
    assert unnecessary == ["이 규모에서 맞음", "맞지 않음", "판단 보류"]


def test_korean_page_cites_every_section_of_the_english_map(data):
    english = targets(claim_map.english_table(data))
    korean = set().union(*(targets(claim_map.korean_table(data, n)) for n in data["notes"]))
    assert english and english <= korean


def test_links_from_another_folder(data):
    line = claim_map.english_table(data, chapters="chapters/")[2]
    assert "](chapters/01_covariate_shift.ipynb#" in line


def test_both_pages_render_the_map_from_the_file(data):
    english = PAGES["en"].read_text(encoding="utf-8")
    korean = PAGES["ko"].read_text(encoding="utf-8")
    assert english.count("```{claim-map} en\n```") == 1
    assert english.count("```{claim-verdicts} en\n```") == 1
    notes = re.findall(r"```\{claim-map\} ko\n:note: (\d+)\n```", korean)
    assert notes == data["notes"], "the Korean page needs one table per note, in order"
    assert korean.count("```{claim-verdicts} ko\n```") == 1
    for page in (english, korean):  # no hand-written copy of a table left beside them
        assert "| claim in the notes" not in page and "| 노트 원문" not in page


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: d["quotes"][0].update(verdict="mostly"), "verdict 'mostly' is not one of"),
    (lambda d: d["quotes"][0].update(where=["sec-99-nowhere"]), "has no names in 'sections'"),
    (lambda d: d["quotes"][0].update(claim="no-such-claim"), "unknown claim"),
    (lambda d: d["quotes"][0].update(note="005"), "unknown note"),
    (lambda d: d["quotes"][0]["finding"].update(en="a | b"), "'|'"),
    (lambda d: d["quotes"][0]["finding"].pop("ko"), "'ko' is missing"),
    (lambda d: d["claims"].append(dict(d["claims"][0], id="orphan")), "no note quotes it"),
    (lambda d: d["sections"].update({"sec-02-bias": {"en": "x", "ko": "$b$"}}), "math"),
])
def test_bad_data_is_named(damage, message):
    data = yaml.safe_load((ROOT / claim_map.DATA).read_text(encoding="utf-8"))
    damage(data)
    with pytest.raises(claim_map.ClaimMapError, match=re.escape(message)):
        claim_map.check(data)


def test_claim_verdict_rule():
    def data(*verdicts):
        quotes = [{"claim": "c", "verdict": verdict} for verdict in verdicts]
        return {"quotes": quotes}

    assert claim_map.claim_verdict(data("holds", "holds"), "c") == "holds"
    assert claim_map.claim_verdict(data("holds", "holds at this scale"), "c") == (
        "holds at this scale")
    assert claim_map.claim_verdict(data("corrected", "answered"), "c") == "corrected"
    assert claim_map.claim_verdict(data("answered"), "c") == "answered"
    assert claim_map.claim_verdict(data("holds", "corrected"), "c") == "partly"
