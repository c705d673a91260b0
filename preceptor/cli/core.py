"""Project commands: init, import, split, status, backup."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from preceptor.cli.common import (
    STDIN_FORMATS,
    drive,
    echo_json,
    open_project,
    project_option,
    stdin_as_file,
    table,
)
from preceptor.processes import yield_cpu


@click.command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--name", help="Display name (default: the folder name).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def init_cmd(ctx: click.Context, directory: str | None, name: str | None, as_json: bool) -> None:
    """Create a project (preceptor.toml + preceptor.db) in DIRECTORY (default: here)."""
    from preceptor import paths
    from preceptor.project import Project

    root = directory or (ctx.find_root().obj or {}).get("project_dir") or str(paths.default_project_dir())
    existed = (Path(root) / paths.CONFIG_NAME).exists()
    project = Project.init(root, name)
    if as_json:
        echo_json({"project": str(project.root), "created": not existed, "settings": str(project.config_path),
                   "database": str(project.db_path), "schema_version": project.store.schema_version})
        return
    click.echo(f"{'Opened existing' if existed else 'Created'} project {project.root}")
    click.echo(f"  settings: {project.config_path}\n  database: {project.db_path} (schema v{project.store.schema_version})")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--prompt-col", help="Column holding the prompt (default: prompt, else instruction+input, else question).")
@click.option("--reference-col", help="Column holding the reference answer (default: reference, response_teacher, output, answer, response, chosen).")
@click.option("--group-col", help="Column whose value keeps related items in one split (default: group, drug, drug_name or a column the domain pack names).")
@click.option("--task-col", help="Column naming the task of each row (default: task).")
@click.option("--val-ratio", type=float, default=0.1, show_default=True)
@click.option("--test-ratio", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--task", help="Task name for rows without one.")
@click.option("--collection", help="Collection name (default: the file's stem; `stdin` for -).")
@click.option("--format", "fmt", type=click.Choice(STDIN_FORMATS), help="Format of stdin (required with FILE -).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@project_option
def import_cmd(project_dir: str | None, file: str, fmt: str | None, as_json: bool, **options: object) -> None:
    """Import prompts from FILE (CSV, TSV, JSONL, JSON array or Parquet; - reads stdin), atomically."""
    from preceptor.engine.ingest.prompts import ImportOptions, import_prompts

    if fmt is not None and file != "-":
        raise click.UsageError("--format is for stdin (FILE -); a file's format comes from its extension.")
    opts = ImportOptions(**{k: v for k, v in options.items()})  # type: ignore[arg-type]
    with open_project(project_dir) as project, (stdin_as_file(fmt) if file == "-" else contextlib.nullcontext(Path(file))) as path:
        yield_cpu()  # a bulk import gives way to experts voting on this machine
        summary = drive(import_prompts(project, path, opts), "import", quiet=as_json)
    if as_json:
        echo_json(summary)
        return
    s = summary["splits"]
    click.echo(f"Imported {summary['imported']} of {summary['rows']} rows into collection {summary['collection']!r}: "
               f"train {s['train']}, val {s['val']}, test {s['test']}.")
    cols = summary["columns"]
    click.echo(f"Columns: prompt={cols['prompt']} reference={cols['reference']} group={cols['group']}; {summary['grouping']}.")
    if summary["duplicates"]:
        click.echo(f"Skipped {summary['duplicates']} duplicate prompts.")
    if summary["groups_kept_split"]:
        click.echo(f"{summary['groups_kept_split']} groups were already in the project and kept their split.")
    if summary["student_outputs"] or summary["teacher_outputs"]:
        click.echo(f"Imported outputs: {summary['student_outputs']} student (imported-base), {summary['teacher_outputs']} teacher (imported-teacher).")


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@project_option
def status_cmd(project_dir: str | None, as_json: bool) -> None:
    """Counts of prompts, systems, outputs, runs, judgments and exports."""
    from preceptor.engine.generation.systems import ensure_default_systems
    from preceptor.engine.views import project_status

    with open_project(project_dir) as project:
        ensure_default_systems(project)  # the same systems `systems list` shows, defaults included
        st = project_status(project)
    if as_json:
        echo_json(st)
        return
    p = st["prompts"]
    click.echo(f"Project {st['name']}  (schema v{st['schema_version']})")
    click.echo(f"  {st['project']}")
    click.echo(f"Prompts: {p['total']}  (train {p['train']}, val {p['val']}, test {p['test']})")
    if len(st["collections"]) > 1 or any(c["kind"] != "prompts" for c in st["collections"].values()):
        rows = [[n, c["kind"], c.get("train", 0), c.get("val", 0), c.get("test", 0)] for n, c in st["collections"].items()]
        click.echo(table(rows, ["collection", "kind", "train", "val", "test"]))
    click.echo("")
    if st["systems"]:
        rows = [[s["name"], s["role"], s["backend"], s["outputs"], s["failed"]] for s in st["systems"]]
        click.echo(table(rows, ["system", "role", "backend", "outputs", "failed"]))
    else:
        click.echo("Systems: none yet")
    click.echo("")
    runs = ", ".join(f"{k} {v}" for k, v in sorted(st["runs"].items())) or "none"
    judg = ", ".join(f"{k} {v}" for k, v in sorted(st["judgments"].items())) or "none"
    click.echo(f"Runs: {runs}")
    click.echo(f"Pairs: {st['pairs']}   Judgments: {judg}   Exports: {st['exports']}")


@click.command("backup")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def backup_cmd(project_dir: str | None, out: str, as_json: bool) -> None:
    """Write a consistent copy of the project database to OUT (safe while others judge)."""
    with open_project(project_dir) as project:
        project.store.backup(Path(out))
    if as_json:
        echo_json({"database": str(project.db_path), "backup": str(Path(out).resolve())})
        return
    click.echo(f"Backed up {project.db_path} to {out}")


@click.command("split")
@click.option("--group-col", required=True, help="Column of the imported files whose value keeps related prompts in one split (e.g. drug).")
@click.option("--val-ratio", type=float, default=0.1, show_default=True)
@click.option("--test-ratio", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--collection", help="Only this collection's prompts.")
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@project_option
def split_cmd(project_dir: str | None, group_col: str, val_ratio: float, test_ratio: float, seed: int,
              collection: str | None, dry_run: bool, as_json: bool) -> None:
    """Regroup the prompts by a column and split them again; prompts already judged or trained on never move."""
    from preceptor.engine.ingest.resplit import ResplitOptions, resplit

    opts = ResplitOptions(group_col=group_col, val_ratio=val_ratio, test_ratio=test_ratio, seed=seed,
                          collection=collection, dry_run=dry_run)
    with open_project(project_dir) as project:
        s = drive(resplit(project, opts), "split", quiet=as_json)
    if as_json:
        echo_json(s)
        return
    sp = s["splits"]
    verb = "would move" if dry_run else "moved"
    click.echo(f"Grouped {s['prompts']} prompts by {group_col!r} into {s['groups']} groups "
               f"({s['with_value']} with a value); {verb} {s['moved']} to another split; "
               f"now train {sp['train']}, val {sp['val']}, test {sp['test']}.")
    if s["kept_in_use"]:
        click.echo(f"{s['kept_in_use']} prompts already judged or trained on kept their split (and so did their groups).")
