"""``preceptor stats``: win rates, Bradley–Terry league, agreement and bias, with CIs."""

from __future__ import annotations

from typing import Any

import click

from preceptor.cli.common import echo_json, open_project, project_option, table


def _beats(flag: bool | None) -> str:
    """Whether a judge beats every floor with its CI (its lower bound above each)."""
    return "-" if flag is None else "yes" if flag else "no"


def render_text(res: dict[str, Any]) -> str:
    """The statistics as plain-text tables (the CLI's output)."""
    from preceptor.engine.results.stats import fmt

    o = res["options"]
    where = f"split {o['split']}" + (f", collection {o['collection']}" if o["collection"] else "") + f", judge {o['judge']}"
    lines = [f"Judgments: {res['n_votes']} votes (+{res['n_repeat_votes']} repeats) on {res['n_pairs']} pairs, "
             f"{res['n_prompts']} prompts ({where}). 95% CIs; figures under n={o['min_n']} are not shown."]
    if res.get("fallback_note"):
        lines.append(res["fallback_note"].capitalize() + ".")
    if res.get("note"):
        lines.append(res["note"].capitalize() + ".")
        if res.get("hint"):
            lines.append("Hint: " + res["hint"][0].upper() + res["hint"][1:] + ".")
        return "\n".join(lines)
    fl = res.get("floors") or {}
    if fl.get("n"):
        lines += ["", f"Floors a judge must beat (against the human labels, {fl['n']} pairs with a human majority)"]
        lines.append(table([["longer answer wins", fmt(fl["longer_answer_wins"])],
                            ["first shown wins", fmt(fl["first_shown_wins"])], ["chance", "50%"]],
                           ["rule", "agrees with humans [95% CI]"]))
    stop = res.get("stopping") or {}
    if stop:
        lines.append("Stopping signal (human votes): " + (stop.get("summary") or stop.get("note") or "-") + ".")
    for kind, league in res["bradley_terry"].items():
        lines += ["", f"Bradley–Terry league ({kind} votes, {league['n']} comparisons)"
                  + (f" — {league['note']}" if league.get("note") else "")]
        if league["rows"]:
            lines.append(table([[r["rank"], r["system"], fmt(r["elo"], pct=False, digits=0), r["comparisons"], f"{r['wins']:g}"]
                                for r in league["rows"]], ["#", "system", "elo [95% CI]", "n", "wins"]))
    for kind, sc in (res.get("style_controlled") or {}).items():
        lc = sc["length_coefficient"]
        lines += ["", f"Style-controlled league ({kind} votes; answer length as a covariate, coefficient "
                  f"{fmt(lc, pct=False)})"]
        lines.append(table([[r["rank"], r["system"], fmt(r["elo"], pct=False, digits=0), r["comparisons"]]
                            for r in sc["rows"]], ["#", "system", "elo [95% CI]", "n"]))
        if sc["lc_win_rates"]:
            lines.append(table([[r["system_1"], r["system_2"], r["votes"], fmt(r["lc_win_rate_1"])]
                                for r in sc["lc_win_rates"]],
                               ["system 1", "vs", "n", "length-controlled win rate 1 [95% CI]"]))
    if res["win_rates"]:
        by_task = "task" in res["win_rates"][0]
        lines += ["", "Win rates (first system's share of decisive votes; ties shown apart)"]
        head = (["task"] if by_task else []) + ["judge", "system 1", "vs", "wins", "ties", "both bad", "incons.",
                                                 "win rate 1 [95% CI]"]
        rows = []
        for r in res["win_rates"]:
            rows.append(([r["task"] or "-"] if by_task else []) + [
                r["judge"], r["system_1"], r["system_2"], f"{r['wins_1']}-{r['wins_2']}", r["ties"], r["both_bad"],
                r["inconsistent"], fmt(r["win_rate_1"])])
        lines.append(table(rows, head))
    ag = res["agreement"]
    if ag["raters"]:
        lines += ["", "Agreement (Cohen's kappa; raw agreement)"]
        lines.append(table([[f"{r['rater_1']} ~ {r['rater_2']}", r["overlap"],
                             fmt(r["with_ties"]["kappa"], pct=False), fmt(r["with_ties"]["raw"]),
                             fmt(r["without_ties"]["kappa"], pct=False), fmt(r["without_ties"]["raw"])]
                            for r in ag["raters"]],
                           ["raters", "n", "kappa (ties)", "raw (ties)", "kappa (no ties)", "raw (no ties)"]))
    if ag["self_consistency"]:
        lines += ["", "Self-consistency on the repeat sample"]
        lines.append(table([[r["rater"], r["n"], fmt(r["raw"]), fmt(r["kappa"], pct=False)] for r in ag["self_consistency"]],
                           ["judge", "n", "same verdict", "kappa"]))
    bias = res["bias"]
    if bias["position"]:
        lines += ["", "Position bias"]
        lines.append(table([[r["rater"], fmt(r["first_position_preference"]), fmt(r["position_consistency"])]
                            for r in bias["position"]], ["judge", "left answer wins", "survives the swap"]))
    if bias["length"]:
        lines += ["", "Length bias (the longer answer wins)"]
        lines.append(table([[r["judge"], fmt(r["longer_wins"])] for r in bias["length"]], ["judge", "longer wins"]))
    if res.get("llm_audit"):
        lines += ["", "LLM judge against the humans' majority, beside its floors"]
        lines.append(table([[r["judge"], r["scope"], r["n"], fmt(r["agrees_with_humans"]), fmt(r["floor_longer_wins"]),
                             fmt(r["floor_first_shown_wins"]), "50%", _beats(r.get("beats_floors"))]
                            for r in res["llm_audit"]],
                           ["judge", "pairs", "n", "agrees", "longer wins", "first shown wins", "chance", "beats all"]))
    if res["metric_vs_expert"]:
        lines += ["", "Which metric predicts the experts (metric's winner = experts' winner)"]
        lines.append(table([[r["metric"], r["reference"], fmt(r["agrees_with_experts"]), fmt(r.get("floor_longer_wins")),
                             fmt(r.get("floor_first_shown_wins")), "50%", _beats(r.get("beats_floors")), r["metric_ties"]]
                            for r in res["metric_vs_expert"]],
                           ["metric", "reference", "agrees", "longer wins", "first shown wins", "chance", "beats all",
                            "metric ties"]))
    return "\n".join(lines)


