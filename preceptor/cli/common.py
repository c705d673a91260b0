"""Shared pieces of the CLI: the --project option, opening the project, driving events."""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click

from preceptor.engine.events import Done, EventStream, Log, Metric, Progress
from preceptor.errors import Cancelled


def project_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--project DIR`` on a subcommand (also accepted before the subcommand)."""

    @click.option("--project", "project_dir", type=click.Path(file_okay=False), default=None,
                  help="Project folder (default: the current folder, or $PRECEPTOR_PROJECT).")
    @functools.wraps(fn)
    def wrapper(*args: Any, project_dir: str | None = None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        root = project_dir or (ctx.find_root().obj or {}).get("project_dir")
        return fn(*args, project_dir=root, **kwargs)

    return wrapper


def open_project(project_dir: str | None, create: bool = False):
    from preceptor.project import Project

    return Project.open(project_dir, create=create)


class ProgressPrinter:
    """Renders engine events on stderr: a one-line bar on a terminal, sparse lines otherwise."""

    def __init__(self, label: str = "", quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        if isinstance(event, Progress):
            t = time.monotonic()
            final = event.total is not None and event.done >= event.total
            if not final and t - self._last < (0.1 if self.tty else 5.0):
                return
            self._last = t
            if event.total:
                width = 28
                filled = int(width * min(event.done, event.total) / event.total)
                bar = f"[{'#' * filled}{'.' * (width - filled)}] {event.done}/{event.total}"
            else:
                bar = f"{event.done}"
            line = f"{self.label} {bar} {event.note}  {t - self.start:5.1f}s".strip()
            if self.tty:
                click.echo("\r\x1b[2K" + line[:200], nl=False, err=True)
                self._drawn = True
                if final:
                    click.echo("", err=True)
                    self._drawn = False
            else:
                click.echo(line, err=True)
        elif isinstance(event, Log):
            self._break()
            color = {"warning": "yellow", "error": "red"}.get(event.level)
            click.secho(f"{event.level}: {event.text}" if event.level != "info" else event.text, fg=color, err=True)
        elif isinstance(event, Metric):
            self._break()
            click.echo(f"  step {event.step:>5}  {event.name} = {event.value:.4g}", err=True)

    def _break(self) -> None:
        if self._drawn:
            click.echo("", err=True)
            self._drawn = False


def drive(events: EventStream, label: str = "", quiet: bool = False) -> dict[str, Any]:
    """Run an event generator with a progress display; Ctrl-C cancels cleanly."""
    printer = ProgressPrinter(label, quiet)
    summary: dict[str, Any] = {}
    try:
        for event in events:
            if isinstance(event, Done):
                summary = event.summary
            printer(event)
    except Cancelled:
        printer._break()
        click.echo("Cancelled.", err=True)
        raise click.exceptions.Exit(130)
    finally:
        printer._break()
    return summary


def cancel_on_sigint() -> threading.Event:
    """An Event set on Ctrl-C, so engine work stops at its next check."""
    import signal

    ev = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if ev.is_set():
            raise KeyboardInterrupt
        ev.set()
        click.echo("\nStopping after the current step (Ctrl-C again to abort)...", err=True)

    signal.signal(signal.SIGINT, handler)
    return ev


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A plain-text table that fits 80 columns for typical content."""
    from preceptor.terminal import clean

    cells = [[clean(h) for h in headers]] + [["" if c is None else clean(c) for c in r] for r in rows]
    widths = [min(max(len(r[i]) for r in cells), 40) for i in range(len(headers))]
    out = []
    for n, r in enumerate(cells):
        out.append("  ".join(c[:w].ljust(w) if i == 0 else c[:w].rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


class LazySubgroup(click.Group):
    """A command group whose sub-commands may live in other modules (imported on use).

    ``lazy`` maps sub-command names to ``"module:attr"``; commands added with
    ``@group.command()`` work as usual. Lets e.g. ``train embed`` live in ``cli/embed.py``.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)
