"""Read models for the faces: a project's counts at a glance, browsing its data, its runs.

``preceptor status``, the app's Dashboard, Data and Train screens read through these
functions (the faces never query the store themselves); no UI code here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from preceptor.db import exports as q_exports
from preceptor.db import judging as q_judging
from preceptor.db import metrics as q_metrics
from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import runs as q_runs
from preceptor.db import systems as q_systems

if TYPE_CHECKING:
    from preceptor.project import Project


def project_status(project: Project) -> dict[str, Any]:
    """Counts of prompts (per split, imported label sets apart), systems, runs, pairs, judgments, exports."""
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
        "pairs": q_judging.count_all_pairs(store),
        "judgments": q_judging.judgment_counts_by_kind(store),
        "exports": q_exports.count_exports(store),
    }


def judging_progress(project: Project) -> dict[str, Any]:
    """Votes per expert and, per system pair and split, how many pairs have all their expert votes."""
    from preceptor.engine.judging.pairs import pair_summary

    votes = q_judging.expert_vote_counts(project.store)
    experts = [{"expert": name, "votes": votes.get(name, 0)} for _, name in q_judging.list_experts(project.store)]
    return {"experts": experts, "pairs": pair_summary(project)}


def search_prompts(project: Project, query: str, limit: int = 500) -> tuple[list[q_prompts.Prompt], int]:
    """Prompts whose text or reference contains ``query`` (case-insensitive) or whose task /
    split equals it, first ``limit`` of them, and how many matched in all."""
    return q_prompts.search(project.store, query, limit)


def item_details(project: Project, prompt_id: int) -> dict[str, Any]:
    """A prompt with every system's answer, its stored metrics and the votes on its pairs."""
    store = project.store
    prompt = q_prompts.get(store, prompt_id)
    names = {s.id: s.name for s in q_systems.all_systems(store)}
    outputs = q_outputs.for_prompt(store, prompt_id)
    ids = [o.id for o in outputs]
    refs = q_metrics.references_in_use(store)
    metrics: dict[int, dict[str, float]] = {}
    for ref in refs:
        for oid, values in q_metrics.all_values(store, ids, ref).items():
            for name, value in values.items():
                if value is not None:
                    metrics.setdefault(oid, {})[name if len(refs) == 1 else f"{name} ({ref})"] = value
    return {"prompt": prompt, "outputs": [(names.get(o.system_id, str(o.system_id)), o) for o in outputs],
            "metrics": metrics, "votes": q_judging.votes_for_prompt(store, prompt_id)}


def system_names(project: Project) -> list[str]:
    """Every system's name, in the order systems were added."""
    return [s.name for s in q_systems.all_systems(project.store)]


def default_generate_system(project: Project) -> str | None:
    """The system a new generation starts from: the latest base, else the first system."""
    systems = q_systems.all_systems(project.store)
    return next((s.name for s in systems if s.role == "base"), systems[0].name if systems else None)


def check_system(project: Project, name_or_role: str) -> None:
    """Refuse an unknown system (the error names the known ones)."""
    q_systems.resolve(project.store, name_or_role)


ACTIVE_SHOWN = ("queued", "running", "stalled")  # statuses as shown whose run may still change


def stalled_note(age: float | None) -> str:
    return f"no heartbeat for {age:.0f} s: the process exists but makes no progress (stopped or hung)"


def runs_overview(project: Project, limit: int = 200) -> list[dict[str, Any]]:
    """Runs newest first with their live state: status (dead processes marked interrupted first),
    the last step reached, the system a finished run registered, and its error or warning."""
    store = project.store
    q_runs.mark_dead_runs(store)
    names = {s.id: s.name for s in q_systems.all_systems(store)}
    out = []
    for r in q_runs.list_runs(store, limit=limit):
        last = q_runs.last_values(store, r.id)
        step = max((s for s, _ in last.values()), default=None)
        shown, age = q_runs.liveness(r)
        note = (r.error or r.warning or "").splitlines()[0] if (r.error or r.warning) else ""
        if shown == "stalled":
            note = stalled_note(age)
        out.append({"run": r, "id": r.id, "kind": r.kind, "status": shown, "created_at": r.created_at,
                    "step": step, "stage": r.config.get("stage"), "heartbeat_age_s": age,
                    "system": names.get(r.system_id) if r.system_id else None,
                    "note": note})
    return out
