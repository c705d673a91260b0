"""Typed queries on ``experts``, ``pairs``, ``reservations``, ``repeats`` and ``judgments``.

Conventions the engine relies on:

* A judgment is never updated. Changing a vote inserts a new row whose ``supersedes``
  names the old one; a row is *current* when no other row supersedes it.
* Undoing a vote inserts a ``skip`` row with ``meta.undo`` that supersedes it: the
  pair becomes servable again for that expert and the old vote stops counting.
* ``pairs.expert_votes`` (a derived counter, recomputed from the judgments inside the
  same transaction as every expert write) is the number of experts whose current,
  non-repeat judgment of the pair is a real verdict; ``pairs.needed`` is how many are
  wanted (1, or k for the overlap share). The partial index ``pairs_open`` covers the
  pairs still needing a vote, so serving the next pair is an index walk.
* Expert judgments store the expert's display name (as registered) in ``judge_id``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from preceptor.db.prompts import visible
from preceptor.db.store import Store, dumps, loads, now
from preceptor.text import identity, normalise

VERDICTS = ("win", "tie", "both_bad", "unparsed", "inconsistent", "skip")
JUDGE_KINDS = ("expert", "llm", "metric", "imported")

# A row is current when nothing supersedes it (and it is not staged by an unfinished import).
CURRENT = ("NOT EXISTS (SELECT 1 FROM judgments s WHERE s.supersedes = {a}.id)"
           " AND ({a}.import_id IS NULL OR {a}.import_id IN (SELECT id FROM imports WHERE status = 'done'))")
# An undo marker: a skip row superseding a vote (not a vote of its own).
NOT_UNDO = "({a}.meta IS NULL OR json_extract({a}.meta, '$.undo') IS NULL)"


# --- experts -------------------------------------------------------------------------

def add_expert(store: Store, name: str) -> tuple[int, str, bool]:
    """(id, registered name, created) — an existing name in any case is the same expert."""
    clean = normalise(name)
    with store.tx():
        row = store.one("SELECT id, name FROM experts WHERE norm_name = ?", (identity(clean),))
        if row:
            return row[0], row[1], False
        eid = store.execute("INSERT INTO experts (name, norm_name, created_at) VALUES (?, ?, ?)",
                            (clean, identity(clean), now())).lastrowid
    return int(eid), clean, True


def get_expert(store: Store, name: str) -> tuple[int, str] | None:
    row = store.one("SELECT id, name FROM experts WHERE norm_name = ?", (identity(name),))
    return (row[0], row[1]) if row else None


def set_expert_token(store: Store, expert_id: int, token_hash: str) -> None:
    store.execute("UPDATE experts SET token_hash = ? WHERE id = ?", (token_hash, expert_id))


def expert_by_token(store: Store, token_hash: str) -> tuple[int, str] | None:
    row = store.one("SELECT id, name FROM experts WHERE token_hash = ?", (token_hash,))
    return (row[0], row[1]) if row else None


def count_expert_tokens(store: Store) -> int:
    return int(store.scalar("SELECT COUNT(*) FROM experts WHERE token_hash IS NOT NULL") or 0)


def expert_counts(store: Store, q: PairQuery, expert_id: int, expert_name: str, t: float) -> dict[str, int]:
    """This expert's own figures under a selection: pairs judged (current votes), pairs still
    open to them (not judged, not reserved by another), repeats pending."""
    where, params = q.where()
    judged = int(store.scalar(
        f"""SELECT COUNT(DISTINCT j.pair_id) FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts pr ON pr.id = p.prompt_id
            WHERE j.judge_kind = 'expert' AND j.judge_id = ? AND j.repeat = 0 AND j.verdict IN ('win', 'tie', 'both_bad')
              AND {CURRENT.format(a='j')} AND {where}""", [expert_name, *params]) or 0)
    left = int(store.scalar(
        f"""SELECT COUNT(*) FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
            WHERE p.expert_votes < p.needed AND {where}
              AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.pair_id = p.id AND r.expert_id != ? AND r.until >= ?)
              AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.judge_kind = 'expert' AND j.judge_id = ? AND j.pair_id = p.id
                              AND j.repeat = 0 AND j.verdict IN ('win', 'tie', 'both_bad') AND {CURRENT.format(a='j')})""",
        [*params, expert_id, t, expert_name]) or 0)
    held = int(store.scalar(
        "SELECT COUNT(*) FROM reservations r WHERE r.expert_id != ? AND r.until >= ?", (expert_id, t)) or 0)
    return {"judged": judged, "left": left, "repeats": pending_repeats(store, expert_id), "held_by_others": held}


def skipped_open_pair(store: Store, q: PairQuery, expert_id: int, expert_name: str, t: float,
                      exclude: Sequence[int] = (), host: str | None = None) -> int | None:
    """The oldest pair this expert skipped that still needs a vote: skipped pairs come back
    at the end of the expert's queue (never one reserved by another session, ``host``)."""
    where, params = q.where()
    ex = f" AND p.id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
    row = store.one(
        f"""SELECT p.id FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts pr ON pr.id = p.prompt_id
            WHERE j.judge_kind = 'expert' AND j.judge_id = ? AND j.repeat = 0 AND j.verdict = 'skip'
              AND {CURRENT.format(a='j')} AND {NOT_UNDO.format(a='j')}
              AND p.expert_votes < p.needed AND {where}{ex}
              AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.pair_id = p.id AND r.until >= ?
                              AND NOT (r.expert_id = ? AND r.host IS ?))
            ORDER BY j.id LIMIT 1""",
        [expert_name, *params, *exclude, t, expert_id, host])
    return row[0] if row else None


