"""A Sphinx search language for an English book with Korean pages.

Sphinx has no Korean search language. Korean attaches particles (조사) to the word they
follow, so the stock index holds 평균이, 평균은 and 평균을 as three words and a search for
평균 finds none of them. This language keeps Sphinx's English search (Porter stemmer,
stop words) and stems a word that contains Hangul by removing one trailing particle (keeping
at least two characters, so 결과 is not read as 결 + 과), in the index (Python) and in the
query (JavaScript) alike, so 평균, 평균이 and 평균을 all meet
at 평균.

Enabled in ``_config.yml`` with ``html_search_language: ko`` (the language's code) after
loading this module as a local extension. Tested in ``tests/test_korean_search.py``; the page
check (``python -m tools.check_pages``) searches the built book for a Korean word.
"""

import json

from sphinx.search.en import SearchEnglish, js_porter_stemmer

# Longest first, so that 에서는 is removed whole rather than leaving 에서.
PARTICLES = (
    "에서는", "에서도", "으로는", "으로도", "에게는", "이라는", "이라고",
    "에서", "에게", "으로", "까지", "부터", "보다", "처럼", "마다", "라는", "라고",
    "에는", "에도", "로는", "와의", "과의", "이며", "이고", "이다",
    "은", "는", "이", "가", "을", "를", "의", "에", "로", "와", "과", "도", "만",
)  # fmt: skip

HANGUL_FIRST, HANGUL_LAST = "\uac00", "\ud7a3"


def has_hangul(word: str) -> bool:
    return any(HANGUL_FIRST <= char <= HANGUL_LAST for char in word)


# At least two characters stay: a two-syllable noun whose last syllable looks like a
# particle (결과, 효과, 평가, 속도, 정의) is kept whole, and 결과가 still meets it at 결과. The
# price: a one-syllable noun keeps its particle (값이 is not found by 값).
MIN_STEM = 2


def strip_particle(word: str) -> str:
    """``word`` without one trailing Korean particle, if at least ``MIN_STEM`` characters remain."""
    for particle in PARTICLES:
        if word.endswith(particle) and len(word) - len(particle) >= MIN_STEM:
            return word[: -len(particle)]
    return word


class SearchKoreanEnglish(SearchEnglish):
    """English search, plus Korean words indexed and queried without their particle."""

    lang = "ko"
    language_name = "Korean and English"

    def stem(self, word: str) -> str:
        if not has_hangul(word):
            return super().stem(word)
        stripped = strip_particle(word)
        return stripped if has_hangul(stripped) else super().stem(stripped)


# The same rule in the browser: the query goes through this Stemmer before the index lookup.
_PORTER = js_porter_stemmer.replace("var Stemmer = function", "var PorterStemmer = function", 1)
if _PORTER == js_porter_stemmer:
    raise RuntimeError("Sphinx's Porter stemmer changed shape: update _ext/korean_search.py")
SearchKoreanEnglish.js_stemmer_code = (
    _PORTER
    + """
var KOREAN_PARTICLES = PARTICLES_JSON;
var MIN_STEM = MIN_STEM_VALUE;
var HANGUL = /[\\uac00-\\ud7a3]/;
var Stemmer = function() {
  var porter = new PorterStemmer();
  this.stemWord = function(word) {
    if (!HANGUL.test(word)) return porter.stemWord(word);
    var stripped = word;
    for (var i = 0; i < KOREAN_PARTICLES.length; i++) {
      var particle = KOREAN_PARTICLES[i];
      if (word.length - particle.length >= MIN_STEM && word.endsWith(particle)) {
        stripped = word.slice(0, word.length - particle.length);
        break;
      }
    }
    return HANGUL.test(stripped) ? stripped : porter.stemWord(stripped);
  };
};
""".replace("PARTICLES_JSON", json.dumps(PARTICLES, ensure_ascii=False))
    .replace("MIN_STEM_VALUE", str(MIN_STEM))
)


def setup(app):
    app.add_search_language(SearchKoreanEnglish)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
