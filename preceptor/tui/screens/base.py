"""The base of every screen: where worker failures go, and the project at hand."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from preceptor.errors import Cancelled
from preceptor.project import Project
from preceptor.tui.context import ShowError, UiContext


class EngineScreen(Screen):
    """A screen whose thread workers call the engine.

    Worker state changes do not bubble in Textual, so each screen forwards failures to the
    app as a :class:`ShowError` message: the app's error modal is the one place errors are shown.
    """

    @property
    def ctx(self) -> UiContext:
        return self.app.ctx  # type: ignore[attr-defined, no-any-return]

    @property
    def project(self) -> Project:
        return self.ctx.project

    def open_project(self) -> Project:
        return self.ctx.open_project()

    def show_error(self, exc: BaseException) -> None:
        self.app.post_message(ShowError(exc))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            if not isinstance(event.worker.error, Cancelled):  # a cancelled job is not a failure
                self.show_error(event.worker.error)
            self.worker_failed(event.worker)

    def worker_failed(self, worker: Worker) -> None:
        """Hook: a screen resets its busy state after a worker failed."""


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an action or callback on the UI thread; an engine error becomes the error modal."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the app must never die on an engine error
            self.app.post_message(ShowError(exc))
            return None

    return wrapper