def list_experts(store: Store) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in store.all("SELECT id, name FROM experts ORDER BY name COLLATE NOCASE")]


def expert_vote_counts(store: Store) -> dict[str, int]:
    """{expert name: current non-repeat votes (not skips)}."""
    rows = store.all(
        f"""SELECT j.judge_id, COUNT(*) FROM judgments j
            WHERE j.judge_kind = 'expert' AND j.repeat = 0 AND j.verdict IN ('win', 'tie', 'both_bad')
              AND {CURRENT.format(a='j')} GROUP BY j.judge_id""")
    return {r[0]: r[1] for r in rows}


# --- pair selection ------------------------------------------------------------------

@dataclass(frozen=True)
class PairQuery:
    """The resolved form of a pair filter (system ids rather than names)."""

    system_ids: tuple[int, int] | None = None
    splits: tuple[str, ...] | None = None
    task: str | None = None
    collections: tuple[str, ...] | None = None
    include_bad: bool = False

    def where(self, p: str = "p", pr: str = "pr") -> tuple[str, list[Any]]:
        """SQL over ``pairs {p}`` joined to ``prompts {pr}``."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.system_ids:
            a, b = sorted(self.system_ids)
            clauses.append(f"(({p}.system_a = ? AND {p}.system_b = ?) OR ({p}.system_a = ? AND {p}.system_b = ?))")
            params += [a, b, b, a]
        if self.splits:
            clauses.append(f"{p}.split IN ({','.join('?' * len(self.splits))})")
            params += list(self.splits)
        if self.task:
            clauses.append(f"{pr}.task = ?")
            params.append(self.task)
        if self.collections:
            clauses.append(f"{pr}.collection IN ({','.join('?' * len(self.collections))})")
            params += list(self.collections)
        else:
            clauses.append(f"{pr}.collection NOT IN (SELECT name FROM collections WHERE kind = 'judgments' OR hidden = 1)")
        if not self.include_bad:
            clauses.append(f"{pr}.bad_item IS NULL")
        clauses.append(visible(pr))  # prompts of an unfinished import stay out of sight
        return " AND ".join(clauses) or "1", params


def collection_exists(store: Store, name: str) -> bool:
    return store.one("SELECT 1 FROM collections WHERE name = ?", (name,)) is not None


# --- pairs ---------------------------------------------------------------------------

PAIR_COLUMNS = ("prompt_id", "output_a", "output_b", "split", "priority", "system_a", "system_b", "needed", "queue_key")


def outputs_for_pairing(store: Store, system_x: int, system_y: int, prompt_where: str,
                        params: Sequence[Any]) -> list[sqlite3.Row]:
    """Prompts (matching ``prompt_where`` over alias ``p``) with a successful output from both systems."""
    return store.all(
        f"""SELECT p.id AS prompt_id, p.split, x.id AS x_id, x.text AS x_text, y.id AS y_id, y.text AS y_text
            FROM prompts p
            JOIN outputs x ON x.prompt_id = p.id AND x.system_id = ? AND x.error IS NULL AND x.text IS NOT NULL
            JOIN outputs y ON y.prompt_id = p.id AND y.system_id = ? AND y.error IS NULL AND y.text IS NOT NULL
            WHERE {prompt_where} ORDER BY p.id""",
        [system_x, system_y, *params],
    )


def count_prompts_missing_outputs(store: Store, system_x: int, system_y: int, prompt_where: str,
                                  params: Sequence[Any]) -> int:
    return int(store.scalar(
        f"""SELECT COUNT(*) FROM prompts p WHERE {prompt_where} AND (
              NOT EXISTS (SELECT 1 FROM outputs x WHERE x.prompt_id = p.id AND x.system_id = ? AND x.error IS NULL AND x.text IS NOT NULL)
              OR NOT EXISTS (SELECT 1 FROM outputs y WHERE y.prompt_id = p.id AND y.system_id = ? AND y.error IS NULL AND y.text IS NOT NULL))""",
        [*params, system_x, system_y]) or 0)


def insert_pairs(store: Store, rows: Iterable[Sequence[Any]], import_id: int | None = None) -> int:
    """INSERT OR IGNORE rows of :data:`PAIR_COLUMNS` (plus created_at); returns how many were new
    (with ``import_id`` they belong to that staged import)."""
    ts = now()
    before = store.conn.total_changes
    with store.tx():
        store.conn.executemany(
            f"INSERT OR IGNORE INTO pairs ({','.join(PAIR_COLUMNS)}, created_at, import_id)"
            f" VALUES ({','.join('?' * (len(PAIR_COLUMNS) + 2))})",
            [(*r, ts, import_id) for r in rows],
        )
    return store.conn.total_changes - before


def pair_id_for(store: Store, output_a: int, output_b: int) -> int | None:
    return store.scalar("SELECT id FROM pairs WHERE output_a = ? AND output_b = ?", (min(output_a, output_b), max(output_a, output_b)))


def get_pair(store: Store, pair_id: int) -> dict[str, Any] | None:
    r = store.one(
        """SELECT p.id, p.prompt_id, p.output_a, p.output_b, p.split, p.priority, p.system_a, p.system_b,
                  p.needed, p.expert_votes, pr.text AS prompt, pr.reference, pr.bad_item, pr.collection, pr.task,
                  a.text AS text_a, b.text AS text_b
           FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
           JOIN outputs a ON a.id = p.output_a JOIN outputs b ON b.id = p.output_b
           WHERE p.id = ?""", (pair_id,))
    return dict(r) if r else None


def pair_complete(store: Store, pair_id: int) -> bool:
    return bool(store.scalar("SELECT expert_votes >= needed FROM pairs WHERE id = ?", (pair_id,)))


def count_pairs(store: Store, q: PairQuery, *, complete_only: bool = False) -> int:
    where, params = q.where()
    extra = " AND p.expert_votes >= p.needed" if complete_only else ""
    return int(store.scalar(f"SELECT COUNT(*) FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id WHERE {where}{extra}", params) or 0)


def pairs_with_texts(store: Store, q: PairQuery, *, limit: int | None = None) -> list[dict[str, Any]]:
    where, params = q.where()
    sql = f"""SELECT p.id, p.prompt_id, p.output_a, p.output_b, p.split, pr.text AS prompt, pr.reference,
                     a.text AS text_a, b.text AS text_b
              FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
              JOIN outputs a ON a.id = p.output_a JOIN outputs b ON b.id = p.output_b
              WHERE {where} ORDER BY p.id"""
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [dict(r) for r in store.all(sql, params)]


def pair_summary(store: Store) -> list[dict[str, Any]]:
    """Pairs grouped by the two systems and split, with expert coverage."""
    rows = store.all(
        """SELECT sa.name AS system_a, sb.name AS system_b, p.split, pr.collection,
                  COUNT(*) AS pairs, SUM(p.expert_votes >= p.needed) AS complete, SUM(p.needed > 1) AS overlap
           FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
           LEFT JOIN systems sa ON sa.id = p.system_a LEFT JOIN systems sb ON sb.id = p.system_b
           GROUP BY p.system_a, p.system_b, p.split, pr.collection ORDER BY pr.collection, sa.name, sb.name, p.split""")
    return [dict(r) for r in rows]


def set_priority(store: Store, pair_ids: Iterable[int], priority: float) -> None:
    with store.tx():
        store.conn.executemany("UPDATE pairs SET priority = ? WHERE id = ?", [(priority, int(i)) for i in pair_ids])


# --- the expert queue ----------------------------------------------------------------

def drop_expired_reservations(store: Store, t: float) -> None:
    store.execute("DELETE FROM reservations WHERE until < ?", (t,))


def reservations_of_others(store: Store, expert_id: int, t: float, host: str | None = None) -> list[sqlite3.Row]:
    """Live reservations of other experts, and of this expert's other sessions (``host``)."""
    return store.all("SELECT pair_id, expert_id, host, pid FROM reservations WHERE until >= ? AND NOT (expert_id = ? AND host IS ?)",
                     (t, expert_id, host))


