"""``preceptor eval`` (automatic metrics, cached) and ``preceptor report`` (md / html / csv)."""

from __future__ import annotations

import click

from preceptor.cli.common import cancel_on_sigint, drive, echo_json, open_project, project_option


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@click.command("eval")
@click.option("--systems", help="Comma list of systems (names or roles) to score (default: every system with outputs).")
@click.option("--reference", help="gold (the prompt's reference), teacher, or a system name (default: [eval] reference).")
@click.option("--split", help="train, val, test, a comma list, or all (default: [eval] split, val,test).")
@click.option("--collection", help="Only prompts of this collection.")
@click.option("--metrics", "metric_names", help="Comma list of metrics (default: [eval] metrics). "
              "Known: rougeL, bleu, bertscore_f1, facet_f1, key_terms, triple_exact, triple_soft, ppl.")
@click.option("--force", is_flag=True, help="Recompute values that are already stored.")
@click.option("--win", "win_pair", help="Also print the win rate of A over B by metric, e.g. --win ft,base.")
@click.option("--metric", "win_metric", help="Metric for --win (default: [eval] win_metric).")
@click.option("-n", "--n", "sample_n", type=int, help="Sample N shared items for --win (reproducible by --seed).")
@click.option("--seed", type=int, help="Seed for --win sampling (default: [eval] seed).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@project_option
def eval_cmd(project_dir: str | None, systems: str | None, reference: str | None, split: str | None,
             collection: str | None, metric_names: str | None, force: bool, win_pair: str | None,
             win_metric: str | None, sample_n: int | None, seed: int | None, as_json: bool) -> None:
    """Score outputs against their reference; values are stored and reused on the next run."""
    from preceptor.engine.evaluation.evaluate import EvalOptions, run_eval, settings, win_rate
    from preceptor.engine.results.report import ReportOptions, terminal_summary
    from preceptor.errors import PreceptorError

    opts = EvalOptions(systems=_csv(systems), reference=reference, split=split, collection=collection,
                       metrics=_csv(metric_names), force=force)
    with open_project(project_dir) as project:
        st = settings(project)
        summary = drive(run_eval(project, opts, cancel=cancel_on_sigint(), st=st), "eval", quiet=as_json)
        win = None
        if win_pair:
            pair = _csv(win_pair) or []
            if len(pair) != 2:
                raise PreceptorError("Invalid option", f"--win {win_pair!r} must name two systems", "Write it as --win ft,base.")
            win = win_rate(project, pair[0], pair[1], metric=win_metric or st.win_metric, reference=summary["reference"],
                           split=summary["split"], collection=collection, n=sample_n,
                           seed=st.seed if seed is None else seed, margin=st.tie_margin)
        if as_json:
            echo_json({**summary, "win_rate": win})
            return
        computed, cached = summary["computed"], summary["cached"]
        click.echo(f"Scored {summary['outputs']} outputs against {summary['reference']}: {computed} values computed, "
                   f"{cached} reused from the cache ({summary['seconds']} s).")
        click.echo(terminal_summary(project, ReportOptions(reference=summary["reference"], split=summary["split"],
                                                           collection=collection, systems=_csv(systems))))
        if win:
            if win["n"]:
                click.echo(f"\nWin rate {win['a']} over {win['b']} by {win['metric']}: {win['win_rate']:.3f} "
                           f"[{win['lo']:.3f}, {win['hi']:.3f}] (wins {win['wins']}, ties {win['ties']}, "
                           f"losses {win['losses']}, n={win['n']}{', sampled' if win['sampled'] else ''})")
            else:
                click.echo(f"\nWin rate {win['a']} over {win['b']}: no shared items with {win['metric']} values.")


@click.command("report")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "csv"]), default="md", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for the files (default: the project's reports/).")
@click.option("--reference", help="Which stored reference to report (default: [eval] reference).")
@click.option("--split", help="Splits to report (default: [eval] split).")
@click.option("--collection", help="Only prompts of this collection.")
@click.option("--systems", help="Comma list of systems (default: every system with values).")
@click.option("--metric", help="Metric ranking examples and heading the win-rate table (default: [eval] win_metric).")
@click.option("-n", "--n", "sample_n", type=int, help="Sample N items per pair for win rates.")
@click.option("--seed", type=int, help="Seed for sampling.")
@click.option("--examples", type=int, default=3, show_default=True, help="Best and worst items shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@project_option
def report_cmd(project_dir: str | None, fmt: str, out_dir: str | None, reference: str | None, split: str | None,
               collection: str | None, systems: str | None, metric: str | None, sample_n: int | None,
               seed: int | None, examples: int, as_json: bool) -> None:
    """Write the project report (timestamped; never overwrites) and print a summary."""
    from preceptor.engine.results.report import ReportOptions, build_report, terminal_summary

    opts = ReportOptions(reference=reference, split=split, collection=collection, systems=_csv(systems),
                         metric=metric, n=sample_n, seed=seed, examples=examples)
    with open_project(project_dir) as project:
        path = build_report(project, fmt=fmt, out_dir=out_dir, opts=opts)
        if as_json:
            echo_json({"path": str(path), "format": fmt})
            return
        click.echo(terminal_summary(project, opts))
    click.echo(f"\nReport written: {path}")
