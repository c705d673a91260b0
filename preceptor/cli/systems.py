"""``preceptor systems``: declare, list and show the systems that answer prompts."""

from __future__ import annotations

import click

from preceptor.cli.common import echo_json, open_project, project_option, table


@click.group("systems")
def systems_group() -> None:
    """Systems (base, teacher, ft, dpo, custom): declared here or in preceptor.toml [systems.NAME]."""


@systems_group.command("add")
@click.argument("name")
@click.option("--role", default="custom", show_default=True,
              type=click.Choice(["base", "teacher", "ft", "dpo", "custom"]), help="What the system is in the loop.")
@click.option("--backend", required=True, type=click.Choice(["hf", "litellm", "grounded"]),
              help="hf: a local transformers model; litellm: an API or OpenAI-compatible server; grounded: local model + reference facts.")
@click.option("--model", required=True, help="hf: packaged name, local folder, .gguf file or hub id; litellm: provider string, e.g. openrouter/openai/gpt-4o-mini.")
@click.option("--adapter", type=click.Path(exists=True, file_okay=False), help="A LoRA adapter folder (hf).")
@click.option("--api-base", help="Base URL of an OpenAI-compatible server (litellm), e.g. http://127.0.0.1:8000/v1.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A decoding parameter (repeatable), e.g. temperature=0 max_new_tokens=128; values are read as JSON.")
@click.option("--description", default="", help="A note shown by `systems show`.")
@click.option("--no-save", is_flag=True, help="Only add it to the database, not to preceptor.toml.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def add_cmd(project_dir: str | None, name: str, role: str, backend: str, model: str, adapter: str | None,
            api_base: str | None, params: tuple[str, ...], description: str, no_save: bool, as_json: bool) -> None:
    """Declare (or redefine) system NAME. API keys come from the environment, never from here."""
    from preceptor.engine.generation import systems

    parsed = dict(systems.parse_param(p) for p in params)
    with open_project(project_dir) as project:
        s = systems.add(project, name, role=role, backend=backend, model=model, adapter=adapter, api_base=api_base,
                        params=parsed, description=description, save=not no_save)
        where = project.config_path
        info = systems.describe_system(project, s)
    if as_json:
        echo_json({**info, "saved_in": None if no_save else str(where)})
        return
    click.echo(f"System {s.name}: role {s.role}, backend {s.backend}, model {s.model}"
               + (f", adapter {s.adapter}" if s.adapter else ""))
    if s.params:
        click.echo("  params: " + ", ".join(f"{k}={v}" for k, v in s.params.items()))
    click.echo(f"  saved in {where}" if not no_save else "  (database only)")


@systems_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@project_option
def list_cmd(project_dir: str | None, as_json: bool) -> None:
    """Every system with its role, backend, model and output counts (* = answers for its role)."""
    from preceptor.db import systems as q_systems
    from preceptor.engine.generation import systems

    with open_project(project_dir) as project:
        systems.ensure_default_systems(project)
        rows = [systems.describe_system(project, s) for s in q_systems.all_systems(project.store)]
    if as_json:
        echo_json(rows)
        return
    click.echo(table([[r["name"], r["role"] + ("*" if r["answers_for_role"] else ""), r["backend"], r["model"] or "-",
                       r["outputs"], r["failed"]] for r in rows],
                     ["system", "role", "backend", "model", "outputs", "failed"]))
    click.echo("\n* answers when the role name is used (e.g. --system base).")


@systems_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@project_option
def show_cmd(project_dir: str | None, name: str, as_json: bool) -> None:
    """The full definition of system NAME (a role name shows the system it resolves to)."""
    from preceptor.engine.generation import systems

    with open_project(project_dir) as project:
        s = systems.resolve(project, name)
        info = systems.describe_system(project, s)
    if as_json:
        echo_json(info)
        return
    if name != info["name"]:
        click.echo(f"{name} -> {info['name']} (the latest succeeded system with role {name})")
    for key in ("name", "role", "backend", "model", "adapter", "api_base"):
        if info.get(key):
            click.echo(f"{key:>9}: {info[key]}")
    if info["params"]:
        click.echo("   params: " + ", ".join(f"{k}={v}" for k, v in info["params"].items()))
    note = (info["meta"] or {}).get("description")
    if note:
        click.echo(f"     note: {note}")
    if info["run_id"]:
        click.echo(f"      run: {info['run_id']}")
    click.echo(f"  outputs: {info['outputs']} ({info['failed']} failed)")


@systems_group.command("preset")
@click.argument("name", type=click.Choice(["seed000"]))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def preset_cmd(project_dir: str | None, name: str, as_json: bool) -> None:
    """Switch to a named set-up (seed000: Qwen3-1.7B student, gpt-4o-mini teacher and judge)."""
    from preceptor.engine.generation import systems

    with open_project(project_dir) as project:
        out = systems.preset(project, name)
    if as_json:
        echo_json(out)
        return
    click.echo(out["description"])
    click.echo(f"Systems: {', '.join(out['systems'])} (now answering for roles base and teacher).")
    if out["judge"]:
        click.echo(f"Judge: {out['judge']['backend']} {out['judge']['model']}")
    click.echo("API keys are read from the environment (e.g. OPENROUTER_API_KEY); nothing was stored.")
