"""Browsing a project's data: search prompts, open one item with every answer, metric and vote.

Used by the TUI's Data screen (and anything else that shows items); no UI code here.
"""

from __future__ import annotations

from typing import Any

from preceptor.db import judging as q_judging
from preceptor.db import metrics as q_metrics
from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems


def search_prompts(project: Any, query: str, limit: int = 500) -> tuple[list[q_prompts.Prompt], int]:
    """Prompts whose text or reference contains ``query`` (case-insensitive) or whose task /
    split equals it, first ``limit`` of them, and how many matched in all."""
    return q_prompts.search(project.store, query, limit)


def item_details(project: Any, prompt_id: int) -> dict[str, Any]:
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
