"""A project's counts at a glance (``preceptor status``, the TUI dashboard)."""

from __future__ import annotations

from typing import Any

from preceptor.db import prompts as q_prompts
from preceptor.db import runs as q_runs
from preceptor.db import systems as q_systems


def project_status(project: Any) -> dict[str, Any]:
    store = project.store
    by_coll = q_prompts.counts_by_split(store)
    kinds = {c["name"]: c["kind"] for c in q_prompts.collections(store)}
    totals = {"train": 0, "val": 0, "test": 0}
    for name, splits in by_coll.items():
        if kinds.get(name) == "judgments":
            continue
        for s, n in splits.items():
            totals[s] += n
    systems = q_systems.all_systems(store)
    counts = q_systems.output_counts(store)
    judgments = {r[0]: r[1] for r in store.all(
        "SELECT judge_kind, COUNT(*) FROM judgments WHERE verdict != 'skip' GROUP BY judge_kind")}
    return {
        "project": str(project.root),
        "name": project.settings.name,
        "schema_version": store.schema_version,
        "prompts": {"total": sum(totals.values()), **totals},
        "collections": {n: {"kind": kinds.get(n, "prompts"), **s} for n, s in by_coll.items()},
        "systems": [
            {"name": s.name, "role": s.role, "backend": s.backend, "model": s.model,
             "outputs": counts.get(s.name, {}).get("ok", 0), "failed": counts.get(s.name, {}).get("failed", 0)}
            for s in systems
        ],
        "runs": q_runs.counts_by_status(store),
        "pairs": store.scalar("SELECT COUNT(*) FROM pairs") or 0,
        "judgments": judgments,
        "exports": store.scalar("SELECT COUNT(*) FROM exports") or 0,
    }
