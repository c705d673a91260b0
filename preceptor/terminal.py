"""Text from the data made safe for a terminal: escape sequences removed, control characters shown.

Prompts, answers and names come from files and models; printed raw, ``ESC ]0;…BEL`` retitles
the expert's terminal, ``ESC [2J`` clears it and a bare CR lets a line overwrite what was
printed before it. :func:`clean` is what the CLI prints and what the app renders for any
user text:

* ANSI/VT escape sequences (CSI ``ESC [ … final``, OSC/DCS/PM/APC/SOS strings up to BEL or
  ``ESC \\``, two-character ``ESC x``) and their 8-bit C1 forms are removed;
* any other C0 / C1 control character and DEL is made visible: C0 as its Unicode control
  picture (``␍`` for CR, ``␛`` for a stray ESC), C1 and DEL as ``\\x9b``-style text;
* bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069), which can make text
  read differently from what it holds, are shown as ``<U+202E>``;
* newlines and tabs are kept.
"""

from __future__ import annotations

import re

__all__ = ["clean"]

# one alternation, tried left to right: strings (OSC, DCS, SOS, PM, APC) first, then CSI, then ESC + one char
_SEQUENCES = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # string sequences
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI
    r"|\x1b[ -/]*[0-~]"  # nF / Fp / Fe / Fs escapes (ESC c, ESC 7, ESC (B, ...)
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    ch = m.group(0)
    code = ord(ch)
    if code < 0x20:
        return chr(0x2400 + code)
    if code < 0xA0:
        return f"\\x{code:02x}"
    return f"<U+{code:04X}>"


def clean(text: object) -> str:
    """``text`` with escape sequences removed and other control characters made visible."""
    s = "" if text is None else str(text)
    if not _CONTROLS.search(s):
        return s
    return _CONTROLS.sub(_visible, _SEQUENCES.sub("", s))