def drop_reservation(store: Store, pair_id: int, expert_id: int) -> None:
    store.execute("DELETE FROM reservations WHERE pair_id = ? AND expert_id = ?", (pair_id, expert_id))


def drop_reservations_of(store: Store, expert_id: int, *, host: str | None = None, pid: int | None = None,
                         keep: Sequence[int] = ()) -> None:
    sql = "DELETE FROM reservations WHERE expert_id = ?"
    params: list[Any] = [expert_id]
    if host is not None:
        sql += " AND host = ? AND pid = ?"
        params += [host, pid]
    if keep:
        sql += f" AND pair_id NOT IN ({','.join('?' * len(keep))})"
        params += list(keep)
    store.execute(sql, params)


def reserve(store: Store, pair_id: int, expert_id: int, until: float, *, repeat: bool, left_output_id: int,
            host: str, pid: int | None, served_at: float) -> None:
    store.execute(
        """INSERT INTO reservations (pair_id, expert_id, until, repeat, left_output_id, host, pid, served_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (pair_id, expert_id) DO UPDATE SET until = excluded.until, repeat = excluded.repeat,
             left_output_id = excluded.left_output_id, host = excluded.host, pid = excluded.pid,
             served_at = excluded.served_at""",
        (pair_id, expert_id, until, int(repeat), left_output_id, host, pid, served_at))


