"""Read queries for statistics and exports, and the ``exports`` table.

Votes are read *effective*: a judgment that a later one supersedes is dropped (only the
newest in a chain counts). Superseded ids are collected in Python because ``judgments``
has no index on ``supersedes`` (a correlated ``NOT EXISTS`` would be quadratic).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from preceptor.db.prompts import PromptFilter, staged
from preceptor.db.store import Store, dumps, loads, now


def superseded_ids(store: Store) -> set[int]:
    """Judgments not in effect: superseded ones, and those an unfinished import has staged."""
    return {r[0] for r in store.execute(
        "SELECT supersedes FROM judgments WHERE supersedes IS NOT NULL"
        f" UNION SELECT id FROM judgments j WHERE {staged('j')}")}


def unsafe_outputs(store: Store) -> dict[int, set[str]]:
    """Every output some effective judgment flagged unsafe, with the judge kinds that flagged it.

    Read across every judge kind and every pair the output appears in, whatever an export's
    ``--source``: an answer flagged unsafe by anyone is never exported as chosen.
    """
    dropped = superseded_ids(store)
    out: dict[int, set[str]] = {}
    sql = ("SELECT j.id, j.judge_kind, j.unsafe_a, j.unsafe_b, pr.output_a, pr.output_b FROM judgments j"
           " JOIN pairs pr ON pr.id = j.pair_id WHERE (j.unsafe_a OR j.unsafe_b) AND j.verdict != 'skip'")
    for jid, kind, ua, ub, oa, ob in store.execute(sql):
        if jid in dropped:
            continue
        if ua:
            out.setdefault(int(oa), set()).add(str(kind))
        if ub:
            out.setdefault(int(ob), set()).add(str(kind))
    return out


VOTE_COLUMNS = (
    "j.id AS judgment_id, j.pair_id, j.judge_kind, j.judge_id, j.left_output_id, j.winner_output_id,"
    " j.verdict, j.confidence, j.unsafe_a, j.unsafe_b, j.repeat, j.created_at, j.rationale, j.meta,"
    " pr.output_a, pr.output_b, p.id AS prompt_id, p.split, p.task, p.collection, p.bad_item,"
    " sa.name AS system_a, sb.name AS system_b, length(oa.text) AS len_a, length(ob.text) AS len_b"
)

VOTE_JOINS = """
    FROM judgments j
    JOIN pairs pr ON pr.id = j.pair_id
    JOIN prompts p ON p.id = pr.prompt_id
    JOIN outputs oa ON oa.id = pr.output_a
    JOIN outputs ob ON ob.id = pr.output_b
    JOIN systems sa ON sa.id = oa.system_id
    JOIN systems sb ON sb.id = ob.system_id
"""


def votes(store: Store, flt: PromptFilter, *, kinds: Sequence[str] | None = None,
          extra_columns: str = "") -> Iterator[dict[str, Any]]:
    """Effective (not superseded, not skipped) judgments on pairs whose prompt matches ``flt``,
    oldest first, joined with the pair's prompt, systems and answer lengths."""
    dropped = superseded_ids(store)
    where, params = flt.where("p")
    sql = f"SELECT {VOTE_COLUMNS}{extra_columns} {VOTE_JOINS} WHERE j.verdict != 'skip' AND {where}"
    if kinds:
        sql += f" AND j.judge_kind IN ({','.join('?' * len(kinds))})"
        params = [*params, *kinds]
    sql += " ORDER BY j.created_at, j.id"
    for r in store.execute(sql, params):
        if r["judgment_id"] in dropped:
            continue
        yield dict(r)


def vote_audit_rows(store: Store, flt: PromptFilter, *, include_superseded: bool = False) -> Iterator[dict[str, Any]]:
    """Every judgment (audit view), with prompt text, both answers' systems and whether it still counts."""
    dropped = superseded_ids(store)
    where, params = flt.where("p")
    sql = (f"SELECT {VOTE_COLUMNS}, j.supersedes, j.latency_ms, j.raw, p.text AS prompt_text"
           f" {VOTE_JOINS} WHERE {where} ORDER BY j.id")
    for r in store.execute(sql, params):
        d = dict(r)
        d["superseded"] = d["judgment_id"] in dropped
        if d["superseded"] and not include_superseded:
            continue
        yield d


PAIR_FIELDS = ("pair_id", "output_a", "output_b", "prompt_id", "prompt_text", "split", "task", "collection",
               "bad_item", "text_a", "text_b", "system_a_id", "system_b_id", "template_hash_a", "template_hash_b")
