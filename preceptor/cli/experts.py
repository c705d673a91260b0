"""``preceptor experts add NAME`` / ``experts list``."""

from __future__ import annotations

import click

from preceptor.cli.common import echo_json, open_project, project_option, table


@click.group("experts")
def experts_group() -> None:
    """The domain experts who judge (names are case-insensitive: Alice = alice)."""


@experts_group.command("add")
@click.argument("name")
@click.option("--token", "with_token", is_flag=True,
              help="Also print a personal access token for `preceptor serve` (opens straight into their judge session).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def add_cmd(project_dir: str | None, name: str, with_token: bool, as_json: bool) -> None:
    """Register an expert (the only way an expert comes to exist, besides the app's own form)."""
    from preceptor.db import judging as q
    from preceptor.engine.judging.experts import _check_name, issue_token

    with open_project(project_dir) as project:
        _, registered, created = q.add_expert(project.store, _check_name(name))
        token = issue_token(project.store, registered) if with_token else None
    if as_json:
        echo_json({"name": registered, "created": created, **({"token": token} if token else {})})
    elif created:
        click.echo(f"Added expert {registered!r}.")
    else:
        click.echo(f"Expert {registered!r} already exists (names are case-insensitive).")
    if token and not as_json:
        click.echo(f"Personal access token (shown once; a new one replaces it): {token}")
        click.echo(f"Give it to {registered} with the URL `preceptor serve` prints, replacing its token.")


@experts_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@project_option
def list_cmd(project_dir: str | None, as_json: bool) -> None:
    """The experts and how many votes each has cast."""
    from preceptor.db import judging as q
    from preceptor.engine.judging.experts import list_experts

    with open_project(project_dir) as project:
        experts = list_experts(project.store)
        votes = q.expert_vote_counts(project.store)
    rows = [{"id": e.id, "name": e.name, "votes": votes.get(e.name, 0)} for e in experts]
    if as_json:
        echo_json(rows)
        return
    click.echo(table([[r["name"], r["votes"]] for r in rows], ["expert", "votes"]) if rows
               else "No experts yet: `preceptor experts add NAME`.")
