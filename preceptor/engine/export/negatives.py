"""``preceptor export negatives``: judged pairs as (query, positive, hard negative) rows for a curriculum stage.

The chosen answer becomes the positive and the rejected one the hard negative; experts'
verdicts come first, then the LLM judge's, then metric judges' (``JUDGE_PRIORITY``).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import embed as q_embed
from preceptor.db.store import now
from preceptor.engine.embed.data import PairImportOptions, import_pairs
from preceptor.engine.events import Done, EventStream, Log, check_cancel
from preceptor.errors import PreceptorError
from preceptor.text import identity

if TYPE_CHECKING:
    from preceptor.project import Project

JUDGE_PRIORITY = ("expert", "llm", "metric", "imported")

@dataclass(frozen=True)
class NegativesOptions:
    stage: str
    source: str = "all"  # "expert" | "llm" | "metric" | "all"
    split: str = "train"  # "train" | "val" | "test" | "all" or comma list
    force: bool = False
    into_stage: bool = False

    def __post_init__(self) -> None:
        if self.source not in ("all", "expert", "llm", "metric", "imported"):
            raise PreceptorError("Invalid option", f"--source {self.source!r} is not one of all, expert, llm, metric",
                                 "Use --source all (experts first, then the LLM judge, then metrics).")

def _top_doc(text: str | None, backend: str | None) -> str | None:
    """A retriever's answer is a ranked list: its top document is what it 'chose'."""
    if text is None:
        return None
    if backend == "retriever":
        from preceptor.engine.embed.retrievers import parse_ranked

        ranked = parse_ranked(text)
        return ranked[0][2] if ranked else None
    return text

def negative_records(project: Project, opts: NegativesOptions) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(rows, excluded counts): one (anchor, positive, negative) row per judged pair."""
    store = project.store
    kinds = None if opts.source == "all" else [opts.source]
    splits = None if opts.split in ("all", "") else [s.strip() for s in opts.split.split(",") if s.strip()]
    rows = q_embed.judged_pair_rows(store, kinds, splits)
    by_pair: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_pair.setdefault(r["pair_id"], []).append(r)
    excluded: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for pair_id, js in by_pair.items():
        kind = next(k for k in (*JUDGE_PRIORITY, js[0]["judge_kind"]) if any(j["judge_kind"] == k for j in js))
        mine = [j for j in js if j["judge_kind"] == kind]
        winners = {j["winner_output_id"] for j in mine}
        if len(winners) > 1:
            excluded["conflicting votes"] = excluded.get("conflicting votes", 0) + 1
            continue
        j = mine[-1]
        if j["bad_item"]:
            excluded["flagged bad item"] = excluded.get("flagged bad item", 0) + 1
            continue
        a_wins = j["winner_output_id"] == j["output_a"]
        chosen = _top_doc(j["text_a"] if a_wins else j["text_b"], j["backend_a"] if a_wins else j["backend_b"])
        rejected = _top_doc(j["text_b"] if a_wins else j["text_a"], j["backend_b"] if a_wins else j["backend_a"])
        if not chosen or not rejected:
            excluded["empty answer"] = excluded.get("empty answer", 0) + 1
            continue
        if identity(chosen) == identity(rejected):
            excluded["same text on both sides"] = excluded.get("same text on both sides", 0) + 1
            continue
        out.append({"anchor": j["prompt"], "positive": chosen, "negative": rejected, "group": j["group_key"],
                    "source": f"judgment:{j['judgment_id']} ({kind})",
                    "stage": opts.stage, "pair_id": pair_id, "judge_kind": kind, "split": j["split"]})
    return out, excluded

def export_negatives(project: Project, out: Path | str, opts: NegativesOptions, cancel: threading.Event | None = None) -> EventStream:
    """Write judged pairs as (anchor=prompt, positive=chosen, negative=rejected) JSONL for a stage."""
    out = Path(out)
    if out.exists() and not opts.force:
        raise PreceptorError("File exists", f"{out} already exists", "Choose a new file name, or pass --force to replace it.")
    yield Log("info", f"reading judged pairs (source {opts.source}, split {opts.split})")
    rows, excluded = negative_records(project, opts)
    check_cancel(cancel)
    if not rows:
        verdicts = q_embed.verdict_counts(project.store)
        seen = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "no judgments at all"
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(excluded.items())) or "none"
        raise PreceptorError(
            "Nothing to export",
            f"no judged pair with a winner matches source {opts.source!r} and split {opts.split!r} "
            f"(judgments in the project: {seen}; excluded: {dropped})",
            "Judge some pairs first (`preceptor judge ...`), or widen --source / --split.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    h = hashlib.sha256()
    with tmp.open("w", encoding="utf-8") as fh:
        for r in rows:
            line = json.dumps(r, ensure_ascii=False) + "\n"
            h.update(line.encode("utf-8"))
            fh.write(line)
    os.replace(tmp, out)
    manifest = {"kind": "negatives", "stage": opts.stage, "source": opts.source, "split": opts.split, "n": len(rows),
                "excluded": excluded, "sha256": h.hexdigest(), "created_at": now(),
                "columns": ["anchor", "positive", "negative", "group", "source"],
                "import": f"preceptor import-pairs {out} --stage {opts.stage}"}
    out.with_name(out.name + ".manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    q_embed.record_export(project.store, str(out), {"stage": opts.stage, "source": opts.source, "split": opts.split},
                          len(rows), h.hexdigest(), manifest)
    summary: dict[str, Any] = {"path": str(out), "n": len(rows), "sha256": h.hexdigest(), "excluded": excluded, "stage": opts.stage}
    if opts.into_stage:
        for ev in import_pairs(project, out, PairImportOptions(stage=opts.stage)):
            if isinstance(ev, Done):
                summary["imported"] = ev.summary["imported"]
            elif isinstance(ev, Log):
                yield ev
    yield Done(summary)
