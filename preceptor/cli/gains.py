"""``preceptor gains``: what each trained system gained over its parent and the teacher, with CIs."""

from __future__ import annotations

import click

from preceptor.cli.common import echo_json, open_project, project_option, table


@click.command("gains")
@project_option
@click.option("--split", default="val", show_default=True, help="Split compared: train, val, test, a comma list, or all.")
@click.option("--collection", default=None, help="Only prompts of this collection.")
@click.option("--metrics", default="rougeL,chrf,facet_f1", show_default=True,
              help="Comma list of metrics (against the gold reference); rougeL decides the metric judge's win rate.")
@click.option("--n-boot", type=int, default=1000, show_default=True, help="Bootstrap resamples for the CIs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option("--lineage", "show_lineage", is_flag=True, help="Also print the lineage behind each row.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def gains_cmd(project_dir: str | None, split: str, collection: str | None, metrics: str, n_boot: int, seed: int,
              show_lineage: bool, as_json: bool) -> None:
    """Each trained system vs its parent (ft vs base, dpo vs ft) and vs the teacher; regressions in red."""
    from preceptor.engine.results import gains as G

    opts = G.GainsOptions(split=split, collection=collection, metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
                          n_boot=n_boot, seed=seed)
    project = open_project(project_dir)
    try:
        res = G.compute(project, opts)
    finally:
        project.close()
    if as_json:
        echo_json(res)
        return
    where = f"split {split}" + (f", collection {collection}" if collection else "")
    click.echo(f"Gains on {where}, against the gold reference; 95% CIs (Wilson for win rates, bootstrap over prompts "
               "otherwise); ties count half.")
    if res.get("note"):
        click.echo(res["note"].capitalize() + ".")
        return
    head, rows = G.table_rows(res)
    text = table(rows, head).splitlines()
    for line, row in zip(text, [None, None, *res["rows"]], strict=True):
        bad = row is not None and (row["regression"] or row["regressed_metrics"])
        click.echo(click.style(line, fg="red") if bad else line)
    if show_lineage:
        for r in res["rows"]:
            click.echo("")
            click.echo(G.lineage_text(r["lineage"]))
