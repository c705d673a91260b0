"""An answer pane: rendered Markdown in its own scroll area.

``Static(rich.markdown.Markdown(text))`` is used rather than Textual's ``Markdown``
widget: swapping two 220-word panes measured ~38 ms with it against ~680 ms with the
widget on the reference machine.
"""

from __future__ import annotations

from typing import Any

from rich.markdown import Markdown as RichMarkdown
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from preceptor.terminal import clean


class WordWrapped:
    """Text wrapped at word boundaries, where the words may have no spaces between them (Thai:
    pythainlp's ``newmm`` words, computed and cached by the judge's preload worker), instead of
    the terminal cutting a line in the middle of a word."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.cells import cell_len

        from preceptor.engine.judging.diff import tokens

        width = max(8, int(options.max_width))
        for para in self.text.split("\n"):
            line, used = "", 0
            for tok in tokens(para):
                n = cell_len(tok)
                if used + n > width and used > 0:
                    yield Text(line.rstrip())
                    line, used = "", 0
                    if tok.isspace():
                        continue
                line += tok
                used += n
            yield Text(line.rstrip())


class AnswerPane(VerticalScroll, can_focus=False):
    """One side of a comparison (or one system's answer), scrollable on its own."""

    def __init__(self, label: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.label = label
        self.border_title = label
        self._body = Static("", classes="answer-body")

    def compose(self) -> ComposeResult:
        yield self._body

    def update_text(self, text: Text, *, subtitle: str = "") -> None:
        """Show prepared rich Text (e.g. the word-difference view), keeping the scroll position."""
        self._body.update(text)
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle

    def show(self, text: str | None, *, markdown: bool = True, subtitle: str = "") -> None:
        if text is None:
            self._body.update(Text("(no answer)", style="italic"))
        else:
            from preceptor.engine.judging.diff import has_thai

            text = clean(text)
            if has_thai(text):  # no spaces between Thai words: wrap at the words pythainlp finds
                self._body.update(WordWrapped(text))
            else:
                self._body.update(RichMarkdown(text) if markdown else Text(text))
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
        if self.scroll_y or self.scroll_x:
            self.scroll_home(animate=False)
