"""Splits without leakage: a group's split is a hash of the group, so one drug never lands in two splits.

Used by every import (prompts, embedding pairs, imported judgments): the same group, seed
and ratios always give the same split, and text identity (for duplicates) ignores case and
runs of whitespace.
"""

from __future__ import annotations

import hashlib

from preceptor.errors import PreceptorError
from preceptor.text import identity

GROUP_COLUMNS = ("group", "drug", "drug_name")


def group_columns(domain: str | None = None) -> tuple[str, ...]:
    """Columns an import takes as the split group when no --group-col is given, in order:
    ``group``, ``drug``, ``drug_name``, then those the domain pack names (``[import] group_columns``)."""
    from preceptor.prompts.domains import group_columns as pack_columns

    return tuple(dict.fromkeys((*GROUP_COLUMNS, *pack_columns(domain or "pharma"))))


def group_note(used: str | None, explicit: str | None, fallback: str) -> str:
    """The import's line saying which column keeps groups in one split."""
    if used and explicit:
        return f"split groups: column {used!r} (--group-col)"
    if used:
        return f"split groups: column {used!r} (detected; pass --group-col to use another)"
    return (f"split groups: none found ({', '.join(GROUP_COLUMNS)} or the domain pack's); each distinct {fallback} "
            f"is its own group (pass --group-col COL if rows about one drug must stay together)")


def check_ratios(val_ratio: float, test_ratio: float) -> None:
    """The held-out shares of an import: each in [0, 1), together below 1."""
    for name, v in (("val-ratio", val_ratio), ("test-ratio", test_ratio)):
        if not 0.0 <= v < 1.0:
            raise PreceptorError("Invalid option", f"--{name} {v} must be in [0, 1)", "Use e.g. 0.1.")
    if val_ratio + test_ratio >= 1.0:
        raise PreceptorError("Invalid option", "--val-ratio plus --test-ratio must be below 1", "Leave room for a train split.")




def text_hash(text: str) -> str:
    return hashlib.sha256(identity(text).encode("utf-8")).hexdigest()


def hash_split(group: str, seed: int, val_ratio: float, test_ratio: float) -> str:
    """Deterministic split of a group: the same group, seed and ratios give the same split."""
    h = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < test_ratio:
        return "test"
    if u < test_ratio + val_ratio:
        return "val"
    return "train"
