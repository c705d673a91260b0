"""Events yielded by long engine work, and helpers to drive an event generator.

Every long engine call is a generator of events that takes ``cancel: threading.Event``.
The CLI drives it with a progress bar, the TUI in a thread worker that posts messages.
The last event of a successful call is :class:`Done` carrying the call's summary.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union, cast

from preceptor.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None
    note: str = ""


@dataclass(frozen=True)
class Metric:
    step: int
    name: str
    value: float


@dataclass(frozen=True)
class Log:
    level: str  # "info" | "warning" | "error"
    text: str


@dataclass(frozen=True)
class Done:
    summary: dict[str, Any] = field(default_factory=dict)


Event = Union[Progress, Metric, Log, Done]
EventStream = Iterator[Event]


def new_cancel() -> threading.Event:
    return threading.Event()


F = TypeVar("F", bound=Callable[..., Any])


def bulk_writes(fn: F) -> F:
    """For an event stream ``fn(project, ...)`` that writes in many short transactions (imports,
    generation, judges, eval): while it runs, its thread gives way before each transaction to
    writers of other processes waiting for the lock (``Store.bulk``), so a vote never queues
    behind batch after batch."""
    import functools

    @functools.wraps(fn)
    def wrapper(project: Any, *args: Any, **kwargs: Any) -> EventStream:
        with project.store.bulk():
            return (yield from fn(project, *args, **kwargs))

    return cast(F, wrapper)


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


def run(events: EventStream, on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
    """Consume an event stream, forwarding each event; return the :class:`Done` summary."""
    summary: dict[str, Any] = {}
    for event in events:
        if isinstance(event, Done):
            summary = event.summary
        if on_event is not None:
            on_event(event)
    return summary