VOTE_FIELDS = ("judgment_id", "judge_kind", "judge_id", "winner_output_id", "verdict", "confidence", "unsafe_a",
               "unsafe_b", "repeat", "created_at")
# tuple positions, for the export's hot loop
(P_PAIR_ID, P_OUTPUT_A, P_OUTPUT_B, P_PROMPT_ID, P_PROMPT_TEXT, P_SPLIT, P_TASK, P_COLLECTION, P_BAD_ITEM,
 P_TEXT_A, P_TEXT_B, P_SYSTEM_A, P_SYSTEM_B, P_HASH_A, P_HASH_B) = range(len(PAIR_FIELDS))
(V_ID, V_KIND, V_JUDGE, V_WINNER, V_VERDICT, V_CONFIDENCE, V_UNSAFE_A, V_UNSAFE_B, V_REPEAT,
 V_CREATED) = range(len(VOTE_FIELDS))


def system_names(store: Store) -> dict[int, str]:
    return {r[0]: r[1] for r in store.execute("SELECT id, name FROM systems")}


def pairs_with_votes(store: Store, flt: PromptFilter, *, kinds: Sequence[str] | None = None
                     ) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Each pair whose prompt matches ``flt`` (bad items included when the filter says so) as a
    tuple of :data:`PAIR_FIELDS`, with its effective votes as tuples of :data:`VOTE_FIELDS`
    (oldest first; not superseded, no skips; ``kinds`` limits the judge kinds), by pair id.

    One query in pair-id order (no sort of the texts); plain tuples for speed.
    """
    dropped = superseded_ids(store)
    where, params = flt.where("p")
    kind_sql = ""
    if kinds:
        kind_sql = f" AND j.judge_kind IN ({','.join('?' * len(kinds))})"
    sql = f"""
        SELECT pr.id, pr.output_a, pr.output_b, p.id, p.text, p.split, p.task, p.collection, p.bad_item,
               oa.text, ob.text, oa.system_id, ob.system_id, oa.template_hash, ob.template_hash,
               j.id, j.judge_kind, j.judge_id, j.winner_output_id, j.verdict, j.confidence, j.unsafe_a, j.unsafe_b,
               j.repeat, j.created_at
        FROM pairs pr
        JOIN prompts p ON p.id = pr.prompt_id
        JOIN outputs oa ON oa.id = pr.output_a
        JOIN outputs ob ON ob.id = pr.output_b
        LEFT JOIN judgments j ON j.pair_id = pr.id AND j.verdict != 'skip'{kind_sql}
        WHERE {where}
        ORDER BY pr.id"""
    cur = store.conn.cursor()
    cur.row_factory = None
    cur.execute(sql, [*(kinds or ()), *params])
    np_ = len(PAIR_FIELDS)
    pair: tuple[Any, ...] | None = None
    votes: list[tuple[Any, ...]] = []
    for row in cur:
        if pair is None or row[0] != pair[0]:
            if pair is not None:
                if len(votes) > 1:
                    votes.sort(key=lambda v: (v[V_CREATED], v[V_ID]))
                yield pair, votes
            pair = row[:np_]
            votes = []
        if row[np_] is not None and row[np_] not in dropped:
            votes.append(row[np_:])
    if pair is not None:
        if len(votes) > 1:
            votes.sort(key=lambda v: (v[V_CREATED], v[V_ID]))
        yield pair, votes


def count_pairs_outside(store: Store, flt: PromptFilter) -> int:
    """Judged pairs of the same collections whose prompt is in another split (for messages)."""
    outside = PromptFilter(split=None, collections=flt.collections, task=flt.task, include_bad=flt.include_bad)
    where_all, p_all = outside.where("p")
    where_in, p_in = flt.where("p")
    sql = (f"SELECT COUNT(DISTINCT pr.id) FROM pairs pr JOIN prompts p ON p.id = pr.prompt_id"
           f" JOIN judgments j ON j.pair_id = pr.id WHERE {where_all} AND NOT ({where_in})")
    return int(store.scalar(sql, [*p_all, *p_in]) or 0)


def metric_values(store: Store, output_ids: Sequence[int]) -> dict[tuple[str, str], dict[int, float]]:
    """{(metric name, reference): {output_id: value}} for the given outputs (NULL values left out)."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    ids = list(output_ids)
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        for r in store.execute(
            f"SELECT output_id, name, reference, value FROM metrics WHERE value IS NOT NULL"
            f" AND output_id IN ({','.join('?' * len(chunk))})", chunk,
        ):
            out.setdefault((r[1], r[2]), {})[r[0]] = float(r[3])
    return out


