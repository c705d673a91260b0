"""The one error type users see.

Every failure caused by user input or the environment is a :class:`PreceptorError`
with a short title, a message naming the file / line / field involved, and a hint that
says how to fix it. The CLI prints it to stderr and exits with code 2; the TUI shows it
in a modal. Anything else escaping the engine is a bug.
"""

from __future__ import annotations


class PreceptorError(Exception):
    """A user-facing error: ``title``, ``message`` and a ``hint`` on how to fix it."""

    def __init__(self, title: str, message: str, hint: str = "") -> None:
        self.title = title
        self.message = message
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.title}: {self.message}"
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text


class Cancelled(Exception):
    """Raised inside long engine work when its cancel event is set."""
