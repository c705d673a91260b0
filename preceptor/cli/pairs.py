"""``preceptor pairs make`` / ``pairs list``."""

from __future__ import annotations

import click

from preceptor.cli.common import drive, echo_json, open_project, project_option, table


@click.group("pairs")
def pairs_group() -> None:
    """Pairs of answers from two systems to the same prompt (train pairs feed DPO; val/test compare systems)."""


@pairs_group.command("make")
@click.option("--systems", required=True, help="Two systems, e.g. base,ft (names or roles).")
@click.option("--split", default="all", show_default=True, help="train, val, test, all, or a list such as val,test.")
@click.option("--collection", help="Only prompts of this collection.")
@click.option("--task", help="Only prompts of this task.")
@click.option("--limit", type=int, help="At most N pairs (a seeded random choice).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the queue order and of --limit.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def make_cmd(project_dir: str | None, systems: str, split: str, collection: str | None, task: str | None,
             limit: int | None, seed: int, as_json: bool) -> None:
    """Build pairs between two systems' outputs (idempotent; identical answers are not paired)."""
    from preceptor.engine.judging.pairs import PairMakeOptions, make_pairs, parse_systems

    names = parse_systems(systems)
    assert names is not None
    opts = PairMakeOptions(systems=names, split=split, collection=collection, task=task, limit=limit, seed=seed)
    with open_project(project_dir) as project:
        s = drive(make_pairs(project, opts), "pairs", quiet=as_json)
    if as_json:
        echo_json(s)
        return
    splits = ", ".join(f"{k} {v}" for k, v in sorted(s["by_split"].items())) or "none"
    click.echo(f"Pairs {s['systems'][0]} vs {s['systems'][1]}: {s['created']} new, {s['existing']} already there ({splits}).")
    if s["identical"]:
        click.echo(f"{s['identical']} prompts have identical answers from both systems: not paired.")
    if s["missing_output"]:
        click.echo(f"{s['missing_output']} prompts lack an output from one of the systems.")


@pairs_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@project_option
def list_cmd(project_dir: str | None, as_json: bool) -> None:
    """Pairs per system pair, split and collection, with expert coverage."""
    from preceptor.engine.judging.pairs import pair_summary

    with open_project(project_dir) as project:
        rows = pair_summary(project)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No pairs yet: `preceptor pairs make --systems A,B`.")
        return
    click.echo(table([[r["collection"], f"{r['system_a']} vs {r['system_b']}", r["split"], r["pairs"], r["complete"], r["overlap"]]
                      for r in rows], ["collection", "systems", "split", "pairs", "judged", "overlap"]))