def get_reservation(store: Store, pair_id: int, expert_id: int) -> sqlite3.Row | None:
    return store.one("SELECT * FROM reservations WHERE pair_id = ? AND expert_id = ?", (pair_id, expert_id))


def reserved_by_other(store: Store, pair_id: int, expert_id: int, t: float) -> bool:
    return store.one("SELECT 1 FROM reservations WHERE pair_id = ? AND expert_id != ? AND until >= ?",
                     (pair_id, expert_id, t)) is not None


QUEUE_ORDER = {"priority": "p.priority DESC, p.queue_key", "random": "p.queue_key", "sequential": "p.id"}


def next_open_pair(store: Store, q: PairQuery, expert_id: int, expert_name: str, t: float,
                   exclude: Sequence[int] = (), host: str | None = None, *, order: str = "priority",
                   matchup: tuple[int, int] | None = None, min_priority: float | None = None) -> sqlite3.Row | None:
    """(id, system_a, system_b, priority, queue_key) of the first pair this expert may judge now.

    Open (fewer expert votes than needed), not reserved by anyone but this session
    (``host``: another expert, or the same expert in another process or app, never gets
    it), not already judged or skipped by this expert. ``order``: ``priority`` (then the
    shuffled queue key), ``random`` (the queue key) or ``sequential`` (pair id), each walking
    its partial index; ``matchup`` keeps one pair of systems (either side); ``min_priority``
    leaves out pairs whose priority is not above it. Call inside the write transaction that
    reserves it, so picking and reserving are atomic.
    """
    where, params = q.where()
    ex = f" AND p.id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
    extra: list[Any] = []
    if matchup is not None:
        ex += " AND p.system_a = ? AND p.system_b = ?"
        extra += list(matchup)
    if min_priority is not None:
        ex += " AND p.priority > ?"
        extra.append(min_priority)
    return store.one(
        f"""SELECT p.id, p.system_a, p.system_b, p.priority, p.queue_key FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
            WHERE p.expert_votes < p.needed AND {where}{ex}
              AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.pair_id = p.id AND r.until >= ? AND NOT (r.expert_id = ? AND r.host IS ?))
              AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.judge_kind = 'expert' AND j.judge_id = ? AND j.pair_id = p.id
                              AND j.repeat = 0 AND {CURRENT.format(a='j')} AND {NOT_UNDO.format(a='j')})
            ORDER BY {QUEUE_ORDER[order]} LIMIT 1""",
        [*params, *exclude, *extra, t, expert_id, host, expert_name],
    )


