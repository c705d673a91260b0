"""What the screens share: the project, who is judging, the run to follow; and the messages they post.

The app owns one :class:`UiContext` (``app.ctx``). Screens read it and post messages to the
app (:class:`ShowError`) instead of importing the app module, so nothing under
``screens/`` depends on ``app.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from preceptor.project import Project


@dataclass
class UiContext:
    """The app's shared state (read and written on the UI thread)."""

    project: Project  # the UI thread's connection; workers open their own with open_project()
    expert: str | None = None  # who is judging (asked on the Judge screen when None)
    expert_locked: bool = False  # served with an expert's token: the expert cannot be switched
    watch_run: int | None = None  # a run the Train screen should follow when it opens
    pair_filter: Any = None  # a judging.pairs.PairFilter for the Judge screen (None: every pair)
    judge_ready_hook: Callable[[], Any] | None = None  # benchmarks: called once the first pair is shown

    def open_project(self) -> Project:
        """A fresh connection to the same project, for use inside one thread worker."""
        return Project.open(self.project.root)


class ShowError(Message):
    """Show a failure in the app's error modal (the one place errors are shown)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
