"""A word-level difference between answers A and B (``d`` on the Judge screen).

Nearly identical answers are common after SFT/DPO; this marks the words that differ.
Words are whitespace-separated tokens; text without spaces (Thai) is segmented into words
with pythainlp's ``newmm`` when it is installed, so a change is shown word by word rather
than as one run of characters. Computed off the key path (the preload worker).
"""

from __future__ import annotations

import difflib
import functools
import re

__all__ = ["word_diff", "tokens", "has_thai"]

Span = tuple[str, bool]  # (text, differs)
_THAI = re.compile(r"[\u0E00-\u0E7F]")
_TOKEN = re.compile(r"\s+|[^\s]+")


def tokens(text: str) -> list[str]:
    """Words and the whitespace between them (joined, they give ``text`` back); Thai runs are
    cut into words with pythainlp's ``newmm``. Cached: the judge screen's preload worker
    computes them (for the difference view), so wrapping a Thai answer on screen costs nothing."""
    return list(_tokens(text or ""))


@functools.lru_cache(maxsize=256)
def _tokens(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for tok in _TOKEN.findall(text or ""):
        if not tok.isspace() and _THAI.search(tok) and len(tok) > 1:
            try:
                from pythainlp.tokenize import word_tokenize
            except ImportError:  # pragma: no cover - pythainlp is a dependency
                out.append(tok)
                continue
            out.extend(word_tokenize(tok, engine="newmm", keep_whitespace=True))
        else:
            out.append(tok)
    return tuple(out)


def has_thai(text: str) -> bool:
    return bool(_THAI.search(text or ""))


def word_diff(a: str, b: str) -> tuple[list[Span], list[Span]]:
    """Spans of A and of B, each marked as the same in both or different."""
    ta, tb = tokens(a), tokens(b)
    words_a = [t for t in ta if not t.isspace()]
    words_b = [t for t in tb if not t.isspace()]
    same_a: set[int] = set()
    same_b: set[int] = set()
    matcher = difflib.SequenceMatcher(None, words_a, words_b, autojunk=False)
    for block in matcher.get_matching_blocks():
        same_a.update(range(block.a, block.a + block.size))
        same_b.update(range(block.b, block.b + block.size))

    def spans(toks: list[str], same: set[int]) -> list[Span]:
        out: list[Span] = []
        i = 0
        for t in toks:
            if t.isspace():
                out.append((t, False))
            else:
                out.append((t, i not in same))
                i += 1
        return out

    return spans(ta, same_a), spans(tb, same_b)
