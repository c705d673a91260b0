"""``preceptor tui``, ``preceptor serve`` and ``preceptor judge expert``: open the app."""

from __future__ import annotations

import sys

import click

from preceptor.cli.common import open_project, project_option, say

SCREEN_CHOICES = ["dashboard", "judge", "data", "train", "results", "export", "review"]


def _run(project_dir: str | None, **kwargs: object) -> None:
    from preceptor.tui.app import PreceptorApp

    with open_project(project_dir) as project:
        PreceptorApp(project, **kwargs).run()  # type: ignore[arg-type]


def _check_expert(project_dir: str | None, expert: str | None) -> None:
    """``--as`` names a registered expert (exit 2 with the closest names otherwise); nobody is created."""
    if not expert:
        return
    from preceptor.engine.judging.experts import get_expert

    with open_project(project_dir) as project:
        get_expert(project.store, expert)


@click.command("tui")
@click.option("--screen", type=click.Choice(SCREEN_CHOICES), default="dashboard", show_default=True,
              help="Screen to open on.")
@click.option("--as", "expert", metavar="NAME", help="Judge as NAME, a registered expert (skips the name question).")
@click.option("--lock-expert", is_flag=True, hidden=True, help="Served with an expert's token: judge only, as --as.")
@project_option
def tui_cmd(project_dir: str | None, screen: str, expert: str | None, lock_expert: bool) -> None:
    """Open the terminal app on the project (also what `preceptor` alone does)."""
    _check_expert(project_dir, expert)
    _run(project_dir, start="judge" if lock_expert else screen, expert=expert, judge_only=lock_expert and bool(expert))


@click.command("expert")
@click.option("--as", "expert", metavar="NAME", help="Your name as a registered expert (asked in the app if not given).")
@project_option
def judge_expert_cmd(project_dir: str | None, expert: str | None) -> None:
    """Judge pairs of answers, blind, in the terminal app."""
    _check_expert(project_dir, expert)
    _run(project_dir, start="judge", expert=expert)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Beyond loopback it needs --i-know-this-is-not-encrypted, and TLS in front.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--screen", type=click.Choice(SCREEN_CHOICES), default="judge", show_default=True)
@click.option("--i-know-this-is-not-encrypted", "ack_remote", is_flag=True,
              help="Allow a non-loopback --host: traffic (and the token) travel unencrypted unless a TLS proxy fronts it.")
@project_option
def serve_cmd(project_dir: str | None, host: str, port: int, screen: str, ack_remote: bool) -> None:
    """Serve the app to a web browser (textual-serve) behind a token, for experts without a terminal.

    Open the printed URL. Experts with a personal token (`preceptor experts add NAME --token`)
    use the same URL with their own token: it opens straight into their judge session.
    """
    import secrets

    from preceptor.cli.serve import app_command, is_loopback, make_server
    from preceptor.engine.judging.experts import expert_for_token
    from preceptor.errors import PreceptorError

    if not is_loopback(host) and not ack_remote:
        raise PreceptorError("Refusing to listen beyond this machine", f"--host {host} is not a loopback address",
                             "Put a TLS proxy in front and pass --i-know-this-is-not-encrypted, or keep --host 127.0.0.1 "
                             "and use an SSH tunnel (ssh -L 8000:127.0.0.1:8000 HOST).")
    with open_project(project_dir) as project:
        root = str(project.root)
        title = f"preceptor: {project.settings.name or project.root.name}"

    def expert_of(token: str) -> str | None:
        with open_project(root) as p:
            found = expert_for_token(p.store, token)
        return found.name if found else None

    token = secrets.token_urlsafe(24)
    server = make_server(app_command(sys.executable, root, screen), host=host, port=port, title=title, token=token,
                         expert_for_token=expert_of)
    if not is_loopback(host):
        say(f"Listening on {host} without TLS: put a TLS proxy in front before anyone uses it.", "yellow", err=True)
    click.echo(f"Serving {root} (Ctrl-C to stop). Open:", err=True)
    url_host = f"[{host}]" if ":" in host else host
    click.echo(f"http://{url_host}:{port}/?token={token}")
    sys.stdout.flush()
    server.serve()
