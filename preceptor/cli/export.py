"""``preceptor export``: DPO preference data (TRL formats), the votes for audit, negatives."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from preceptor.cli.common import (
    LazySubgroup,
    cancel_on_sigint,
    drive,
    echo_json,
    open_project,
    project_option,
    say,
    stdout_target,
)
from preceptor.errors import PreceptorError


@click.group("export", cls=LazySubgroup, lazy={"negatives": "preceptor.cli.embed:export_negatives_cmd"})
def export_group() -> None:
    """Export judged data: DPO pairs, the votes themselves, hard negatives."""


def _replace(out: Path) -> None:
    from preceptor.engine.export.dpo import manifest_path

    for p in (out, manifest_path(out)):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


@export_group.command("dpo")
@click.argument("out", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "hf"]), default="jsonl", show_default=True,
              help="hf = a datasets folder (save_to_disk).")
@click.option("--student", default=None, metavar="SYSTEM",
              help="System (name or role) these rows will train; its system prompt is part of every prompt [default: the latest ft, else base].")
@click.option("--style", type=click.Choice(["standard", "conversational"]), default="conversational", show_default=True,
              help="TRL's standard (text) or conversational (messages) preference format.")
@click.option("--source", type=click.Choice(["expert", "llm", "metric", "agreed", "all"]), default="all", show_default=True,
              help="Whose votes decide; agreed = the experts and the LLM judge agree.")
@click.option("--min-confidence", type=float, default=0.0, show_default=True,
              help="Confidence in [0, 1] the deciding votes need.")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="train", show_default=True,
              help="Prompt split (train is the DPO training data; val/test never leak into it).")
@click.option("--collection", help="Export this collection (e.g. an imported human-label set).")
@click.option("--systems", nargs=2, default=None, help="Only pairs between these two systems.")
@click.option("--against-reference", default=None, metavar="SYSTEM",
              help="No votes: each prompt's reference is chosen, SYSTEM's answer rejected (self-play data, SPIN).")
@click.option("--force", is_flag=True, help="Replace OUT (and its manifest) if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@project_option
def export_dpo_cmd(project_dir: str | None, out: str, fmt: str, student: str | None, style: str, source: str,
                   min_confidence: float,
                   split: str, collection: str | None, systems: tuple[str, str] | None, against_reference: str | None,
                   force: bool, as_json: bool) -> None:
    """Write judged pairs as DPO training data to OUT (- for stdout), with a manifest next to it."""
    from preceptor.engine.export.dpo import DPOExportOptions, export_dpo

    opts = DPOExportOptions(split=split, source=source, min_confidence=min_confidence, collection=collection,
                            style=style, systems=tuple(systems) if systems else None, student=student,
                            against_reference=against_reference)
    if out == "-" and fmt == "hf":
        raise PreceptorError("Cannot write a folder to stdout", "--format hf writes a datasets folder",
                             "Use --format jsonl (or parquet) with -, or give a folder name.")
    if force and out != "-":
        _replace(Path(out))
    with open_project(project_dir) as project, stdout_target(out, f".{fmt}") as path:
        summary = drive(export_dpo(project, path, opts, fmt, cancel_on_sigint()), "export", quiet=as_json)
    if as_json:
        echo_json(summary, err=out == "-")
        return
    if out == "-":
        say(f"Wrote {summary['n']} pairs to stdout ({fmt}, {style}) — sha256 {summary['sha256'][:16]}…", err=True)
        return
    click.echo(f"Wrote {summary['n']} pairs to {summary['path']} ({fmt}, {style}) — sha256 {summary['sha256'][:16]}…")
    excluded = ", ".join(f"{k} {v}" for k, v in summary["excluded"].items() if v)
    click.echo(f"Considered {summary['considered']} {'prompts' if against_reference else 'pairs'}; excluded: {excluded or 'none'}.")
    if summary.get("out_of_split"):
        click.echo(f"{summary['out_of_split']} judged pairs in other splits were left out.")
    click.echo(f"Manifest: {summary['manifest']}")


@export_group.command("votes")
@click.argument("out", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default=None,
              help="Default: from OUT's extension (.csv or .jsonl).")
@click.option("--split", default="all", show_default=True, help="Prompt splits: train, val, test, all or a list.")
@click.option("--collection", help="Only this collection.")
@click.option("--all-history", is_flag=True, help="Include superseded votes (marked superseded=true).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (on stderr when OUT is -).")
@project_option
def export_votes_cmd(project_dir: str | None, out: str, fmt: str | None, split: str, collection: str | None,
                     all_history: bool, force: bool, as_json: bool) -> None:
    """Write every vote (judge, verdict, sides shown, unsafe flags, time) to OUT (- for stdout) for audit."""
    from preceptor.engine.export.votes import export_votes

    fmt = fmt or ("jsonl" if Path(out).suffix.lower() in (".jsonl", ".ndjson") else "csv")
    if force and out != "-":
        _replace(Path(out))
    with open_project(project_dir) as project, stdout_target(out, f".{fmt}") as path:
        summary = drive(export_votes(project, path, fmt, split=split, collection=collection,
                                     include_superseded=all_history), "export", quiet=as_json)
    if as_json:
        echo_json(summary, err=out == "-")
        return
    where = "stdout" if out == "-" else summary["path"]
    say(f"Wrote {summary['n']} votes to {where} — sha256 {summary['sha256'][:16]}…", err=out == "-")
