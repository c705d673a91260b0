"""Builders for judged projects used by the stats and export tests (no tests here).

Prompts, systems and outputs go through the db layer; pairs and judgments are inserted
with the same columns the judging engine writes (preceptor/db/migrations.py m002_judging).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.db.store import now

_clock = itertools.count()


class Judged:
    """A small judged project: ``prompt()``, ``answer()``, ``pair()``, ``vote()``."""

    def __init__(self, project: Any) -> None:
        self.project = project
        self.store = project.store
        self.systems: dict[str, int] = {}
        self.n = 0

    def system(self, name: str, role: str = "custom") -> int:
        if name not in self.systems:
            self.systems[name] = q_systems.upsert(self.store, name, role=role, backend="imported", imported=True).id
        return self.systems[name]

    def prompt(self, text: str | None = None, *, split: str = "val", task: str | None = "ddi",
               collection: str = "main", kind: str = "prompts", bad: str | None = None) -> int:
        self.n += 1
        text = text or f"Explain interaction number {self.n} between drug X{self.n} and drug Y{self.n}."
        with self.store.tx():
            q_prompts.ensure_collection(self.store, collection, kind)
            q_prompts.insert_many(self.store, [(text, f"h{self.n}-{text}", f"reference {self.n}", split, task,
                                                f"g{self.n}", collection, None, "test", now())])
        pid = self.store.scalar("SELECT max(id) FROM prompts")
        if bad:
            q_prompts.set_bad_item(self.store, pid, bad)
        return int(pid)

    def answer(self, prompt_id: int, system: str, text: str, *, cost: float | None = None) -> int:
        sid = self.system(system)
        q_outputs.record(self.store, prompt_id, sid, text=text, cost=cost)
        return int(self.store.scalar("SELECT id FROM outputs WHERE prompt_id = ? AND system_id = ?", (prompt_id, sid)))

    def pair(self, prompt_id: int, texts: dict[str, str]) -> tuple[int, dict[str, int]]:
        """A pair between two systems' answers; returns (pair id, {system: output id})."""
        outs = {s: self.answer(prompt_id, s, t) for s, t in texts.items()}
        a, b = sorted(outs.values())
        with self.store.tx():
            pid = self.store.execute("INSERT INTO pairs (prompt_id, output_a, output_b, split, created_at) VALUES (?,?,?,?,?)",
                                     (prompt_id, a, b, "val", now())).lastrowid
        return int(pid), outs

    def vote(self, pair_id: int, outs: dict[str, int], winner: str | None, *, kind: str = "expert",
             judge: str = "ann", verdict: str | None = None, left: str | None = None, confidence: float | None = None,
             unsafe: tuple[str, ...] = (), repeat: bool = False, supersedes: int | None = None,
             orders: tuple[tuple[str, str], ...] = ()) -> int:
        """``winner`` a system name (verdict win) or None with ``verdict`` tie/both_bad/unparsed/....

        ``orders`` = ((left system, "A"|"B"|"tie"|"both_bad"), ...) as the LLM judge keeps them in meta.
        """
        a, b = self.store.one("SELECT output_a, output_b FROM pairs WHERE id = ?", (pair_id,))
        left_id = outs[left] if left else a
        win_id = outs[winner] if winner else None
        v = "win" if winner else (verdict or "tie")
        ua = int(any(outs[s] == a for s in unsafe))
        ub = int(any(outs[s] == b for s in unsafe))
        meta = json.dumps({"orders": [{"left": outs[lft], "winner": w} for lft, w in orders]}) if orders else None
        stamp = f"2026-01-01T00:00:00.{next(_clock):06d}Z"
        with self.store.tx():
            jid = self.store.execute(
                """INSERT INTO judgments (pair_id, judge_kind, judge_id, left_output_id, winner_output_id, verdict,
                   confidence, unsafe_a, unsafe_b, repeat, supersedes, meta, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (pair_id, kind, judge, left_id, win_id, v, confidence, ua, ub, int(repeat), supersedes, meta, stamp),
            ).lastrowid
        return int(jid)

    def metric(self, output_id: int, name: str, value: float, reference: str = "reference") -> None:
        with self.store.tx():
            self.store.execute("INSERT INTO metrics (output_id, name, reference, value, created_at) VALUES (?,?,?,?,?)",
                               (output_id, name, reference, value, now()))