def matchups(store: Store) -> list[tuple[int, int]]:
    """Every (system_a, system_b) as stored in ``pairs``: a skip-scan of the ``pairs_systems``
    index, one seek per matchup (cheap on a large project). Filter with ``next_open_pair``."""
    nxt = """SELECT {col} FROM pairs p WHERE (p.system_a, p.system_b) > (m.a, m.b)
             ORDER BY p.system_a, p.system_b LIMIT 1"""
    rows = store.all(
        f"""WITH RECURSIVE m(a, b) AS (
              SELECT * FROM (SELECT system_a, system_b FROM pairs WHERE system_a IS NOT NULL
                             ORDER BY system_a, system_b LIMIT 1)
              UNION ALL
              SELECT ({nxt.format(col='p.system_a')}), ({nxt.format(col='p.system_b')}) FROM m WHERE m.a IS NOT NULL)
            SELECT a, b FROM m WHERE a IS NOT NULL""")
    return [(r[0], r[1]) for r in rows]


def human_matchup_wins(store: Store, q: PairQuery) -> dict[tuple[int, int], float]:
    """{(system x, system y): wins of x over y} from current expert and imported human verdicts
    (not repeats); a tie or both-bad verdict is half a win each."""
    where, params = q.where()
    rows = store.all(
        f"""SELECT p.system_a, p.system_b, j.verdict, j.winner_output_id = p.output_a, COUNT(*)
            FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts pr ON pr.id = p.prompt_id
            WHERE j.judge_kind IN ('expert', 'imported') AND j.repeat = 0 AND j.verdict IN ('win', 'tie', 'both_bad')
              AND p.system_a IS NOT NULL AND {CURRENT.format(a='j')} AND {where}
            GROUP BY 1, 2, 3, 4""", params)
    out: dict[tuple[int, int], float] = {}
    for sa, sb, verdict, a_won, n in rows:
        if verdict == "win":
            key = (sa, sb) if a_won else (sb, sa)
            out[key] = out.get(key, 0.0) + n
        else:
            out[(sa, sb)] = out.get((sa, sb), 0.0) + 0.5 * n
            out[(sb, sa)] = out.get((sb, sa), 0.0) + 0.5 * n
    return out


def latest_verdicts(store: Store, pair_ids: Sequence[int], judge_kind: str) -> dict[int, dict[str, Any]]:
    """{pair id: {verdict, winner_output_id, confidence}} of the newest current judgment of a kind."""
    out: dict[int, dict[str, Any]] = {}
    ids = [int(i) for i in pair_ids]
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = store.all(
            f"""SELECT j.pair_id, j.verdict, j.winner_output_id, j.confidence FROM judgments j
                WHERE j.judge_kind = ? AND j.pair_id IN ({','.join('?' * len(chunk))}) AND j.verdict != 'skip'
                  AND {CURRENT.format(a='j')} ORDER BY j.id""", [judge_kind, *chunk])
        for r in rows:
            out[r[0]] = {"verdict": r[1], "winner_output_id": r[2], "confidence": r[3]}
    return out


def pairs_with_expert_votes(store: Store, pair_ids: Sequence[int]) -> set[int]:
    ids = [int(i) for i in pair_ids]
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found |= {r[0] for r in store.all(f"SELECT id FROM pairs WHERE expert_votes > 0 AND id IN ({','.join('?' * len(chunk))})", chunk)}
    return found


def set_priorities(store: Store, values: Iterable[tuple[int, float]]) -> None:
    with store.tx():
        store.conn.executemany("UPDATE pairs SET priority = ? WHERE id = ?", [(float(v), int(i)) for i, v in values])


def system_names(store: Store) -> dict[int, str]:
    return {r[0]: r[1] for r in store.all("SELECT id, name FROM systems")}


def still_servable(store: Store, pair_id: int, expert_id: int, expert_name: str, t: float, host: str | None = None) -> bool:
    """The cheap re-check of a preloaded pair before it is shown."""
    row = store.one(
        f"""SELECT 1 FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
            WHERE p.id = ? AND p.expert_votes < p.needed AND pr.bad_item IS NULL
              AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.pair_id = p.id AND r.until >= ? AND NOT (r.expert_id = ? AND r.host IS ?))
              AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.judge_kind = 'expert' AND j.judge_id = ? AND j.pair_id = p.id
                              AND j.repeat = 0 AND {CURRENT.format(a='j')} AND {NOT_UNDO.format(a='j')})""",
        (pair_id, t, expert_id, host, expert_name))
    return row is not None


# --- repeats -------------------------------------------------------------------------

def add_repeat(store: Store, expert_id: int, pair_id: int, due_after: int, left_output_id: int) -> None:
    store.execute(
        """INSERT OR REPLACE INTO repeats (expert_id, pair_id, due_after, left_output_id, created_at)
           VALUES (?, ?, ?, ?, ?)""", (expert_id, pair_id, due_after, left_output_id, now()))


