"""The claim map: every claim of the seed notes, its verdict and the sections that answer it.

One file holds it, ``chapters/data/claims.yml``; two directives render it, so the preface
and the Korean page cannot disagree on a verdict or a section (the findings are written in
each language):

- ``{claim-map} en``: the preface's table, one row per claim, with the notes that make it;
- ``{claim-map} ko`` with ``:note: 000``: the Korean page's table for one note, one row per
  quoted sentence, with its English gloss;
- ``{claim-verdicts} en`` (or ``ko``): the verdict vocabulary, one line.

A claim's notes, verdict and sections are derived from its quotes, never stored twice. The
tables are written as MyST Markdown and parsed in place, so ``{ref}`` roles and
``file.ipynb#slug`` links resolve exactly as in hand-written text. The builders are plain
functions of the data (``english_table``, ``korean_table``), tested without a build in
``tests/test_claim_map.py``. Registered in ``_config.yml`` as a local extension.
"""

import posixpath
from pathlib import Path

import yaml
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

DATA = Path("chapters") / "data" / "claims.yml"  # relative to the book's root
LANGUAGES = ("en", "ko")
# A question the note asks ("what value of epsilon?") carries no claim: it does not weaken
# the verdict of a claim whose other quotes state something.
QUESTION = "answered"
HOLDS = ("holds", "holds at this scale")


class ClaimMapError(ValueError):
    """The claim file is malformed: the message names the entry and the problem."""


def load(path: Path) -> dict:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    check(data)
    return data


def check(data: dict) -> None:
    """Raise ``ClaimMapError`` for anything the tables could not render faithfully."""
    for key in ("verdicts", "notes", "sections", "claims", "quotes"):
        if key not in data:
            raise ClaimMapError(f"claims file: no '{key}' section")
    verdicts, sections = data["verdicts"], data["sections"]
    claims = {claim["id"]: claim for claim in data["claims"]}
    if len(claims) != len(data["claims"]):
        raise ClaimMapError("claims file: two claims share an id")
    for name, verdict in verdicts.items():
        _require(verdict, ("ko", "meaning"), f"verdict {name!r}")
        _require(verdict["meaning"], LANGUAGES, f"verdict {name!r}, meaning")
    for target, names in sections.items():
        _require(names, LANGUAGES, f"section {target!r}")
        if ".ipynb" not in target and any("$" in name for name in names.values()):
            raise ClaimMapError(f"section {target!r}: a {{ref}} title cannot hold math")
    used = set()
    for number, quote in enumerate(data["quotes"], 1):
        where = f"quote {number} (note {quote.get('note')})"
        _require(quote, ("note", "claim", "ko", "en", "verdict", "finding", "where"), where)
        _require(quote["finding"], LANGUAGES, f"{where}, finding")
        if quote["note"] not in data["notes"]:
            raise ClaimMapError(f"{where}: unknown note {quote['note']!r}")
        if quote["claim"] not in claims:
            raise ClaimMapError(f"{where}: unknown claim {quote['claim']!r}")
        if quote["verdict"] not in verdicts:
            raise ClaimMapError(f"{where}: verdict {quote['verdict']!r} is not one of "
                                f"{sorted(verdicts)}")
        for target in quote["where"]:
            if target not in sections:
                raise ClaimMapError(f"{where}: section {target!r} has no names in 'sections'")
        used.add(quote["claim"])
    for claim in data["claims"]:
        _require(claim, ("id", "en", "finding"), f"claim {claim['id']!r}")
        if not isinstance(claim.get("design"), list):
            raise ClaimMapError(f"claim {claim['id']!r}: 'design' must be a list (maybe [])")
        if claim["id"] not in used:
            raise ClaimMapError(f"claim {claim['id']!r}: no note quotes it")


def _require(entry: dict, keys, where: str) -> None:
    for key in keys:
        value = entry.get(key)
        if not value:
            raise ClaimMapError(f"{where}: '{key}' is missing or empty")
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and ("|" in text or "\n" in text):
                raise ClaimMapError(f"{where}: '{key}' holds a '|' or a line break, "
                                    "which would break the table")


def quotes_of(data: dict, claim_id: str) -> list:
    return [quote for quote in data["quotes"] if quote["claim"] == claim_id]


def claim_notes(data: dict, claim_id: str) -> list:
    return sorted({quote["note"] for quote in quotes_of(data, claim_id)})


