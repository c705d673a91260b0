"""Language routing of the text metrics: the script of each item, and how each script is cut into words.

The language of an item is decided by a Unicode-script rule on its letters — nothing is
fetched and no model is run:

* ``th`` — Thai letters (U+0E00–U+0E7F) are the most frequent;
* ``ko`` — Hangul (syllables and jamo);
* ``en`` — Latin letters (any language written in the Latin script; the name is kept
  because settings use it, e.g. ``[eval] bertscore_encoders``);
* ``other`` — any other script (Cyrillic, Arabic, CJK ideographs, kana...).

Text with no letters counts as ``en``. A (prediction, reference) pair takes the
reference's script, unless the reference is Latin and the prediction is not (a Thai
answer to an English reference is scored as Thai, so a Latin-only tokenizer never drops it).

Words per script, for ROUGE-L and BLEU:

* Thai — dictionary segmentation with pythainlp's ``newmm`` engine (Thai has no spaces
  between words); runs of Latin letters and digits inside Thai text stay one word
  (``CYP3A4``);
* Korean — morphemes from kiwipiepy (Kiwi); punctuation is dropped and letters/digits that
  Kiwi splits but that touch in the text are joined again (``CYP3A4``);
* Latin — the metric's usual English tokenizer (see the metric);
* other — Unicode words, one token per character for CJK ideographs and kana.

Every figure names its route: :func:`describe` gives the tokenizer behind a language, and
the evaluation stores it beside each value. pythainlp and kiwipiepy are imported when a
Thai or Korean text is first tokenized; the Kiwi model is loaded once per process.
"""

from __future__ import annotations

import functools
import re
from importlib.metadata import PackageNotFoundError, version

LANGS = ("en", "th", "ko", "other")
LANG_NAMES = {"en": "Latin script", "th": "Thai", "ko": "Korean", "other": "other scripts"}

_THAI = (0x0E00, 0x0E7F)
_THAI_RUN = re.compile(r"[\u0E00-\u0E7F]+|[^\W_\u0E00-\u0E7F]+")
_WORD = re.compile(r"[^\W_]+")
# Kiwi tags of punctuation and symbols (S* other than foreign letters SL, hanja SH, numbers SN)
_KIWI_DROP = ("SF", "SP", "SS", "SSO", "SSC", "SE", "SO", "SW", "SB")
_KIWI_JOIN = ("SL", "SN", "SH")


def _is_hangul(o: int) -> bool:
    return 0xAC00 <= o <= 0xD7A3 or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F or 0xA960 <= o <= 0xA97F


@functools.lru_cache(maxsize=65_536)
def script_of(text: str) -> str:
    """The script family of ``text``'s letters: ``en`` (Latin) | ``th`` | ``ko`` | ``other``."""
    counts = {"en": 0, "th": 0, "ko": 0, "other": 0}
    for ch in text or "":
        o = ord(ch)
        if _THAI[0] <= o <= _THAI[1]:
            counts["th"] += 1
        elif _is_hangul(o):
            counts["ko"] += 1
        elif ch.isalpha():
            if o < 0x0250 or 0x1E00 <= o <= 0x1EFF:
                counts["en"] += 1
            else:
                counts["other"] += 1
    best = max(counts.items(), key=lambda kv: kv[1])
    return best[0] if best[1] > 0 else "en"


def pair_language(prediction: str | None, reference: str | None) -> str:
    """The route of a (prediction, reference) pair: the reference's script, unless that is
    Latin (or empty) and the prediction's is not."""
    ref = reference or ""
    lang = script_of(ref) if ref.strip() else script_of(prediction or "")
    if lang == "en":
        other = script_of(prediction or "")
        if other != "en":
            return other
    return lang


@functools.lru_cache(maxsize=65_536)
def dense_script(text: str) -> bool:
    """True when most letters are Thai or CJK: scripts written without spaces between words."""
    dense = letters = 0
    for ch in text or "":
        if ch.isalpha():
            letters += 1
            o = ord(ch)
            if 0x0E00 <= o <= 0x0E7F or 0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF:
                dense += 1
    return letters > 0 and dense * 2 > letters


