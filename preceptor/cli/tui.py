"""``preceptor tui``, ``preceptor serve`` and ``preceptor judge expert``: open the app."""

from __future__ import annotations

import shlex
import sys

import click

from preceptor.cli.common import open_project, project_option, say

SCREEN_CHOICES = ["dashboard", "judge", "data", "train", "results", "export"]


def _run(project_dir: str | None, **kwargs: object) -> None:
    from preceptor.tui.app import PreceptorApp

    with open_project(project_dir) as project:
        PreceptorApp(project, **kwargs).run()  # type: ignore[arg-type]


@click.command("tui")
@click.option("--screen", type=click.Choice(SCREEN_CHOICES), default="dashboard", show_default=True,
              help="Screen to open on.")
@click.option("--as", "expert", metavar="NAME", help="Judge as NAME (skips the name question).")
@project_option
def tui_cmd(project_dir: str | None, screen: str, expert: str | None) -> None:
    """Open the terminal app on the project (also what `preceptor` alone does)."""
    _run(project_dir, start=screen, expert=expert)


@click.command("expert")
@click.option("--as", "expert", metavar="NAME", help="Your name as a judge (asked in the app if not given).")
@project_option
def judge_expert_cmd(project_dir: str | None, expert: str | None) -> None:
    """Judge pairs of answers, blind, in the terminal app."""
    _run(project_dir, start="judge", expert=expert)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Keep 127.0.0.1 unless you put it behind an authenticating proxy.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--screen", type=click.Choice(SCREEN_CHOICES), default="judge", show_default=True)
@project_option
def serve_cmd(project_dir: str | None, host: str, port: int, screen: str) -> None:
    """Serve the app to a web browser (textual-serve) for experts without a terminal."""
    from textual_serve.server import Server

    with open_project(project_dir) as project:
        root = str(project.root)
        title = f"preceptor: {project.settings.name or project.root.name}"
    command = " ".join(shlex.quote(p) for p in [sys.executable, "-m", "preceptor", "--project", root, "tui", "--screen", screen])
    if host not in ("127.0.0.1", "localhost", "::1"):
        say(f"Warning: listening on {host}: anyone who can reach it can judge and launch runs.", "yellow", err=True)
    click.echo(f"Serving {root} on http://{host}:{port} (Ctrl-C to stop)", err=True)
    Server(command, host=host, port=port, title=title).serve()
