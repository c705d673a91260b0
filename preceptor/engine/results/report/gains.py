"""The report's "What the loop gained" section: each trained system vs its parent and the teacher."""

from __future__ import annotations

from typing import Any

from preceptor.engine.results.report.base import Section, md_table


def gains_section(project: Any, opts: Any) -> Section | None:
    from preceptor.engine.results import gains as G

    split = opts.split or "val"
    res = G.compute(project, G.GainsOptions(split=split, collection=opts.collection))
    if not res["rows"]:
        return None
    head, rows = G.table_rows(res)
    flagged = [r for r in res["rows"] if r["regression"] or r["regressed_metrics"]]
    csv_rows = []
    for r in res["rows"]:
        w = r["win_rate"]
        row = {"system": r["child"], "vs": r["other"], "relation": r["relation"], "n": r["n"], "win_rate": w["value"],
               "win_ci_low": (w["ci"] or [None, None])[0], "win_ci_high": (w["ci"] or [None, None])[1],
               "regression": r["regression"], "run_id": r["lineage"]["run_id"], "data_sha256": r["lineage"]["data_sha256"]}
        for m, f in r["metrics"].items():
            row[f"diff_{m}"] = f["value"]
        for m, f in r["gap_closed"].items():
            row[f"gap_closed_{m}"] = f["value"]
        csv_rows.append(row)
    md = [f"Split {split}, against the gold reference. Win rate = the trained system's share of items where its "
          f"{res['win_metric']} is higher than the other's (ties half; 95 % Wilson CI). Δ = mean paired difference, "
          "gap closed = (child − parent) / (teacher − parent); both with a bootstrap over prompts.", "",
          md_table(head, rows)]
    if flagged:
        md += ["", "**Regressions:** " + "; ".join(f"{r['child']} vs {r['other']}" for r in flagged)]
    md += ["", "Lineage:", ""]
    seen = set()
    for r in res["rows"]:
        if r["child"] in seen:
            continue
        seen.add(r["child"])
        md += ["- " + G.lineage_text(r["lineage"]).replace("\n", "; ")]
    return Section("gains", "What the loop gained", "\n".join(md), csv_rows=csv_rows)
