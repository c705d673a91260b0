"""The one vote model: a judgment row, whoever cast it, oriented on its pair's outputs.

Every consumer of judgments (statistics, exports, the queue) reads votes through
:func:`load_votes` / :func:`vote_from_row`, so a vote means the same thing everywhere:
``label`` is "a" / "b" (output_a / output_b won), "tie", "both_bad", "unparsed" or
"inconsistent", whatever side the judge saw it on (``left``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

JUDGE_CHOICES = ("all", "expert", "llm", "metric", "imported")

HUMAN_KINDS = ("expert", "imported")

DECISIVE = "win"

@dataclass(slots=True)
class Vote:
    """One effective judgment, oriented on the pair's outputs (a = output_a, b = output_b)."""

    pair_id: int
    prompt_id: int
    task: str | None
    kind: str
    judge: str
    verdict: str
    label: str  # "a" | "b" | "tie" | "both_bad" | "unparsed" | "inconsistent"
    left: str | None  # which output was shown on the left: "a" | "b" | None
    system_a: str
    system_b: str
    len_a: int
    len_b: int
    repeat: bool
    confidence: float | None
    orders: tuple[tuple[str, str], ...] = ()  # LLM judge: (left "a"|"b", label) per order asked

    @property
    def rater(self) -> str:
        return f"{self.kind}:{self.judge}"

    @property
    def decisive(self) -> bool:
        return self.label in ("a", "b")

    def winner_system(self) -> str | None:
        return self.system_a if self.label == "a" else self.system_b if self.label == "b" else None

def vote_from_row(r: dict[str, Any]) -> Vote:
    verdict = r["verdict"]
    if verdict == DECISIVE:
        w = r["winner_output_id"]
        label = "a" if w == r["output_a"] else "b" if w == r["output_b"] else "unparsed"
    else:
        label = verdict
    lo = r["left_output_id"]
    left = "a" if lo == r["output_a"] else "b" if lo == r["output_b"] else None
    return Vote(r["pair_id"], r["prompt_id"], r["task"], r["judge_kind"], str(r["judge_id"]), verdict, label, left,
                r["system_a"], r["system_b"], int(r["len_a"] or 0), int(r["len_b"] or 0), bool(r["repeat"]),
                r["confidence"], _orders(r))

def _orders(r: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The orders an LLM judge was asked in (``meta.orders``: left output id, winner A/B/tie/both_bad)."""
    meta = r.get("meta")
    if not meta:
        return ()
    try:
        orders = json.loads(meta).get("orders") or []
    except (ValueError, AttributeError):
        return ()
    out = []
    for o in orders:
        if not isinstance(o, dict):
            continue
        left = "a" if o.get("left") == r["output_a"] else "b" if o.get("left") == r["output_b"] else None
        w = o.get("winner")
        if left is None or w is None:
            continue
        label = left if w == "A" else ("b" if left == "a" else "a") if w == "B" else str(w)
        out.append((left, label))
    return tuple(out)

def kinds_of(judge: str) -> tuple[str, ...] | None:
    return {"all": None, "expert": HUMAN_KINDS, "imported": ("imported",), "llm": ("llm",), "metric": ("metric",)}[judge]

def load_votes(project: Project, *, split: str | None = "val,test", collection: str | None = None,
               judge: str = "all") -> list[Vote]:
    """The effective judgments of a selection as votes (a superseded vote counts once: the newest)."""
    from preceptor.db import exports as q
    from preceptor.db.prompts import PromptFilter

    if collection and q.collection_kind(project.store, collection) is None:
        names = ", ".join(q.collection_names(project.store)) or "none"
        raise PreceptorError("Unknown collection", f"no collection named {collection!r}", f"Collections: {names}.")
    flt = PromptFilter(split=split, collections=[collection] if collection else None)
    return [vote_from_row(r) for r in q.votes(project.store, flt, kinds=kinds_of(judge))]