def spend(store: Store) -> dict[str, Any]:
    """API spend: generation cost per system (outputs.cost) and LLM-call cost in llm_cache per model."""
    by_system = [
        {"system": r[0], "outputs": r[1], "cost": float(r[2] or 0.0), "prompt_tokens": int(r[3] or 0),
         "completion_tokens": int(r[4] or 0)}
        for r in store.all(
            """SELECT s.name, COUNT(o.id), SUM(o.cost), SUM(o.prompt_tokens), SUM(o.completion_tokens)
               FROM outputs o JOIN systems s ON s.id = o.system_id
               WHERE o.cost IS NOT NULL AND o.cost > 0 GROUP BY s.name ORDER BY s.name""")
    ]
    by_model = [
        {"model": r[0] or "(unknown)", "calls": r[1], "cost": float(r[2] or 0.0), "prompt_tokens": int(r[3] or 0),
         "completion_tokens": int(r[4] or 0)}
        for r in store.all(
            """SELECT model, COUNT(*), SUM(cost), SUM(prompt_tokens), SUM(completion_tokens)
               FROM llm_cache GROUP BY model ORDER BY model""")
    ]
    return {"outputs_by_system": by_system, "llm_cache_by_model": by_model}


def record_export(store: Store, kind: str, path: str, filters: dict[str, Any], n: int, sha256: str | None,
                  manifest: dict[str, Any]) -> int:
    with store.tx():
        cur = store.execute(
            "INSERT INTO exports (kind, path, filters, n, sha256, manifest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, path, dumps(filters), n, sha256, dumps(manifest), now()),
        )
        return int(cur.lastrowid)


def list_exports(store: Store, kind: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM exports" + (" WHERE kind = ?" if kind else "") + " ORDER BY id"
    rows = []
    for r in store.all(sql, (kind,) if kind else ()):
        d = dict(r)
        d["filters"] = loads(d["filters"])
        d["manifest"] = loads(d["manifest"])
        rows.append(d)
    return rows


def collection_kind(store: Store, name: str) -> str | None:
    return store.scalar("SELECT kind FROM collections WHERE name = ?", (name,))


def count_votes_all_splits(store: Store) -> int:
    """Judgments in the whole project (any split, any collection), skips left out."""
    return int(store.scalar("SELECT COUNT(*) FROM judgments WHERE verdict != 'skip'") or 0)


def collection_names(store: Store, kind: str | None = None) -> list[str]:
    if kind:
        return [r[0] for r in store.all("SELECT name FROM collections WHERE kind = ? ORDER BY name", (kind,))]
    return [r[0] for r in store.all("SELECT name FROM collections ORDER BY name")]


def pair_outputs(store: Store, pair_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """{pair_id: (output_a, output_b)}."""
    out: dict[int, tuple[int, int]] = {}
    ids = list(pair_ids)
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        for r in store.execute(f"SELECT id, output_a, output_b FROM pairs WHERE id IN ({','.join('?' * len(chunk))})", chunk):
            out[r[0]] = (r[1], r[2])
    return out


def judgments_fingerprint(store: Store) -> tuple[int, int]:
    """(count, max id) of judgments: changes whenever a vote is added."""
    r = store.one("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM judgments")
    return int(r[0]), int(r[1])


def count_exports(store: Store) -> int:
    return int(store.scalar("SELECT COUNT(*) FROM exports") or 0)


REFERENCE_FIELDS = ("prompt_id", "prompt_text", "reference", "split", "task", "collection", "bad_item", "output_id",
                    "text", "template_hash")


def reference_rows(store: Store, flt: PromptFilter, system_id: int) -> Iterator[tuple[Any, ...]]:
    """Each prompt matching ``flt`` with its reference and the newest successful answer of
    ``system_id`` (output columns None where it has none), as tuples of :data:`REFERENCE_FIELDS`."""
    where, params = flt.where("p")
    sql = f"""
        SELECT p.id, p.text, p.reference, p.split, p.task, p.collection, p.bad_item, o.id, o.text, o.template_hash
        FROM prompts p
        LEFT JOIN outputs o ON o.id = (SELECT MAX(o2.id) FROM outputs o2 WHERE o2.prompt_id = p.id AND o2.system_id = ?
                                       AND o2.error IS NULL AND o2.text IS NOT NULL)
        WHERE {where}
        ORDER BY p.id"""
    cur = store.conn.cursor()
    cur.row_factory = None
    yield from cur.execute(sql, [system_id, *params])
