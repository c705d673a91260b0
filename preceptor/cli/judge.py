"""``preceptor judge …`` (expert votes from scripts, the LLM and metric judges) and ``import-judgments``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from preceptor.cli.common import (
    LazySubgroup,
    cancel_on_sigint,
    drive,
    echo_json,
    open_project,
    project_option,
    table,
)
from preceptor.processes import yield_cpu
from preceptor.terminal import clean


def pair_filter_options(fn: Any) -> Any:
    """--systems A,B --split --task --collection: the pair selection used everywhere."""
    for opt in reversed([
        click.option("--systems", help="Two systems, e.g. base,ft (names or roles)."),
        click.option("--split", help="train, val, test, all, or a list such as val,test (default: all)."),
        click.option("--task", help="Only prompts of this task."),
        click.option("--collection", help="Only this collection (imported judgment sets are included only when named)."),
    ]):
        fn = opt(fn)
    return fn


def _filter(systems: str | None, split: str | None, task: str | None, collection: str | None) -> Any:
    from preceptor.engine.judging.pairs import PairFilter, parse_systems

    return PairFilter(systems=parse_systems(systems) if systems else None, split=split, task=task, collection=collection)


@click.group("judge", cls=LazySubgroup, lazy={"expert": "preceptor.cli.tui:judge_expert_cmd"})
def judge_group() -> None:
    """Judge pairs: experts (blind, in the app or scripted), an LLM judge, a metric judge."""


@judge_group.command("next")
@click.option("--as", "expert", required=True, metavar="NAME", help="The expert (see `preceptor experts list`).")
@pair_filter_options
@click.option("--json", "as_json", is_flag=True, help="Print the pair as JSON.")
@click.option("--order", type=click.Choice(["active", "random", "sequential"]), default=None,
              help="Queue order for this call (default: [judge] queue, active).")
@click.option("--why", is_flag=True, help="Also say why this pair was chosen (names the systems: not for blind judging).")
@project_option
def next_cmd(project_dir: str | None, expert: str, systems: str | None, split: str | None, task: str | None,
             collection: str | None, as_json: bool, order: str | None, why: bool) -> None:
    """Serve (and reserve) the next pair for an expert: the prompt and answers A and B, blind."""
    from preceptor.engine.judging.experts import ExpertSession
    from preceptor.engine.judging.queue import ExpertQueue

    reason: dict[str, Any] | None = None
    with open_project(project_dir) as project:
        session = ExpertSession(project, expert, _filter(systems, split, task, collection), detached=True)
        if order:
            session.queue = ExpertQueue(session.settings, order)
        pair = session.next()
        if why and pair is not None:
            reason = ({"order": session.queue.order, "why": "a repeat, sides swapped, for self-consistency"} if pair.repeat
                      else session.queue.explain(project.store, session.query))
    if pair is None:
        if as_json:
            echo_json(None)
        else:
            click.echo("Nothing left to judge for you under this selection.")
        return
    if as_json:
        echo_json({**pair.to_dict(), "why": reason} if why else pair.to_dict())
        return
    click.echo(f"Pair {pair.pair_id}  ({pair.done}/{pair.total} complete){'  [repeat]' if pair.repeat else ''}\n")
    click.echo(f"Prompt:\n{clean(pair.prompt)}\n")
    click.echo(f"A:\n{clean(pair.left.text)}\n")
    click.echo(f"B:\n{clean(pair.right.text)}\n")
    click.echo(f"Record with: preceptor judge record --as {expert!r} --pair {pair.pair_id} --verdict A|B|tie|both_bad")
    if reason is not None:
        click.echo(f"\nWhy this pair ({reason.get('order')} order): {reason.get('why')}")
        for alt in reason.get("alternatives", []):
            click.echo(f"  next best: pair {alt['pair_id']} ({' vs '.join(alt['matchup'])}, score {alt['score']})")
        if reason.get("stopping"):
            click.echo(f"League: {reason['stopping'].get('summary') or reason['stopping'].get('note')}")


@judge_group.command("record")
@click.option("--as", "expert", required=True, metavar="NAME")
@click.option("--pair", "pair_id", required=True, type=int, help="The pair id `judge next` printed.")
@click.option("--verdict", required=True, type=click.Choice(["A", "B", "tie", "both_bad"]),
              help="A/B: the side as `judge next` served it.")
@click.option("--unsafe", type=click.Choice(["A", "B", "both"]), help="Flag an answer as unsafe (as shown).")
@click.option("--note", help="A short rationale.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def record_cmd(project_dir: str | None, expert: str, pair_id: int, verdict: str, unsafe: str | None, note: str | None,
               as_json: bool) -> None:
    """Record an expert's verdict on a served pair (committed before this returns)."""
    from preceptor.engine.judging.experts import ExpertSession

    with open_project(project_dir) as project:
        session = ExpertSession(project, expert, detached=True)
        pair = session.served(pair_id)  # only a pair served to this expert (by `judge next`)
        jid = session.record(pair, verdict, unsafe=(unsafe,) if unsafe else (), note=note)
    if as_json:
        echo_json({"judgment_id": jid, "pair_id": pair_id, "verdict": verdict, "repeat": pair.repeat})
    else:
        click.echo(f"Recorded judgment {jid}: pair {pair_id}, {verdict}{' (repeat)' if pair.repeat else ''}.")