def claim_verdict(data: dict, claim_id: str) -> str:
    """The verdict of a claim from those of its quotes, questions (``answered``) set aside
    unless there is nothing else: theirs when they agree; holds at this scale when each
    holds and some only at this scale; otherwise partly."""
    found = {quote["verdict"] for quote in quotes_of(data, claim_id)}
    found = found - {QUESTION} or found
    if len(found) == 1:
        return found.pop()
    return HOLDS[1] if found <= set(HOLDS) else "partly"


def claim_sections(data: dict, claim_id: str) -> list:
    """The sections its quotes cite, in order of first citation."""
    return list(dict.fromkeys(t for q in quotes_of(data, claim_id) for t in q["where"]))


def link(data: dict, target: str, language: str, chapters: str = "") -> str:
    """A target as MyST: a label as {ref}, a notebook (with or without #slug) as a link.

    ``chapters`` is the path from the page to the chapters folder ("" for a page in it)."""
    name = data["sections"][target][language]
    if ".ipynb" in target:
        return f"[{name}]({chapters}{target})"
    return f"{{ref}}`{name} <{target}>`"


def links(data: dict, targets, language: str, chapters: str = "") -> str:
    return ", ".join(link(data, target, language, chapters) for target in targets)


def table(header, rows) -> list:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def english_table(data: dict, chapters: str = "") -> list:
    """One row per claim: the claim (its notes), the verdict and finding, the sections."""
    rows = []
    for claim in data["claims"]:
        notes = ", ".join(claim_notes(data, claim["id"]))
        verdict = claim_verdict(data, claim["id"])
        rows.append([f"{claim['en']} ({notes})", f"**{verdict}**: {claim['finding']}",
                     links(data, claim_sections(data, claim["id"]), "en", chapters)])
    return table(["claim in the notes (notes)", "what the book finds", "answered in"], rows)


def korean_table(data: dict, note: str, chapters: str = "") -> list:
    """One row per quoted sentence of ``note``: the quote, its gloss, the verdict and
    finding in Korean (then in English), the sections."""
    if note not in data["notes"]:
        raise ClaimMapError(f"no note {note!r} in the claims file")
    rows = []
    for quote in data["quotes"]:
        if quote["note"] != note:
            continue
        korean = data["verdicts"][quote["verdict"]]["ko"]
        finding = f"{quote['finding']['ko']} ({quote['finding']['en']})"
        rows.append([quote["ko"], quote["en"], f"**{korean}** ({quote['verdict']}): {finding}",
                     links(data, quote["where"], "ko", chapters)])
    header = ["노트 원문 (the note)", "In English", "판정과 결과 (verdict and finding)",
              "다루는 절 (answered in)"]
    return table(header, rows)


def legend(data: dict, language: str) -> list:
    """The verdict vocabulary as a bulleted list, each word with what it means."""
    lines = []
    for english, verdict in data["verdicts"].items():
        name = f"**{verdict['ko']}** ({english})" if language == "ko" else f"**{english}**"
        lines.append(f"- {name}: {verdict['meaning'][language]}")
    return lines


class _ClaimDirective(SphinxDirective):
    required_arguments = 1

    def data(self) -> dict:
        path = Path(self.env.srcdir) / DATA
        self.env.note_dependency(str(path))  # an edit of the data rebuilds the page
        return load(path)

    def chapters(self) -> str:
        """The relative path from this page to the chapters folder."""
        path = posixpath.relpath(DATA.parts[0], posixpath.dirname(self.env.docname) or ".")
        return "" if path == "." else f"{path}/"

    def render(self, lines: list) -> list:
        container = nodes.container(classes=["claim-map"])
        self.state.nested_parse(StringList(lines, source=str(DATA)), self.content_offset,
                                container)
        return [container]

    def language(self) -> str:
        language = self.arguments[0]
        if language not in LANGUAGES:
            raise self.error(f"{self.name}: language must be one of {LANGUAGES}, "
                             f"not {language!r}")
        return language


class ClaimMap(_ClaimDirective):
    option_spec = {"note": str}

    def run(self):
        language = self.language()
        try:
            data = self.data()
            if language == "en":
                lines = english_table(data, self.chapters())
            elif "note" in self.options:
                lines = korean_table(data, self.options["note"], self.chapters())
            else:
                raise ClaimMapError("the Korean claim map needs :note: (one table per note)")
        except ClaimMapError as error:
            raise self.error(f"claim-map: {error}") from error
        return self.render(lines)


class ClaimVerdicts(_ClaimDirective):
    def run(self):
        language = self.language()
        try:
            return self.render(legend(self.data(), language))
        except ClaimMapError as error:
            raise self.error(f"claim-verdicts: {error}") from error


def setup(app):
    app.add_directive("claim-map", ClaimMap)
    app.add_directive("claim-verdicts", ClaimVerdicts)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
