"""CSV cells that a spreadsheet shows as text, never runs as a formula.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by spreadsheet programs (``=HYPERLINK(…)``, ``@SUM(…)``, ``-2+3``). Every CSV the
product writes goes through :func:`cell` (or :class:`DictWriter`): such text gets a leading
``'``, which the spreadsheet hides and which keeps the text as text. Numbers (ints, floats,
a negative rating, a difference) stay numbers; so do strings that are plain numbers such as
``-1`` or ``-0.25``; booleans and ``None`` are left as they are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

__all__ = ["DictWriter", "cell", "row", "writer"]

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def cell(value: Any) -> Any:
    """``value`` as a CSV cell that cannot run as a formula (non-strings unchanged)."""
    if not isinstance(value, str) or not value or not value.startswith(_TRIGGERS):
        return value
    if _NUMBER.fullmatch(value):
        return value
    return "'" + value


def row(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: cell(v) for k, v in values.items()}


class DictWriter(csv.DictWriter):
    """``csv.DictWriter`` whose cells (and header) pass through :func:`cell`."""

    def writeheader(self) -> Any:
        return self.writer.writerow([cell(k) for k in self.fieldnames])

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow(row(rowdict))

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for r in rowdicts:
            self.writerow(r)


def writer(fh: IO[str], **kwargs: Any) -> Any:
    """A ``csv.writer`` whose rows pass through :func:`cell`."""
    base = csv.writer(fh, **kwargs)

    class _Safe:
        def writerow(self, values: Iterable[Any]) -> Any:
            return base.writerow([cell(v) for v in values])

        def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
            for r in rows:
                self.writerow(r)

    return _Safe()
