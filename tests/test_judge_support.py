"""Helpers shared by the judging tests (no tests here): a project with two systems' answers."""

from __future__ import annotations

from typing import Any

from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.db.store import now
from preceptor.engine.ingest.splits import text_hash


def seed_outputs(project: Any, n: int, *, splits: tuple[str, ...] = ("train", "val", "test"), identical_every: int = 0,
                 systems: tuple[str, str] = ("alpha", "beta"), reference: bool = True,
                 collection: str = "items") -> dict[str, Any]:
    """``n`` prompts (split round-robin) answered by two imported systems; every
    ``identical_every``-th prompt gets the same answer from both."""
    store = project.store
    sx = q_systems.upsert(store, systems[0], role="custom", backend="imported", imported=True)
    sy = q_systems.upsert(store, systems[1], role="custom", backend="imported", imported=True)
    ts = now()
    rows = []
    for i in range(n):
        text = f"Question {i}: how does drug {i} interact with drug {i + 1}?"
        rows.append((text, text_hash(text), f"Drug {i} inhibits CYP3A so drug {i + 1} exposure rises." if reference else None,
                     splits[i % len(splits)], "ddi", f"g{i}", collection, None, "test", ts))
    with store.tx():
        q_prompts.ensure_collection(store, collection)
        q_prompts.insert_many(store, rows)
    ids = [r["id"] for r in store.all("SELECT id FROM prompts WHERE collection = ? ORDER BY id", (collection,))]
    outs = []
    for k, pid in enumerate(ids):
        a = f"Answer x{k}: drug {k} raises the level of drug {k + 1} through CYP3A inhibition."
        b = a if identical_every and k % identical_every == 0 else f"Answer y{k}: no interaction is expected for {k}."
        outs.append(dict(prompt_id=pid, system_id=sx.id, text=a))
        outs.append(dict(prompt_id=pid, system_id=sy.id, text=b))
    q_outputs.record_many(store, outs)
    return {"prompt_ids": ids, "systems": (sx, sy)}


def make_all_pairs(project: Any, systems: tuple[str, str] = ("alpha", "beta"), **kw: Any) -> dict[str, Any]:
    from preceptor.engine.events import run
    from preceptor.engine.judging.pairs import PairMakeOptions, make_pairs

    return run(make_pairs(project, PairMakeOptions(systems=systems, **kw)))