@click.command("stats")
@click.option("--by", type=click.Choice(["task"]), default=None, help="Break win rates down by task.")
@click.option("--judge", type=click.Choice(["all", "expert", "llm", "metric", "imported"]), default="all", show_default=True,
              help="Which judgments to use (expert includes imported human labels).")
@click.option("--split", default="val,test", show_default=True, help="Prompt splits: train, val, test, all or a list.")
@click.option("--collection", help="Only this collection (needed for imported human-label sets).")
@click.option("--min-n", type=int, default=5, show_default=True, help="Show 'n too small' below this many observations.")
@click.option("--n-boot", type=int, default=1000, show_default=True, help="Bootstrap replicates for the CIs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@project_option
def stats_cmd(project_dir: str | None, by: str | None, judge: str, split: str, collection: str | None, min_n: int,
              n_boot: int, seed: int, as_json: bool) -> None:
    """Win rates, Bradley–Terry league, agreement and biases, each with n and a 95% CI."""
    from preceptor.engine.results.stats import StatsOptions, compute

    opts = StatsOptions(by=by, judge=judge, split=split, collection=collection, min_n=min_n, n_boot=n_boot, seed=seed)
    with open_project(project_dir) as project:
        res = compute(project, opts)
    if as_json:
        echo_json(res)
    else:
        click.echo(render_text(res))
