"""The embedding track on the command line: ``import-pairs``, ``train embed``, ``export negatives``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from preceptor.cli.common import (
    cancel_on_sigint,
    drive,
    echo_json,
    open_project,
    project_option,
    say,
    stdout_target,
    table,
)
from preceptor.processes import yield_cpu


@click.command("import-pairs")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--stage", required=True, help="Curriculum stage the pairs belong to (new stages are appended to [embed] stages).")
@click.option("--anchor-col", help="Column of the anchor / query (default: anchor, query, question, sentence1, text1).")
@click.option("--positive-col", help="Column of the positive (default: positive, document, passage, answer, sentence2, text2).")
@click.option("--negative-col", help="Column of a hard negative (default: negative, hard_negative; optional).")
@click.option("--score-col", help="Column of a similarity score in [-1, 1] for CosineSimilarityLoss (default: score, label, similarity; optional).")
@click.option("--group-col", help="Column whose value keeps related pairs in one split (default: group, else the anchor).")
@click.option("--val-ratio", type=float, default=0.1, show_default=True, help="Share of groups held out for retrieval evaluation.")
@click.option("--test-ratio", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--queries", is_flag=True, help="Also add the held-out anchors as prompts (collection retrieval-STAGE) so retriever systems can answer and be judged.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@project_option
def import_pairs_cmd(project_dir: str | None, file: str, as_json: bool, **options: Any) -> None:
    """Import (anchor, positive[, negative][, score]) pairs from FILE into a stage, atomically."""
    from preceptor.engine.embed.data import PairImportOptions, import_pairs

    opts = PairImportOptions(**options)
    with open_project(project_dir) as project:
        yield_cpu()  # a bulk import gives way to experts voting on this machine
        s = drive(import_pairs(project, Path(file), opts), "import-pairs", quiet=as_json)
    if as_json:
        echo_json(s)
        return
    sp = s["splits"]
    click.echo(f"Imported {s['imported']} of {s['rows']} pairs into stage {s['stage']!r}: "
               f"train {sp['train']}, val {sp['val']}, test {sp['test']}.")
    extras = []
    if s["with_negative"]:
        extras.append(f"{s['with_negative']} with a hard negative")
    if s["with_score"]:
        extras.append(f"{s['with_score']} with a score")
    if s["duplicates"]:
        extras.append(f"{s['duplicates']} duplicates skipped")
    if s["groups_kept_split"]:
        extras.append(f"{s['groups_kept_split']} groups kept their earlier split")
    if extras:
        click.echo("; ".join(extras).capitalize() + ".")
    c = s["columns"]
    click.echo(f"Columns: anchor={c['anchor']} positive={c['positive']} negative={c['negative']} score={c['score']} "
               f"group={c['group']}; {s['grouping']}.")
    click.echo(f"Corpus {s['stage']!r}: {s['corpus_docs']} documents.")
    if s["queries_published"]:
        click.echo(f"Added {s['queries_published']} held-out queries as prompts (collection retrieval-{s['stage']}).")


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_stages(reports: list[dict[str, Any]]) -> str:
    """Per-stage retrieval metrics (base model, the stage's starting model, after the stage)
    and collapse diagnostics, each table within 80 columns."""
    metrics = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
    rows = []
    for r in reports:
        rows.append([r["stage"], "base", "", *(_f(r["base"][m]) for m in metrics)])
        if r.get("start") and any(r["start"][m] != r["base"][m] for m in metrics):
            rows.append(["", "start", "", *(_f(r["start"][m]) for m in metrics)])
        rows.append(["", f"run {r['run_id']}", r.get("steps") or "-", *(_f(r["eval"][m]) for m in metrics)])
    out = ["Retrieval on held-out queries (base model; start = the previous stage's model; after the stage):",
           table(rows, ["stage", "model", "steps", "R@1", "R@5", "R@10", "MRR@10", "nDCG@10"]), "",
           "Collapse diagnostics (cosine similarity; true pairs vs random unrelated pairs):"]
    rows = []
    for r in reports:
        c, bc = r["collapse"], r["base_collapse"]
        rows.append([r["stage"], f"{_f(c['true_mean'])}±{_f(c['true_std'])}",
                     f"{_f(c['unrelated_mean'])}±{_f(c['unrelated_std'])}", _f(c["gap"]), _f(bc["gap"]),
                     "ALARM" if r.get("warning") else "ok"])
    out.append(table(rows, ["stage", "true", "unrelated", "gap", "base gap", "status"]))
    return "\n".join(out)


@click.command("embed")
@click.option("--base", help="Encoder the first stage starts from (default: [embed] base, the packaged all-minilm-l6-v2).")
@click.option("--stages", help="Comma-separated stages to train in this order (default: [embed] stages).")
@click.option("--demo", is_flag=True, help="Import and train the shipped three-stage demo curriculum (drug class, safety type, consumer query).")
@click.option("--max-steps", type=int, help="Stop each stage after N optimizer steps.")
@click.option("--epochs", type=float, help="Passes over each stage's training pairs.")
@click.option("--batch-size", type=int, help="Pairs per batch.")
@click.option("--lr", "learning_rate", type=float, help="Peak learning rate.")
@click.option("--loss", type=click.Choice(["mnrl", "cosine"]), help="mnrl (default) or cosine (scored pairs).")
@click.option("--threads", type=int, help="Torch threads in the training process.")
@click.option("--inline", is_flag=True, help="Run the stages in threads of this process instead of worker processes (debugging).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-stage reports as JSON.")
@project_option
def train_embed_cmd(project_dir: str | None, base: str | None, stages: str | None, demo: bool, max_steps: int | None,
                    epochs: float | None, batch_size: int | None, learning_rate: float | None, loss: str | None,
                    threads: int | None, inline: bool, as_json: bool) -> None:
    """Fine-tune an encoder through the curriculum: one run per stage, each from the previous stage's model.

    Every stage is evaluated on its held-out queries against the base model (Recall@1/5/10,
    MRR@10, nDCG@10) and checked for embedding collapse; each stage's model is kept in its
    run folder and registered as a retriever system. Ctrl-C cancels the running stage
    (it keeps a checkpoint; `preceptor train resume RUN` continues it).
    """
    from preceptor.cli.train import plan_and_start
    from preceptor.engine.train import curriculum

    overrides = {"base": base, "stages": [s.strip() for s in stages.split(",") if s.strip()] if stages else None,
                 "demo": demo, "max_steps": max_steps, "epochs": epochs, "batch_size": batch_size,
                 "learning_rate": learning_rate, "loss": loss, "threads": threads}
    with open_project(project_dir) as project:
        started = plan_and_start(project, "embed", overrides, {"launcher": "inline" if inline else None}, False, as_json)
        assert started is not None
        summary = drive(curriculum.follow(project, started["run_id"], cancel_on_sigint()), "train embed", quiet=as_json)
    reports = summary.get("stages", [])
    if as_json:
        echo_json(summary)
        return
    click.echo(format_stages(reports))
    for r in reports:
        if r.get("warning"):
            say(f"warning: run {r['run_id']} ({r['stage']}): {r['warning']}", "yellow", err=True)
    if reports:
        last = reports[-1]
        click.echo("")
        click.echo(f"Registered retriever systems: {', '.join(r['system'] for r in reports if r.get('system'))}"
                   f" (and {last.get('base_system')} for the base encoder).")
        click.echo(f"Judge retrieval: preceptor generate --system {last.get('base_system')} --collection retrieval-{last['stage']}; "
                   f"the same for {last.get('system')}; then preceptor pairs make --systems {last.get('base_system')},{last.get('system')}.")


@click.command("negatives")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--stage", required=True, help="Stage the rows are meant for (recorded in each row and the manifest).")
@click.option("--source", type=click.Choice(["all", "expert", "llm", "metric"]), default="all", show_default=True,
              help="Whose verdicts: all takes experts first, then the LLM judge, then metric judges.")
@click.option("--split", default="train", show_default=True, help="Prompt split(s) to use: train, val, test, all, or a list.")
@click.option("--import", "into_stage", is_flag=True, help="Also import the rows into the stage.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def export_negatives_cmd(project_dir: str | None, out: str, stage: str, source: str, split: str, into_stage: bool,
                         force: bool, as_json: bool) -> None:
    """Write judged pairs as (prompt, chosen as positive, rejected as hard negative) JSONL rows for a stage."""
    from preceptor.engine.export.negatives import NegativesOptions, export_negatives

    opts = NegativesOptions(stage=stage, source=source, split=split, force=force, into_stage=into_stage)
    err = out == "-"  # the rows go to stdout, so the summary goes to stderr
    with open_project(project_dir) as project, stdout_target(out, ".jsonl") as path:
        s = drive(export_negatives(project, path, opts), "export negatives", quiet=as_json)
    if as_json:
        echo_json(s, err=err)
        return
    say(f"Wrote {s['n']} rows to {'stdout' if err else s['path']} (sha256 {s['sha256'][:12]}…).", err=err)
    if s["excluded"]:
        say("Excluded: " + ", ".join(f"{k} {v}" for k, v in sorted(s["excluded"].items())) + ".", err=err)
    if "imported" in s:
        say(f"Imported {s['imported']} of them into stage {stage!r}.", err=err)
    elif not err:
        click.echo(f"Import them with: preceptor import-pairs {s['path']} --stage {stage}")