@judge_group.command("undo")
@click.option("--as", "expert", required=True, metavar="NAME")
@click.option("--json", "as_json", is_flag=True)
@project_option
def undo_cmd(project_dir: str | None, expert: str, as_json: bool) -> None:
    """Take back your last vote; the pair is served to you again."""
    from preceptor.engine.judging.experts import ExpertSession

    with open_project(project_dir) as project:
        pair = ExpertSession(project, expert, detached=True).undo()
    if as_json:
        echo_json(pair.to_dict() if pair else None)
    else:
        click.echo(f"Undone: pair {pair.pair_id} is yours to judge again." if pair else "Nothing to undo.")


@judge_group.command("history")
@click.option("--as", "expert", required=True, metavar="NAME")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@project_option
def history_cmd(project_dir: str | None, expert: str, limit: int, as_json: bool) -> None:
    """Your votes, newest first (change one with `judge change`)."""
    from preceptor.engine.judging.experts import ExpertSession

    with open_project(project_dir) as project:
        rows = ExpertSession(project, expert).history(limit)
    if as_json:
        echo_json(rows)
        return
    click.echo(table([[r["judgment_id"], r["pair_id"], r["verdict"] + (" (repeat)" if r["repeat"] else ""),
                       ",".join(r["unsafe"]), r["time"], r["prompt"]] for r in rows],
                     ["vote", "pair", "verdict", "unsafe", "time", "prompt"]))


@judge_group.command("change")
@click.option("--as", "expert", required=True, metavar="NAME")
@click.option("--vote", "judgment_id", required=True, type=int, help="The vote id from `judge history`.")
@click.option("--verdict", required=True, type=click.Choice(["A", "B", "tie", "both_bad"]))
@click.option("--unsafe", type=click.Choice(["A", "B", "both"]))
@click.option("--note")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def change_cmd(project_dir: str | None, expert: str, judgment_id: int, verdict: str, unsafe: str | None, note: str | None,
               as_json: bool) -> None:
    """Change a past vote (a new judgment supersedes it; the old one stays in the audit trail)."""
    from preceptor.engine.judging.experts import ExpertSession

    with open_project(project_dir) as project:
        jid = ExpertSession(project, expert).change(judgment_id, verdict, unsafe=(unsafe,) if unsafe else (), note=note)
    if as_json:
        echo_json({"changed": judgment_id, "judgment_id": jid, "verdict": verdict})
        return
    click.echo(f"Vote {judgment_id} changed: new judgment {jid}.")


@judge_group.command("flag")
@click.option("--as", "expert", required=True, metavar="NAME")
@click.option("--prompt", "prompt_id", required=True, type=int)
@click.option("--reason", required=True, help="What is wrong: broken prompt, wrong reference, …")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def flag_cmd(project_dir: str | None, expert: str, prompt_id: int, reason: str, as_json: bool) -> None:
    """Flag a bad item: the prompt leaves statistics, exports and the queue until cleared."""
    from preceptor.engine.judging.experts import ExpertSession

    with open_project(project_dir) as project:
        ExpertSession(project, expert).flag_bad_item(prompt_id, reason)
    if as_json:
        echo_json({"prompt_id": prompt_id, "flagged": True, "reason": reason})
        return
    click.echo(f"Prompt {prompt_id} flagged as a bad item.")