def _cjk(word: str) -> bool:
    return any(0x3040 <= ord(c) <= 0x30FF or 0x3400 <= ord(c) <= 0x9FFF or 0xF900 <= ord(c) <= 0xFAFF for c in word)


# -- tokenizers ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=65_536)
def thai_words(text: str) -> tuple[str, ...]:
    """Thai text as words: pythainlp ``newmm`` on Thai runs, Latin/digit runs as whole words (case-folded)."""
    from pythainlp.tokenize import word_tokenize

    out: list[str] = []
    for m in _THAI_RUN.finditer(text or ""):
        run = m.group(0)
        if _THAI[0] <= ord(run[0]) <= _THAI[1]:
            out.extend(w for w in word_tokenize(run, engine="newmm", keep_whitespace=False) if w.strip())
        else:
            out.append(run.casefold())
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _kiwi():  # type: ignore[no-untyped-def]
    from kiwipiepy import Kiwi

    return Kiwi()


@functools.lru_cache(maxsize=65_536)
def korean_morphemes(text: str) -> tuple[str, ...]:
    """Korean text as Kiwi morphemes (punctuation dropped; touching letters/digits joined, case-folded)."""
    out: list[str] = []
    end = -1
    joinable = False
    for tok in _kiwi().tokenize(text or ""):
        if tok.tag in _KIWI_DROP:
            joinable = False
            continue
        form = tok.form.casefold()
        join = tok.tag in _KIWI_JOIN
        if join and joinable and tok.start == end and out:
            out[-1] += form
        else:
            out.append(form)
        joinable = join
        end = tok.start + tok.len
    return tuple(out)


@functools.lru_cache(maxsize=65_536)
def unicode_words(text: str) -> tuple[str, ...]:
    """Unicode letters/digits as words (case-folded), one token per character in CJK runs."""
    out: list[str] = []
    for w in _WORD.findall((text or "").casefold()):
        out.extend(list(w) if _cjk(w) or dense_script(w) else [w])
    return tuple(out)


def words(text: str, lang: str | None = None) -> list[str]:
    """``text`` cut into words by the rule of its own script (or of ``lang`` when given)."""
    lang = lang or script_of(text or "")
    if lang == "th":
        return list(thai_words(text or ""))
    if lang == "ko":
        return list(korean_morphemes(text or ""))
    return list(unicode_words(text or ""))


class ScriptTokenizer:
    """A rouge-score tokenizer that cuts each text by the rule of its own script."""

    def tokenize(self, text: str) -> list[str]:
        return words(text)


# -- provenance ---------------------------------------------------------------------------

def _v(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:  # pragma: no cover
        return "?"


@functools.cache
def segmenter(lang: str) -> str:
    """The word segmenter used for ``lang`` by ROUGE-L and BLEU (outside the Latin route)."""
    if lang == "th":
        return f"pythainlp {_v('pythainlp')} newmm words"
    if lang == "ko":
        return f"kiwipiepy {_v('kiwipiepy')} morphemes"
    return "Unicode words (CJK by character)"


def describe(metric: str, lang: str) -> str:
    """The tokenizer behind a text metric's figure for ``lang`` (BERTScore describes itself)."""
    if metric == "rougeL":
        return f"rouge-score {_v('rouge-score')} tokenizer + Porter stemmer" if lang == "en" else segmenter(lang)
    if metric == "bleu":
        if lang == "en":
            return f"sacrebleu {_v('sacrebleu')} 13a"
        if lang == "other":
            return f"sacrebleu {_v('sacrebleu')} intl (char for CJK)"
        return segmenter(lang)
    if metric == "chrf":
        return f"sacrebleu {_v('sacrebleu')} chrF++ (characters, no segmentation)"
    return ""