def drop_repeat(store: Store, expert_id: int, pair_id: int) -> None:
    store.execute("DELETE FROM repeats WHERE expert_id = ? AND pair_id = ?", (expert_id, pair_id))


def due_repeat(store: Store, expert_id: int, q: PairQuery, count: int | None, t: float,
               exclude: Sequence[int] = (), host: str | None = None) -> sqlite3.Row | None:
    """A repeat due for this expert (``count`` = votes so far; None = any pending one)."""
    where, params = q.where()
    due = " AND rp.due_after <= ?" if count is not None else ""
    ex = f" AND rp.pair_id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
    return store.one(
        f"""SELECT rp.pair_id, rp.left_output_id FROM repeats rp
            JOIN pairs p ON p.id = rp.pair_id JOIN prompts pr ON pr.id = p.prompt_id
            WHERE rp.expert_id = ?{due}{ex} AND {where}
              AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.pair_id = p.id AND r.until >= ? AND NOT (r.expert_id = ? AND r.host IS ?))
            ORDER BY rp.due_after LIMIT 1""",
        [expert_id, *([count] if count is not None else []), *exclude, *params, t, expert_id, host])


def repeat_of(store: Store, expert_id: int, pair_id: int) -> sqlite3.Row | None:
    return store.one("SELECT * FROM repeats WHERE expert_id = ? AND pair_id = ?", (expert_id, pair_id))


def pending_repeats(store: Store, expert_id: int) -> int:
    return int(store.scalar("SELECT COUNT(*) FROM repeats WHERE expert_id = ?", (expert_id,)) or 0)


# --- judgments -----------------------------------------------------------------------

JUDGMENT_COLUMNS = ("pair_id", "judge_kind", "judge_id", "left_output_id", "winner_output_id", "verdict", "confidence",
                    "unsafe_a", "unsafe_b", "rationale", "raw", "latency_ms", "repeat", "supersedes", "meta", "os_user", "served_session")


def insert_judgment(store: Store, **fields: Any) -> int:
    """Insert one judgment (call inside ``store.tx()`` to group it with other writes)."""
    assert fields["verdict"] in VERDICTS, fields["verdict"]
    assert fields["judge_kind"] in JUDGE_KINDS
    values = [dumps(fields.get(c)) if c == "meta" else fields.get(c) for c in JUDGMENT_COLUMNS]
    values[JUDGMENT_COLUMNS.index("unsafe_a")] = int(bool(fields.get("unsafe_a")))
    values[JUDGMENT_COLUMNS.index("unsafe_b")] = int(bool(fields.get("unsafe_b")))
    values[JUDGMENT_COLUMNS.index("repeat")] = int(bool(fields.get("repeat")))
    cur = store.execute(
        f"INSERT INTO judgments ({','.join(JUDGMENT_COLUMNS)}, created_at, import_id)"
        f" VALUES ({','.join('?' * (len(JUDGMENT_COLUMNS) + 2))})",
        [*values, now(), fields.get("import_id")])
    return int(cur.lastrowid)


