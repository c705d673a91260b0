"""The team lead's review of judging: per pair, who voted what (experts, LLM and metric
judges), disagreements first. For the lead, never for experts while judging (it names
systems and shows others' votes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from preceptor.db import judging as q
from preceptor.engine.judging.pairs import PairFilter, resolve_filter

__all__ = ["ReviewRow", "review"]


@dataclass
class ReviewRow:
    pair_id: int
    prompt_id: int
    split: str
    systems: tuple[str, str]
    prompt: str
    experts: dict[str, str] = field(default_factory=dict)  # expert -> winning system name, "tie" or "both_bad"
    judges: dict[str, str] = field(default_factory=dict)  # "llm:NAME" / "metric:NAME" -> the same
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def verdicts(self) -> set[str]:
        return set(self.experts.values()) | set(self.judges.values())

    @property
    def disagreement(self) -> bool:
        return len(self.verdicts) > 1


def review(project: Any, *, expert: str | None = None, systems: tuple[str, str] | None = None,
           split: str | None = None) -> list[ReviewRow]:
    """Pairs with at least one verdict, disagreements first, then by pair id."""
    system_ids = None
    if systems:
        system_ids = resolve_filter(project.store, PairFilter(systems=systems)).system_ids
    out: dict[int, ReviewRow] = {}
    for r in q.review_votes(project.store, expert=expert, split=split, system_ids=system_ids):
        names = {r["output_a"]: r["system_a"] or "?", r["output_b"]: r["system_b"] or "?"}
        row = out.get(r["pair_id"])
        if row is None:
            row = out[r["pair_id"]] = ReviewRow(r["pair_id"], r["prompt_id"], r["split"],
                                                (r["system_a"] or "?", r["system_b"] or "?"), " ".join(r["prompt"].split()))
        verdict = names.get(r["winner_output_id"], "?") if r["verdict"] == "win" else r["verdict"]
        if r["judge_kind"] == "expert":
            row.experts[r["judge_id"]] = verdict
            if r["rationale"]:
                row.notes[r["judge_id"]] = r["rationale"]
        else:
            row.judges[f"{r['judge_kind']}:{r['judge_id']}"] = verdict
    return sorted(out.values(), key=lambda x: (not x.disagreement, x.pair_id))
