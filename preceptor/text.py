"""The one text normaliser: what "the same text" means everywhere in the product.

:func:`normalise` is Unicode NFC (a Korean syllable typed as decomposed jamo, or a Thai
vowel sign stored in another order, is the same text), runs of whitespace as one space,
ends stripped. :func:`identity` is the same text case-folded: duplicates on import, the
true positive of a retrieval query, an expert's name. Both are cheap (the NFC pass is skipped
when the text is already NFC, which is almost always).
"""

from __future__ import annotations

import unicodedata


def normalise(text: str) -> str:
    """NFC, runs of whitespace as one space, ends stripped (``str.split()`` splits on exactly
    the characters ``\\s`` matches in a str pattern, and is several times faster)."""
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def identity(text: str) -> str:
    """Whitespace-, case- and composition-insensitive identity of a text."""
    return normalise(text).casefold()
