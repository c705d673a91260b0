"""The base of every screen: where worker failures go, and the project at hand."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.worker import Worker, WorkerState

from preceptor.errors import Cancelled

if TYPE_CHECKING:
    from preceptor.tui.app import PreceptorApp


class EngineScreen(Screen):
    """A screen whose thread workers call the engine.

    Worker state changes do not bubble in Textual, so each screen forwards failures to
    :meth:`PreceptorApp.show_error`: the one place errors are shown.
    """

    @property
    def papp(self) -> PreceptorApp:
        return self.app  # type: ignore[return-value]

    @property
    def project(self) -> Any:
        return self.papp.project

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            if not isinstance(event.worker.error, Cancelled):  # a cancelled job is not a failure
                self.papp.show_error(event.worker.error)
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
            self.app.show_error(exc)
            return None

    return wrapper