def insert_judgments(store: Store, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with store.tx():
        for r in rows:
            insert_judgment(store, **r)
            n += 1
    return n


def _judgment(r: sqlite3.Row | None) -> dict[str, Any] | None:
    if r is None:
        return None
    d = dict(r)
    d["meta"] = loads(d.get("meta")) or {}
    return d


def get_judgment(store: Store, judgment_id: int) -> dict[str, Any] | None:
    return _judgment(store.one("SELECT * FROM judgments WHERE id = ?", (judgment_id,)))


def is_current(store: Store, judgment_id: int) -> bool:
    return store.one("SELECT 1 FROM judgments WHERE supersedes = ?", (judgment_id,)) is None


def current_expert_judgment(store: Store, expert_name: str, pair_id: int, *, repeat: bool = False) -> dict[str, Any] | None:
    """This expert's current judgment of the pair (a vote, a skip or an undo marker)."""
    return _judgment(store.one(
        f"""SELECT * FROM judgments j WHERE j.judge_kind = 'expert' AND j.judge_id = ? AND j.pair_id = ? AND j.repeat = ?
              AND {CURRENT.format(a='j')} ORDER BY j.id DESC LIMIT 1""", (expert_name, pair_id, int(repeat))))


def last_action(store: Store, expert_name: str) -> dict[str, Any] | None:
    """This expert's newest current judgment that is not an undo marker (what undo takes back)."""
    return _judgment(store.one(
        f"""SELECT * FROM judgments j WHERE j.judge_kind = 'expert' AND j.judge_id = ?
              AND {CURRENT.format(a='j')} AND {NOT_UNDO.format(a='j')} ORDER BY j.id DESC LIMIT 1""", (expert_name,)))


def recount_expert_votes(store: Store, pair_id: int) -> int:
    n = int(store.scalar(
        f"""SELECT COUNT(DISTINCT j.judge_id) FROM judgments j
            WHERE j.pair_id = ? AND j.judge_kind = 'expert' AND j.repeat = 0 AND j.verdict IN ('win', 'tie', 'both_bad')
              AND {CURRENT.format(a='j')}""", (pair_id,)) or 0)
    store.execute("UPDATE pairs SET expert_votes = ? WHERE id = ?", (n, pair_id))
    return n


def expert_action_count(store: Store, expert_name: str) -> int:
    """Votes and skips this expert has made (every row, a monotone counter for repeat spacing)."""
    return int(store.scalar("SELECT COUNT(*) FROM judgments WHERE judge_kind = 'expert' AND judge_id = ?", (expert_name,)) or 0)


def expert_history(store: Store, expert_name: str, limit: int) -> list[dict[str, Any]]:
    rows = store.all(
        f"""SELECT j.id, j.pair_id, j.verdict, j.left_output_id, j.winner_output_id, j.unsafe_a, j.unsafe_b,
                   j.rationale, j.repeat, j.created_at, j.latency_ms, p.output_a, p.output_b, p.prompt_id, pr.text AS prompt
            FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts pr ON pr.id = p.prompt_id
            WHERE j.judge_kind = 'expert' AND j.judge_id = ? AND {CURRENT.format(a='j')} AND {NOT_UNDO.format(a='j')}
            ORDER BY j.id DESC LIMIT ?""", (expert_name, limit))
    return [dict(r) for r in rows]


def latest_judgment_of_kind(store: Store, pair_id: int, judge_kind: str) -> dict[str, Any] | None:
    return _judgment(store.one(
        f"""SELECT * FROM judgments j WHERE j.pair_id = ? AND j.judge_kind = ? AND j.verdict != 'skip'
              AND {CURRENT.format(a='j')} ORDER BY j.id DESC LIMIT 1""", (pair_id, judge_kind)))


def current_judgment_ids(store: Store, judge_kind: str, judge_id: str) -> dict[int, int]:
    """{pair_id: current judgment id} for one judge."""
    rows = store.all(
        f"""SELECT j.pair_id, MAX(j.id) FROM judgments j WHERE j.judge_kind = ? AND j.judge_id = ? AND j.repeat = 0
              AND {CURRENT.format(a='j')} GROUP BY j.pair_id""", (judge_kind, judge_id))
    return {r[0]: r[1] for r in rows}


def has_judgment(store: Store, pair_id: int, judge_kind: str, judge_id: str) -> bool:
    return store.one("SELECT 1 FROM judgments WHERE pair_id = ? AND judge_kind = ? AND judge_id = ?",
                     (pair_id, judge_kind, judge_id)) is not None


def verdict_counts(store: Store, judge_kind: str | None = None) -> dict[str, dict[str, int]]:
    """{judge_kind: {verdict: n}} over current, non-repeat judgments."""
    sql = f"SELECT j.judge_kind, j.verdict, COUNT(*) FROM judgments j WHERE j.repeat = 0 AND {CURRENT.format(a='j')}"
    params: list[Any] = []
    if judge_kind:
        sql += " AND j.judge_kind = ?"
        params.append(judge_kind)
    out: dict[str, dict[str, int]] = {}
    for r in store.all(sql + " GROUP BY j.judge_kind, j.verdict", params):
        out.setdefault(r[0], {})[r[1]] = r[2]
    return out


# --- bad items -----------------------------------------------------------------------

def set_bad_item(store: Store, prompt_id: int, reason: str | None) -> bool:
    with store.tx():
        cur = store.execute("UPDATE prompts SET bad_item = ? WHERE id = ?", (reason, prompt_id))
    return cur.rowcount > 0


def bad_items(store: Store) -> list[dict[str, Any]]:
    return [dict(r) for r in store.all("SELECT id, text, bad_item, collection FROM prompts WHERE bad_item IS NOT NULL ORDER BY id")]


def output_ids(store: Store, prompt_ids: Sequence[int], system_id: int) -> dict[int, tuple[int, str | None]]:
    """{prompt_id: (output id, text)} for one system."""
    out: dict[int, tuple[int, str | None]] = {}
    for i in range(0, len(prompt_ids), 500):
        chunk = list(prompt_ids[i:i + 500])
        for r in store.all(f"SELECT prompt_id, id, text FROM outputs WHERE system_id = ? AND prompt_id IN ({','.join('?' * len(chunk))})",
                           [system_id, *chunk]):
            out[r[0]] = (r[1], r[2])
    return out


def votes_for_prompt(store: Store, prompt_id: int) -> list[dict[str, Any]]:
    """Current judgments on the pairs of one prompt, readable (for browsing a prompt; not blind)."""
    rows = store.all(
        f"""SELECT j.id, j.judge_kind, j.judge_id, sa.name AS system_a, sb.name AS system_b, j.verdict,
                   sw.name AS winner, j.confidence, j.unsafe_a, j.unsafe_b, j.repeat, j.created_at
            FROM judgments j JOIN pairs p ON p.id = j.pair_id
            LEFT JOIN systems sa ON sa.id = p.system_a LEFT JOIN systems sb ON sb.id = p.system_b
            LEFT JOIN outputs w ON w.id = j.winner_output_id LEFT JOIN systems sw ON sw.id = w.system_id
            WHERE p.prompt_id = ? AND j.verdict != 'skip' AND {CURRENT.format(a='j')}
            ORDER BY j.id""", (prompt_id,))
    return [{"judge": f"{r['judge_kind']}:{r['judge_id']}", "pair": f"{r['system_a']} vs {r['system_b']}",
             "verdict": r["winner"] if r["verdict"] == "win" else r["verdict"],
             "confidence": None if r["confidence"] is None else round(r["confidence"], 3),
             "unsafe": ",".join(n for n, f in ((r["system_a"], r["unsafe_a"]), (r["system_b"], r["unsafe_b"])) if f) or "",
             "repeat": bool(r["repeat"]), "time": r["created_at"]} for r in rows]


def judgment_counts_by_kind(store: Store) -> dict[str, int]:
    """Judgments per judge kind (skips excluded)."""
    return {r[0]: r[1] for r in store.all(
        "SELECT judge_kind, COUNT(*) FROM judgments j WHERE verdict != 'skip'"
        " AND (j.import_id IS NULL OR j.import_id IN (SELECT id FROM imports WHERE status = 'done')) GROUP BY judge_kind")}


def count_all_pairs(store: Store) -> int:
    return int(store.scalar("SELECT COUNT(*) FROM pairs") or 0)


def review_votes(store: Store, *, expert: str | None = None, split: str | None = None,
                 system_ids: tuple[int, int] | None = None, limit: int = 5000) -> list[dict[str, Any]]:
    """Current verdicts (experts, LLM and metric judges) with the pair's systems and prompt,
    for the team lead's review; repeats, undos and skips left out."""
    where = [f"{CURRENT.format(a='j')}", f"{NOT_UNDO.format(a='j')}", "j.repeat = 0",
             "j.verdict IN ('win', 'tie', 'both_bad')"]
    params: list[Any] = []
    if split:
        where.append("p.split = ?")
        params.append(split)
    if system_ids:
        a, b = system_ids
        where.append("((p.system_a = ? AND p.system_b = ?) OR (p.system_a = ? AND p.system_b = ?))")
        params += [a, b, b, a]
    if expert:
        where.append("""p.id IN (SELECT e.pair_id FROM judgments e WHERE e.judge_kind = 'expert' AND e.judge_id = ?)""")
        params.append(expert)
    rows = store.all(
        f"""SELECT j.pair_id, j.judge_kind, j.judge_id, j.verdict, j.winner_output_id, j.rationale, p.prompt_id, p.split,
                   p.output_a, p.output_b, sa.name AS system_a, sb.name AS system_b, pr.text AS prompt,
                   oa.system_id AS sys_of_a
            FROM judgments j JOIN pairs p ON p.id = j.pair_id JOIN prompts pr ON pr.id = p.prompt_id
            JOIN outputs oa ON oa.id = p.output_a
            LEFT JOIN systems sa ON sa.id = oa.system_id
            LEFT JOIN systems sb ON sb.id = (SELECT system_id FROM outputs WHERE id = p.output_b)
            WHERE {' AND '.join(where)} ORDER BY j.pair_id, j.id LIMIT ?""", [*params, limit])
    return [dict(r) for r in rows]
