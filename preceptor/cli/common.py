"""Shared pieces of the CLI: the --project option, opening the project, driving events."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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
    from preceptor.engine.settings import check_tables
    from preceptor.project import Project

    project = Project.open(project_dir, create=create)
    try:
        check_tables(project.raw, str(project.config_path))  # a misspelt table never passes silently
    except Exception:
        project.close()
        raise
    project.store.notify_wait = lambda text: click.echo(text, err=True)  # a write waiting on another process
    return project


def console(err: bool = False) -> Any:
    """A rich console on stdout (or stderr) as it is now (tests swap the streams).

    ``NO_COLOR`` turns every style off; only terminals get styles; off a terminal nothing is wrapped,
    truncated or coloured (a very wide console), so piped output stays whole.
    """
    import os

    from rich.console import Console

    stream = sys.stderr if err else sys.stdout
    tty = stream.isatty()
    plain = bool(os.environ.get("NO_COLOR"))  # no colour, and no bold either: not one escape sequence
    return Console(file=stream, width=None if tty else 100_000, soft_wrap=not tty, highlight=False,
                   emoji=False, markup=False, **({"color_system": None} if plain else {}))


def say(text: str, style: str | None = None, err: bool = False) -> None:
    """Print ``text`` verbatim (user text: no markup is read), in ``style`` on a colour terminal."""
    console(err).print(text, style=style, markup=False, highlight=False, overflow="ignore", crop=False)


class ProgressPrinter:
    """Renders engine events on stderr: a rich progress bar on a terminal, sparse lines otherwise.

    ``quiet`` (``--json``) hides progress only when stderr is not a terminal, so a long
    ``judge llm --json`` still shows it to the person who started it.
    """

    def __init__(self, label: str = "", quiet: bool = False) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.quiet = quiet and not self.tty
        self.start = time.monotonic()
        self._last = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, event: Any) -> None:
        if self.quiet:
            return
        if isinstance(event, Progress):
            if self.tty:
                self._draw(event)
                return
            t = time.monotonic()
            final = event.total is not None and event.done >= event.total
            if not final and t - self._last < 5.0:
                return
            self._last = t
            count = f"{event.done}/{event.total}" if event.total else f"{event.done}"
            click.echo(f"{self.label} {count} {event.note}  {t - self.start:5.1f}s".strip(), err=True)
        elif isinstance(event, Log):
            style = {"warning": "yellow", "error": "red"}.get(event.level)
            self._print(f"{event.level}: {event.text}" if event.level != "info" else event.text, style)
        elif isinstance(event, Metric):
            self._print(f"  step {event.step:>5}  {event.name} = {event.value:.4g}")

    def _draw(self, event: Progress) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        if self._bar is None:
            self._bar = Bar(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[note]}", markup=False), TimeElapsedColumn(),
                            console=console(err=True), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=event.total, note="")
        self._bar.update(self._task, completed=event.done, total=event.total, note=event.note or "")

    def _print(self, text: str, style: str | None = None) -> None:
        if self._bar is not None:
            self._bar.console.print(text, style=style, markup=False, highlight=False)
        else:
            say(text, style, err=True)

    def _break(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


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


STDIN_FORMATS = ("csv", "tsv", "jsonl", "json")


@contextlib.contextmanager
def stdin_as_file(fmt: str | None, what: str = "import") -> Iterator[Path]:
    """``-`` as an input: stdin copied into ``stdin.FMT`` in a temporary folder (readers need a path)."""
    from preceptor.errors import PreceptorError

    if fmt is None:
        raise PreceptorError("Format needed for stdin", f"`{what} -` reads stdin, whose format cannot be told from a name",
                             f"Add --format {'|'.join(STDIN_FORMATS)}.")
    with tempfile.TemporaryDirectory(prefix="preceptor-stdin-") as tmp:
        path = Path(tmp) / f"stdin.{fmt}"
        with path.open("wb") as fh:
            shutil.copyfileobj(click.get_binary_stream("stdin"), fh)
        yield path


@contextlib.contextmanager
def stdout_target(out: str, suffix: str) -> Iterator[Path]:
    """``-`` as an output: the command writes into a temporary file, which then goes to stdout."""
    if out != "-":
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="preceptor-stdout-") as tmp:
        path = Path(tmp) / f"stdout{suffix}"
        yield path
        stream = click.get_binary_stream("stdout")
        with path.open("rb") as fh:
            shutil.copyfileobj(fh, stream)
        stream.flush()


def echo_json(data: Any, err: bool = False) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str), err=err)


def table(rows: list[list[Any]], headers: list[str]) -> str:
    """A text table (rich): numbers right-aligned, cells never truncated, user text verbatim
    (terminal control sequences made inert by :func:`preceptor.terminal.clean`).

    On a terminal long cells wrap at word boundaries to fit the width; off a terminal the
    table is as wide as its content (nothing wrapped, cut or coloured).
    """
    from rich.box import Box
    from rich.table import Table
    from rich.text import Text

    from preceptor.terminal import clean

    out = console()
    t = Table(box=Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True), show_edge=False, pad_edge=False, padding=(0, 1, 0, 0), highlight=False,
              header_style="bold")
    for i, h in enumerate(headers):
        numeric = i > 0 and all(isinstance(r[i], (int, float)) or r[i] is None for r in rows)
        t.add_column(Text(clean(str(h))), justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        t.add_row(*(Text("" if c is None else clean(str(c))) for c in r))
    with out.capture() as cap:
        out.print(t)
    return "\n".join(line.rstrip() for line in cap.get().rstrip("\n").splitlines())


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
