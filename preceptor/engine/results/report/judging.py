"""Judging sections of ``preceptor report``: win rates, the Bradley–Terry league, agreement,
bias and API spend (listed in :data:`preceptor.engine.results.report.SECTIONS`).

The statistics are computed once per report build (cached on the project object and the
options) and shared by the four judging sections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from preceptor.engine.results.report.base import Section, forest_svg, md_table
from preceptor.engine.results.stats import StatsOptions, compute, fmt

if TYPE_CHECKING:
    from preceptor.project import Project

_CACHE_ATTR = "_preceptor_stats_report_cache"


def _md(headers: list[str], rows: list[list[Any]]) -> str:
    return md_table(headers, rows, missing="-")


def _stats(project: Project, opts: Any) -> dict[str, Any]:
    from preceptor.db import exports as q

    split = getattr(opts, "split", None) or "val,test"
    collection = getattr(opts, "collection", None)
    seed = getattr(opts, "seed", None) or 0
    key = (split, collection, seed, q.judgments_fingerprint(project.store))
    cache = getattr(project, _CACHE_ATTR, None)
    if cache and cache[0] == key:
        return cache[1]
    res = compute(project, StatsOptions(by="task", split=split, collection=collection, seed=seed))
    setattr(project, _CACHE_ATTR, (key, res))
    return res


def _scope(res: dict[str, Any]) -> str:
    o = res["options"]
    where = f"split {o['split']}" + (f", collection {o['collection']}" if o["collection"] else "")
    return (f"{res['n_votes']} votes on {res['n_pairs']} pairs ({where}); 95 % intervals; "
            f"figures from fewer than {o['min_n']} observations are shown as “n too small”.")


def win_rates_section(project: Project, opts: Any) -> Section | None:
    res = _stats(project, opts)
    if not res["win_rates"]:
        return None
    rows, csv_rows = [], []
    for r in res["win_rates"]:
        rows.append([r.get("task") or "-", r["judge"], r["system_1"], r["system_2"], f"{r['wins_1']}–{r['wins_2']}",
                     r["ties"], r["both_bad"], r["inconsistent"], fmt(r["win_rate_1"])])
        w = r["win_rate_1"]
        csv_rows.append({"task": r.get("task"), "judge": r["judge"], "system_1": r["system_1"], "system_2": r["system_2"],
                         "wins_1": r["wins_1"], "wins_2": r["wins_2"], "ties": r["ties"], "both_bad": r["both_bad"],
                         "inconsistent": r["inconsistent"],
                         "win_rate_1": w["value"], "ci_low": (w["ci"] or [None, None])[0],
                         "ci_high": (w["ci"] or [None, None])[1], "n": w["n"], "method": w["method"], "note": w["note"]})
    md = (f"{_scope(res)}\n\nWin rate = the first system's share of decisive votes; ties and both-bad are "
          "shown apart (inconsistent: the LLM judge changed its verdict when the order was swapped).\n\n"
          + _md(["task", "judge", "system 1", "system 2", "wins", "ties", "both bad", "inconsistent",
                       "win rate 1 [95% CI]"], rows)
          + "\n\n![Win rates with 95% CIs](win_rates.svg)")
    bars = [(f"{r['judge']}: {r['system_1']} vs {r['system_2']}" + (f" ({r['task']})" if r.get("task") else ""),
             r["win_rate_1"]["value"], *(r["win_rate_1"]["ci"] or [None, None]), r["win_rate_1"]["n"])
            for r in res["win_rates"]]
    images = {"win_rates.svg": forest_svg("Win rate of system 1 (95% CI; dashed: 50%)", bars, ref=0.5,
                                          lo_bound=0.0, hi_bound=1.0)}
    return Section("judge_win_rates", "Expert and LLM-judge win rates", md, csv_rows=csv_rows, images=images)


def league_section(project: Project, opts: Any) -> Section | None:
    res = _stats(project, opts)
    if not res["bradley_terry"]:
        return None
    parts, csv_rows = [], []
    for kind, lg in res["bradley_terry"].items():
        note = f" — {lg['note']}" if lg.get("note") else ""
        parts.append(f"**{kind} votes** ({lg['n']} comparisons over {lg['prompts']} prompts){note}\n")
        if lg["rows"]:
            parts.append(_md(["#", "system", "Elo [95% CI]", "comparisons", "wins"],
                                   [[r["rank"], r["system"], fmt(r["elo"], pct=False, digits=0), r["comparisons"],
                                     f"{r['wins']:g}"] for r in lg["rows"]]))
        for r in lg["rows"]:
            e = r["elo"]
            csv_rows.append({"judge": kind, "rank": r["rank"], "system": r["system"], "elo": e["value"],
                             "ci_low": (e["ci"] or [None, None])[0], "ci_high": (e["ci"] or [None, None])[1],
                             "comparisons": r["comparisons"], "wins": r["wins"], "note": e["note"]})
        parts.append("")
    for kind, sc in (res.get("style_controlled") or {}).items():
        parts.append(f"**Style-controlled, {kind} votes** (answer length as a covariate; length coefficient "
                     f"{fmt(sc['length_coefficient'], pct=False)})\n")
        parts.append(_md(["#", "system", "Elo [95% CI]", "comparisons"],
                         [[r["rank"], r["system"], fmt(r["elo"], pct=False, digits=0), r["comparisons"]] for r in sc["rows"]]))
        if sc["lc_win_rates"]:
            parts += ["", _md(["system 1", "system 2", "n", "length-controlled win rate 1 [95% CI]"],
                              [[r["system_1"], r["system_2"], r["votes"], fmt(r["lc_win_rate_1"])]
                               for r in sc["lc_win_rates"]])]
        parts.append("")
    md = ("Bradley–Terry ratings (ridge-penalised: a weak Gaussian prior, λ = 0.01; ties half a win; 95 % CI the wider of a bootstrap over prompts and the prior's Laplace interval), on an Elo scale "
          "(1000 = the average system).\n\n" + "\n".join(parts))
    forest = [(f"{kind}: {r['system']}", r["elo"]["value"], *(r["elo"]["ci"] or [None, None]), r["comparisons"])
              for kind, lg in res["bradley_terry"].items() for r in lg["rows"]]
    images = {}
    if forest:
        images["league.svg"] = forest_svg("Bradley–Terry ratings, Elo scale (95% CI; dashed: 1000 = average)", forest,
                                          ref=1000.0)
        md = md.rstrip() + "\n\n![Bradley–Terry forest plot](league.svg)"
    return Section("judge_league", "Bradley–Terry league", md.rstrip() + "\n", csv_rows=csv_rows, images=images)


def agreement_section(project: Project, opts: Any) -> Section | None:
    res = _stats(project, opts)
    ag = res["agreement"]
    if not ag["raters"] and not ag["self_consistency"] and not res["metric_vs_expert"] and not (res.get("floors") or {}).get("n"):
        return None
    parts, csv_rows = [], []
    if ag["raters"]:
        parts.append(_md(
            ["raters", "overlap", "kappa (with ties)", "raw (with ties)", "kappa (no ties)", "raw (no ties)"],
            [[f"{r['rater_1']} ~ {r['rater_2']}", r["overlap"], fmt(r["with_ties"]["kappa"], pct=False),
              fmt(r["with_ties"]["raw"]), fmt(r["without_ties"]["kappa"], pct=False), fmt(r["without_ties"]["raw"])]
             for r in ag["raters"]]))
        for r in ag["raters"]:
            csv_rows.append({"what": "agreement", "who": f"{r['rater_1']} ~ {r['rater_2']}", "n": r["with_ties"]["n"],
                             "kappa": r["with_ties"]["kappa"]["value"], "raw": r["with_ties"]["raw"]["value"],
                             "kappa_no_ties": r["without_ties"]["kappa"]["value"],
                             "raw_no_ties": r["without_ties"]["raw"]["value"]})
    if ag["self_consistency"]:
        parts += ["", "Self-consistency on the repeat sample:", "",
                  _md(["judge", "n", "same verdict", "kappa"],
                            [[r["rater"], r["n"], fmt(r["raw"]), fmt(r["kappa"], pct=False)] for r in ag["self_consistency"]])]
        for r in ag["self_consistency"]:
            csv_rows.append({"what": "self_consistency", "who": r["rater"], "n": r["n"], "kappa": r["kappa"]["value"],
                             "raw": r["raw"]["value"]})
    fl = res.get("floors") or {}
    if fl.get("n"):
        parts += ["", f"Floors a judge must beat, on the {fl['n']} pairs with a human majority: the longer answer wins "
                  f"{fmt(fl['longer_answer_wins'])}, the first shown wins {fmt(fl['first_shown_wins'])}, chance 50 %."]
    for r in res.get("llm_audit") or []:
        verdict = {True: "beats every floor with its CI", False: "does not beat every floor with its CI",
                   None: "cannot be compared with its floors yet"}[r.get("beats_floors")]
        parts += ["", f"LLM judge {r['judge']} ({r['scope']}, n={r['n']}): agrees with the humans' majority "
                  f"{fmt(r['agrees_with_humans'])}; on the same pairs the longer answer wins {fmt(r['floor_longer_wins'])}, "
                  f"the first shown wins {fmt(r['floor_first_shown_wins'])}, chance 50 % — it {verdict}."]
    if res["metric_vs_expert"]:
        parts += ["", "Which automatic metric predicts the experts (the metric's winner is the experts' winner), "
                  "beside the same pairs' floors:", "",
                  _md(["metric", "reference", "agrees [95% CI]", "longer wins", "first shown wins", "chance",
                       "beats all (CI)", "metric ties"],
                            [[r["metric"], r["reference"], fmt(r["agrees_with_experts"]), fmt(r.get("floor_longer_wins")),
                              fmt(r.get("floor_first_shown_wins")), "50%",
                              {True: "yes", False: "no", None: "-"}[r.get("beats_floors")], r["metric_ties"]]
                             for r in res["metric_vs_expert"]])]
        for r in res["metric_vs_expert"]:
            csv_rows.append({"what": "metric_vs_expert", "who": f"{r['metric']} ({r['reference']})",
                             "n": r["agrees_with_experts"]["n"], "raw": r["agrees_with_experts"]["value"]})
    md = "Cohen's kappa and raw agreement on the pairs both judged.\n\n" + "\n".join(parts)
    return Section("judge_agreement", "Agreement", md, csv_rows=csv_rows)


def bias_section(project: Project, opts: Any) -> Section | None:
    res = _stats(project, opts)
    b = res["bias"]
    if not b["position"] and not b["length"]:
        return None
    parts = [_md(["judge", "left answer wins", "verdict survives the swap"],
                       [[r["rater"], fmt(r["first_position_preference"]), fmt(r["position_consistency"])]
                        for r in b["position"]])]
    if b["length"]:
        parts += ["", _md(["judge kind", "the longer answer wins"],
                                [[r["judge"], fmt(r["longer_wins"])] for r in b["length"]])]
    csv_rows = [{"judge": r["rater"], "first_position": r["first_position_preference"]["value"],
                 "position_consistency": r["position_consistency"]["value"]} for r in b["position"]]
    csv_rows += [{"judge": r["judge"], "longer_wins": r["longer_wins"]["value"]} for r in b["length"]]
    md = "An unbiased judge sits near 50 % on both position and length.\n\n" + "\n".join(parts)
    return Section("judge_bias", "Judge bias", md, csv_rows=csv_rows)


def spend_section(project: Project, opts: Any) -> Section | None:
    from preceptor.db import exports as q

    sp = q.spend(project.store)
    if not sp["outputs_by_system"] and not sp["llm_cache_by_model"]:
        return None
    parts = []
    if sp["outputs_by_system"]:
        total = sum(r["cost"] for r in sp["outputs_by_system"])
        parts += [f"Generation (cost recorded with each output): **${total:.4f}**", "",
                  _md(["system", "outputs", "tokens in", "tokens out", "cost (USD)"],
                            [[r["system"], r["outputs"], r["prompt_tokens"], r["completion_tokens"], f"{r['cost']:.4f}"]
                             for r in sp["outputs_by_system"]]), ""]
    if sp["llm_cache_by_model"]:
        total = sum(r["cost"] for r in sp["llm_cache_by_model"])
        parts += [f"All API calls made (the LLM cache: generation and judging; cached replays cost nothing): "
                  f"**${total:.4f}**", "",
                  _md(["model", "calls", "tokens in", "tokens out", "cost (USD)"],
                            [[r["model"], r["calls"], r["prompt_tokens"], r["completion_tokens"], f"{r['cost']:.4f}"]
                             for r in sp["llm_cache_by_model"]])]
    csv_rows = [{"kind": "generation", "name": r["system"], "calls": r["outputs"], "cost": r["cost"]}
                for r in sp["outputs_by_system"]]
    csv_rows += [{"kind": "api_calls", "name": r["model"], "calls": r["calls"], "cost": r["cost"]}
                 for r in sp["llm_cache_by_model"]]
    md = ("The two tables overlap (an API generation is both an output and a cached call); the second is the "
          "bill.\n\n" + "\n".join(parts))
    return Section("api_spend", "API spend", md, csv_rows=csv_rows)
