"""The relative links of README.md and CONTRIBUTING.md point at files that exist.

A link or image whose target is a web address (http, https), mailto: or an anchor on the
same page (#...) is not checked; every other target is a path relative to the Markdown
file, and a ``#fragment`` on a link to a Markdown file must name one of its headings.
Links inside code (fenced blocks and `inline code`) are examples, not links.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", "CONTRIBUTING.md"]

FENCED_CODE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), the target optionally in <...> and followed by a title
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target, a reference definition on a line of its own
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
NOT_A_FILE = ("http://", "https://", "mailto:", "#")


def heading_anchors(markdown):
    """GitHub's anchors of a Markdown text's headings: lower case, punctuation dropped,
    spaces as hyphens ("## Running the course" -> "running-the-course")."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCED_CODE.sub("", markdown),
                          re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def link_targets(markdown):
    """Every link and image target of a Markdown text, outside code."""
    text = INLINE_CODE.sub("", FENCED_CODE.sub("", markdown))
    targets = INLINE_LINK.findall(text) + REFERENCE_DEFINITION.findall(text)
    return [target.strip("<>") for target in targets]


def broken_links(path):
    """The relative link targets of the Markdown file at ``path`` that do not resolve."""
    path = Path(path)
    broken = []
    for target in link_targets(path.read_text(encoding="utf-8")):
        if target.lower().startswith(NOT_A_FILE):
            continue
        file_part, _, fragment = target.split("?")[0].partition("#")
        linked = (path.parent / file_part).resolve()
        if not linked.exists():
            broken.append(target)
        elif fragment and linked.suffix == ".md" and \
                fragment not in heading_anchors(linked.read_text(encoding="utf-8")):
            broken.append(target)
    return broken


@pytest.mark.parametrize("document", DOCUMENTS)
def test_relative_links_exist(document):
    path = ROOT / document
    assert link_targets(path.read_text(encoding="utf-8")), f"{document} has no links to check"
    assert broken_links(path) == [], f"{document} links to missing files"


def test_a_broken_link_and_image_are_reported(tmp_path):
    (tmp_path / "present.md").write_text("# Present\n\n## A section\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "page.md").write_text(
        "A [good link](present.md), a [folder](folder/), a [section](present.md#a-section),\n"
        "a [titled link](present.md \"its title\") and [web](https://example.org/missing.md),\n"
        "[mail](mailto:someone@example.org), [here](#nowhere-checked).\n\n"
        "A [broken link](missing.md) and a ![broken image](figures/missing.png),\n"
        "a [wrong section](present.md#no-such-section).\n\n"
        "[ref]: also_missing.txt\n\n"
        "`[not a link](in_code.md)`\n\n"
        "```\n[not a link either](in_a_block.md)\n```\n")
    assert broken_links(tmp_path / "page.md") == [
        "missing.md", "figures/missing.png", "present.md#no-such-section", "also_missing.txt"]
