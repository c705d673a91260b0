"""``preceptor generate``: answers from one system for a selection of prompts."""

from __future__ import annotations

import click

from preceptor.cli.common import cancel_on_sigint, drive, echo_json, open_project, project_option


@click.command("generate")
@click.option("--system", "system", required=True,
              help="System name, or a role (base, teacher, ft, dpo) meaning the latest succeeded one with that role.")
@click.option("--split", default="all", show_default=True, help="train, val, test, all, or a list such as val,test.")
@click.option("--collection", help="Only this collection (imported judgment collections are used only when named).")
@click.option("--limit", type=int, help="Only the first N selected prompts.")
@click.option("--force", is_flag=True, help="Answer again prompts the system has already answered.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@project_option
def generate_cmd(project_dir: str | None, system: str, split: str, collection: str | None, limit: int | None,
                 force: bool, as_json: bool) -> None:
    """Generate answers with a system (resumable: already answered prompts are skipped).

    Failed items are stored with their error and retried by the next run. Ctrl-C stops
    after the current batch; what was answered is kept.
    """
    from preceptor.engine.generation.generate import GenerateOptions, generate

    opts = GenerateOptions(system=system, split=split, collection=collection, limit=limit, force=force)
    with open_project(project_dir) as project:
        summary = drive(generate(project, opts, cancel_on_sigint()), "generate", quiet=as_json)
    if as_json:
        echo_json(summary)
        return
    click.echo(format_summary(summary))


def format_summary(s: dict) -> str:
    lines = [f"{s['system']}: {s['done']} answered, {s['failed']} failed, {s['skipped']} already done "
             f"(of {s['selected']} selected) in {s['seconds']:.1f} s"]
    detail = f"tokens: {s['prompt_tokens']} prompt + {s['completion_tokens']} completion"
    if s.get("tokens_per_s"):
        detail += f" ({s['tokens_per_s']:.1f} new tok/s, {s.get('threads')} thread(s), batch {s.get('batch_size')}, {s.get('dtype')})"
    lines.append(detail)
    if "calls" in s:
        lines.append(f"API: {s['calls']} calls, {s['retries']} retries, {s['cache_hits']} from cache, cost ${s['cost']:.4f}"
                     + (f"; budget reached, {s['budget_stopped']} left for the next run" if s.get("budget_stopped") else ""))
    elif s.get("cost"):
        lines.append(f"cost: ${s['cost']:.4f}")
    return "\n".join(lines)
