"""Pairs of answers to the same prompt from two systems, and the pair filter used everywhere.

``preceptor pairs make --systems A,B`` builds one pair per prompt where both systems have a
successful output. Pairs are stored in canonical order (``output_a < output_b``), are
idempotent (running it again adds only what is new), never pair two identical texts
(those are counted and reported) and carry their prompt's split: train-split pairs are
DPO training data, val/test pairs compare systems.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preceptor.db import judging as q
from preceptor.db import systems as q_systems
from preceptor.db.prompts import SPLITS, PromptFilter
from preceptor.engine.events import Done, EventStream, Log, Progress, check_cancel
from preceptor.engine.judging.settings import JudgeSettings
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project


def unit_hash(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts`` (sides, overlap, repeats, order)."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def int_hash(*parts: Any) -> int:
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(h[:7], "big")  # fits a signed 64-bit SQLite integer


def parse_splits(split: str | None, where: str = "--split") -> tuple[str, ...] | None:
    """``None``/``"all"`` -> every split; ``"val,test"`` -> ("val", "test")."""
    if split is None or split.strip().lower() in ("", "all"):
        return None
    parts = tuple(dict.fromkeys(s.strip().lower() for s in split.split(",") if s.strip()))
    bad = [s for s in parts if s not in SPLITS]
    if bad:
        raise PreceptorError("Invalid split", f"{where} {split!r}: {bad[0]!r} is not train, val or test",
                             "Use train, val, test, all, or a list such as val,test.")
    return parts


def parse_systems(text: str | tuple[str, str] | list[str] | None, where: str = "--systems") -> tuple[str, str] | None:
    if text is None:
        return None
    parts = [s.strip() for s in text.split(",")] if isinstance(text, str) else [str(s).strip() for s in text]
    parts = [p for p in parts if p]
    if len(parts) != 2 or parts[0] == parts[1]:
        raise PreceptorError("Invalid systems", f"{where} {','.join(parts) or str(text)}: give two different systems",
                             "Write e.g. --systems base,teacher (names from `preceptor systems list`, or roles).")
    return parts[0], parts[1]


@dataclass(frozen=True)
class PairFilter:
    """Which pairs: the same selection for pairs make, judge, stats and export."""

    systems: tuple[str, str] | None = None
    split: str | None = None  # "train" | "val" | "test" | "all" | "val,test"
    task: str | None = None
    collection: str | None = None


def resolve_filter(store: Any, flt: PairFilter) -> q.PairQuery:
    """Turn names into ids; unknown systems or collections are errors that list what exists."""
    ids = None
    systems = parse_systems(flt.systems) if flt.systems else None
    if systems:
        a, b = (q_systems.resolve(store, n) for n in systems)
        if a.id == b.id:
            raise PreceptorError("Invalid systems", f"--systems {','.join(systems)} name the same system ({a.name})",
                                 "Give two different systems.")
        ids = (a.id, b.id)
    if flt.collection and not q.collection_exists(store, flt.collection):
        from preceptor.db import prompts as q_prompts

        names = ", ".join(c["name"] for c in q_prompts.collections(store)) or "none yet"
        raise PreceptorError("Unknown collection", f"no collection named {flt.collection!r}", f"Collections: {names}.")
    return q.PairQuery(system_ids=ids, splits=parse_splits(flt.split), task=flt.task,
                       collections=(flt.collection,) if flt.collection else None)


@dataclass(frozen=True)
class PairMakeOptions:
    systems: tuple[str, str]
    split: str = "all"
    collection: str | None = None
    task: str | None = None
    limit: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        parse_splits(self.split)
        if self.limit is not None and self.limit < 1:
            raise PreceptorError("Invalid option", f"--limit {self.limit} must be at least 1", "Leave it out for every prompt.")


def same_text(x: str, y: str) -> bool:
    return " ".join(x.split()) == " ".join(y.split())


def pairs_to_judge(store: Any, flt: PairFilter, judge_kind: str, judge_id: str, *, force: bool = False
                   ) -> tuple[list[dict[str, Any]], int, dict[int, int]]:
    """The selected pairs with their texts, less those this judge already judged (unless
    ``force``); returns (pairs, how many were skipped, {pair id: this judge's current judgment id})."""
    pairs = q.pairs_with_texts(store, resolve_filter(store, flt))
    done = q.current_judgment_ids(store, judge_kind, judge_id)
    if force:
        return pairs, 0, done
    todo = [p for p in pairs if p["id"] not in done]
    return todo, len(pairs) - len(todo), done


def make_pairs(project: Project, opts: PairMakeOptions, cancel: threading.Event | None = None) -> EventStream:
    """Build the pairs between two systems; yields events, ends with ``Done(summary)``."""
    store = project.store
    settings: JudgeSettings = project.section("judge", JudgeSettings)
    names = parse_systems(opts.systems)
    assert names is not None
    sx, sy = (q_systems.resolve(store, n) for n in names)
    if sx.id == sy.id:
        raise PreceptorError("Invalid systems", f"--systems {','.join(names)} name the same system ({sx.name})",
                             "Give two different systems.")
    flt = resolve_filter(store, PairFilter(systems=None, split=opts.split, task=opts.task, collection=opts.collection))
    pflt = PromptFilter(split=list(flt.splits) if flt.splits else None,
                        collections=list(flt.collections) if flt.collections else None, task=opts.task)
    where, params = pflt.where("p")
    rows = q.outputs_for_pairing(store, sx.id, sy.id, where, params)
    missing = q.count_prompts_missing_outputs(store, sx.id, sy.id, where, params)
    yield Progress(0, len(rows), f"{sx.name} vs {sy.name}")
    identical = 0
    candidates: list[tuple[int, tuple[Any, ...]]] = []
    for i, r in enumerate(rows):
        if i % 2000 == 0:
            check_cancel(cancel)
        if same_text(r["x_text"], r["y_text"]):
            identical += 1
            continue
        (oa, ta, sa), (ob, tb, sb) = sorted([(r["x_id"], r["x_text"], sx.id), (r["y_id"], r["y_text"], sy.id)])
        needed = settings.overlap_k if unit_hash(settings.seed, "overlap", oa, ob) < settings.overlap_share else 1
        key = int_hash(opts.seed, "queue", oa, ob)
        candidates.append((int_hash(opts.seed, "limit", r["prompt_id"]),
                           (r["prompt_id"], oa, ob, r["split"], 0.0, sa, sb, needed, key)))
    if opts.limit is not None:
        candidates.sort(key=lambda c: c[0])
        candidates = candidates[: opts.limit]
    by_split: dict[str, int] = {}
    for _, row in candidates:
        by_split[row[3]] = by_split.get(row[3], 0) + 1
    created = q.insert_pairs(store, [row for _, row in candidates])
    check_cancel(cancel)
    summary = {
        "systems": [sx.name, sy.name], "eligible": len(rows), "created": created,
        "existing": len(candidates) - created, "identical": identical, "missing_output": missing,
        "by_split": by_split, "overlap": sum(1 for _, r in candidates if r[7] > 1),
    }
    if identical:
        yield Log("info", f"{identical} prompts have identical answers from both systems: no pair made")
    if missing:
        yield Log("info", f"{missing} prompts lack a successful output from {sx.name} or {sy.name}")
    if not rows:
        yield Log("warning", f"no prompt has outputs from both {sx.name} and {sy.name}: generate them first "
                             f"(`preceptor generate --system {sx.name}`)")
    yield Progress(len(rows), len(rows), f"{created} new pairs")
    yield Done(summary)


def pair_summary(project: Project) -> list[dict[str, Any]]:
    return q.pair_summary(project.store)
