"""The book's search language (_ext/korean_search.py): Korean words are indexed and queried
without their trailing particle, so 평균 finds 평균이; English search is Sphinx's own."""

import json
import re
import sys
from pathlib import Path

import pytest
import tiny_book
from sphinx.search.en import SearchEnglish

from tools import check_pages

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
import korean_search  # noqa: E402  (a Sphinx local extension, not a package)

CASES = [
    ("평균이", "평균"),
    ("평균을", "평균"),
    ("평균", "평균"),
    ("정규화는", "정규화"),
    ("배치에서는", "배치"),
    ("미니배치로", "미니배치"),
    ("값", "값"),  # one syllable: nothing to strip
    ("결과", "결과"),  # ends in a particle-like syllable, but 결 alone is too short a stem
    ("결과가", "결과"),
    ("결과이며", "결과"),
    ("효과는", "효과"),
    ("평가", "평가"),
    ("속도", "속도"),
    ("값이", "값이"),  # the price of the two-character rule (MIN_STEM)
    ("이", "이"),  # a particle alone stays a word
    ("BN의", "bn"),  # the rest is English: Porter-stemmed, lower case
    ("normalization", "normal"),
]


@pytest.fixture(scope="module")
def language():
    return korean_search.SearchKoreanEnglish({})


@pytest.mark.parametrize(("word", "stem"), CASES)
def test_stem(language, word, stem):
    assert language.stem(word) == stem


def test_english_words_stem_as_in_sphinx(language):
    english = SearchEnglish({})
    for word in ["running", "statistics", "Normalized", "variance", "the"]:
        assert language.stem(word) == english.stem(word)


def test_particles_longest_first():
    for i, longer in enumerate(korean_search.PARTICLES):
        for shorter in korean_search.PARTICLES[i + 1 :]:
            assert not (shorter.endswith(longer) and len(shorter) > len(longer))
        assert korean_search.has_hangul(longer)


def test_built_index_holds_the_word_without_its_particle():
    index_js = (tiny_book.build() / "searchindex.js").read_text(encoding="utf-8")
    index = json.loads(re.search(r"Search\.setIndex\((.*)\)", index_js, re.S).group(1))
    assert "평균" in index["terms"] and "평균이" not in index["terms"]
    assert "분산" in index["terms"] and "분산은" not in index["terms"]
    language_data = (tiny_book.build() / "_static" / "language_data.js").read_text("utf-8")
    assert "KOREAN_PARTICLES" in language_data  # the query side uses the same rule


@pytest.mark.skipif(not Path(check_pages.CHROMIUM).exists(), reason="no Chromium")
def test_browser_stemmer_agrees_with_the_index(language):
    words = [word for word, _ in CASES] + ["분산은", "running", "공변량의"]
    with check_pages.chromium() as browser:
        page = browser.new_page()
        page.add_script_tag(content=korean_search.SearchKoreanEnglish.js_stemmer_code)
        stems = page.evaluate(
            "(words) => { const s = new Stemmer(); return words.map((w) => s.stemWord(w)); }",
            [word.lower() for word in words],  # Sphinx's search lower-cases the query first
        )
    assert stems == [language.stem(word) for word in words]