@judge_group.command("unflag")
@click.option("--prompt", "prompt_id", required=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def unflag_cmd(project_dir: str | None, prompt_id: int, as_json: bool) -> None:
    """Clear a bad-item flag."""
    from preceptor.engine.judging.experts import clear_bad_item

    with open_project(project_dir) as project:
        clear_bad_item(project.store, prompt_id)
    if as_json:
        echo_json({"prompt_id": prompt_id, "flagged": False})
        return
    click.echo(f"Prompt {prompt_id} is back in statistics and exports.")


@judge_group.command("flags")
@click.option("--json", "as_json", is_flag=True)
@project_option
def flags_cmd(project_dir: str | None, as_json: bool) -> None:
    """List the prompts flagged as bad items."""
    from preceptor.db import judging as q

    with open_project(project_dir) as project:
        rows = q.bad_items(project.store)
    if as_json:
        echo_json(rows)
        return
    click.echo(table([[r["id"], r["collection"], r["bad_item"], " ".join(r["text"].split())[:50]] for r in rows],
                     ["prompt", "collection", "reason", "text"]) if rows else "No bad items.")


def _print_llm_summary(s: dict[str, Any]) -> None:
    click.echo(f"LLM judge {s['judge']} ({s['backend']}, swap={s['swap']}): {s['pairs']} pairs judged")
    click.echo(f"  decisive {s['decisive']}, tie {s['tie']}, both_bad {s['both_bad']}, "
               f"inconsistent {s['inconsistent']}, unparsed {s['unparsed']}, failed {s['failed']}")
    click.echo(f"  calls per pair {s['calls_per_pair']}" + (f", re-asks {s['reasks']}" if "reasks" in s else "")
               + (f", cost ${s['cost']:.4f}" if s.get("cost") else "") + f", {s['seconds']} s")
    if s.get("skipped_existing"):
        click.echo(f"  {s['skipped_existing']} pairs already judged by this judge were skipped (--force to judge again)")


@judge_group.command("llm")
@pair_filter_options
@click.option("--system", help="Judge with this system (from [systems]).")
@click.option("--model", help="Judge with this model: a litellm string (API) or a local model/folder.")
@click.option("--api-base", help="OpenAI-compatible server URL for --model.")
@click.option("--swap", type=click.Choice(["always", "contested", "never"]), help="Judge both orders (default: [judge] swap, always).")
@click.option("--budget", type=float, help="Stop when the API spend reaches this many USD.")
@click.option("--reference-guided/--no-reference-guided", default=None, help="Show the judge the reference answer.")
@click.option("--limit", type=int, help="Judge at most N pairs.")
@click.option("--force", is_flag=True, help="Judge pairs this judge already judged again (the new verdict supersedes).")
@click.option("--json", "as_json", is_flag=True)
@project_option
def llm_cmd(project_dir: str | None, systems: str | None, split: str | None, task: str | None, collection: str | None,
            system: str | None, model: str | None, api_base: str | None, swap: str | None, budget: float | None,
            reference_guided: bool | None, limit: int | None, force: bool, as_json: bool) -> None:
    """Judge pairs with an LLM (default: the project's [judge] setting, offline the packaged model)."""
    from preceptor.engine.judging.llm_judge import LLMJudgeOptions, judge_llm

    opts = LLMJudgeOptions(pairs=_filter(systems, split, task, collection), system=system, model=model, api_base=api_base,
                           swap=swap, budget_usd=budget, reference_guided=reference_guided, limit=limit, force=force)
    cancel = cancel_on_sigint()
    with open_project(project_dir) as project:
        summary = drive(judge_llm(project, opts, cancel), "judge", quiet=as_json)
    if as_json:
        echo_json(summary)
    else:
        _print_llm_summary(summary)


@judge_group.command("metric")
@click.option("--metric", default="rougeL", show_default=True, help="A metric name (listed by `preceptor eval --help`).")
@pair_filter_options
@click.option("--force", is_flag=True, help="Judge again pairs this metric already judged.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def metric_cmd(project_dir: str | None, metric: str, systems: str | None, split: str | None, task: str | None,
               collection: str | None, force: bool, as_json: bool) -> None:
    """Vote per pair by an automatic metric against the reference (ties when equal)."""
    from preceptor.engine.judging.metric_judge import MetricJudgeOptions, judge_metric

    opts = MetricJudgeOptions(metric=metric, pairs=_filter(systems, split, task, collection), force=force)
    cancel = cancel_on_sigint()
    with open_project(project_dir) as project:
        s = drive(judge_metric(project, opts, cancel), "metric", quiet=as_json)
    if as_json:
        echo_json(s)
        return
    click.echo(f"Metric judge {s['metric']}: {s['pairs']} pairs (decisive {s['decisive']}, tie {s['tie']}); "
               f"{s['no_reference']} without a reference, {s['unscored']} unscored, {s['skipped_existing']} already judged.")


@click.command("import-judgments")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", required=True, type=click.Choice(["llmbar", "pandalm", "generic"]))
@click.option("--collection", help="Collection name (default: the file's stem). Kept out of the project's own statistics.")
@click.option("--json", "as_json", is_flag=True)
@project_option
def import_judgments_cmd(project_dir: str | None, file: str, fmt: str, collection: str | None, as_json: bool) -> None:
    """Import human pairwise labels (LLMBar, PandaLM, or a generic file) into their own collection."""
    from preceptor.engine.judging.imported import ImportJudgmentsOptions, import_judgments

    with open_project(project_dir) as project:
        yield_cpu()  # a bulk import gives way to experts voting on this machine
        s = drive(import_judgments(project, Path(file), ImportJudgmentsOptions(format=fmt, collection=collection)),
                  "import", quiet=as_json)
    if as_json:
        echo_json(s)
        return
    v = s["verdicts"]
    click.echo(f"Imported {s['items']} items into collection {s['collection']!r}: {s['prompts']} new prompts, "
               f"{s['pairs']} new pairs, {s['votes']} votes (win {v['win']}, tie {v['tie']}, both_bad {v['both_bad']}).")
    if s["identical"]:
        click.echo(f"{s['identical']} items with two identical answers were skipped.")
    if s["missing_labels"]:
        click.echo(f"{s['missing_labels']} missing labels (NaN) recorded no vote.")
    if s["existing_votes"]:
        click.echo(f"{s['existing_votes']} votes were already imported.")
