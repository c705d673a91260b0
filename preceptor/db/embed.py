"""Typed queries for the embedding track: stages, pairs, encoders and corpora.

* ``embed_stages`` — a curriculum stage that holds data (its order is ``[embed] stages``
  in ``preceptor.toml``);
* ``embed_pairs`` — (anchor, positive[, negative][, score]) rows of a stage, each with a
  group key and a split decided per group at import;
* ``encoders`` — every encoder a training stage produced (model folder in the run folder),
  chained through ``parent_id`` to the one it started from;
* ``corpora`` / ``corpus_docs`` — the documents a retriever system searches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from preceptor.db.exports import VOTE_JOINS, superseded_ids
from preceptor.db.prompts import staged
from preceptor.db.store import Store, dumps, loads, now


@dataclass(frozen=True)
class Pair:
    id: int
    stage: str
    anchor: str
    positive: str
    negative: str | None
    score: float | None
    group_key: str
    split: str
    source: str | None


@dataclass(frozen=True)
class Encoder:
    id: int
    name: str
    path: str
    base: str | None
    stage: str | None
    run_id: int | None
    parent_id: int | None
    query_prefix: str = ""
    passage_prefix: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _pair(r: Any) -> Pair:
    return Pair(r["id"], r["stage"], r["anchor"], r["positive"], r["negative"], r["score"], r["group_key"],
                r["split"], r["source"])


def _encoder(r: Any) -> Encoder:
    return Encoder(r["id"], r["name"], r["path"], r["base"], r["stage"], r["run_id"], r["parent_id"],
                   r["query_prefix"], r["passage_prefix"], loads(r["meta"]) or {})


# -- stages and pairs -------------------------------------------------------------------

def ensure_stage(store: Store, name: str, source: str | None = None, description: str | None = None) -> None:
    """Create the stage row if missing (call inside ``store.tx()`` to join an import)."""
    store.execute("INSERT OR IGNORE INTO embed_stages (name, description, source, created_at) VALUES (?, ?, ?, ?)",
                  (name, description, source, now()))


def stage_names(store: Store) -> list[str]:
    return [r[0] for r in store.all("SELECT name FROM embed_stages ORDER BY created_at, name")]


def stage_counts(store: Store) -> dict[str, dict[str, int]]:
    """{stage: {split: n pairs}} for every stage holding data."""
    out: dict[str, dict[str, int]] = {n: {} for n in stage_names(store)}
    for r in store.all(f"SELECT stage, split, COUNT(*) FROM embed_pairs e WHERE NOT {staged('e')} GROUP BY stage, split"):
        out.setdefault(r[0], {})[r[1]] = r[2]
    return out


def pair_hashes(store: Store, stage: str) -> set[str]:
    return {r[0] for r in store.execute(f"SELECT pair_hash FROM embed_pairs e WHERE stage = ? AND NOT {staged('e')}", (stage,))}


def group_splits(store: Store, stage: str) -> dict[str, str]:
    """{group key: split} of the groups already in ``stage``."""
    return {r[0]: r[1] for r in store.execute(
        f"SELECT DISTINCT group_key, split FROM embed_pairs e WHERE stage = ? AND NOT {staged('e')}", (stage,))}


PAIR_COLUMNS = ("stage", "anchor", "positive", "negative", "score", "group_key", "split", "pair_hash", "source", "created_at")


def insert_pairs(store: Store, rows: Iterable[Sequence[Any]], import_id: int | None = None) -> None:
    """Insert rows of :data:`PAIR_COLUMNS` values (call inside ``store.tx()``); with ``import_id``
    they stay invisible until the import is published."""
    cols = (*PAIR_COLUMNS, "import_id")
    store.conn.executemany(
        f"INSERT INTO embed_pairs ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
        [(*r, import_id) for r in rows])


def pairs(store: Store, stage: str, splits: Sequence[str] | None = None) -> list[Pair]:
    sql = f"SELECT * FROM embed_pairs e WHERE stage = ? AND NOT {staged('e')}"
    params: list[Any] = [stage]
    if splits:
        sql += f" AND split IN ({','.join('?' * len(splits))})"
        params.extend(splits)
    return [_pair(r) for r in store.all(sql + " ORDER BY id", params)]


def data_fingerprint(store: Store, stage: str) -> tuple[int, str]:
    """(n pairs, sha256 over the stage's pair hashes and splits) — recorded with each run."""
    import hashlib

    h = hashlib.sha256()
    n = 0
    for r in store.execute(f"SELECT pair_hash, split FROM embed_pairs e WHERE stage = ? AND NOT {staged('e')} ORDER BY pair_hash",
                           (stage,)):
        h.update(f"{r[0]}:{r[1]}\n".encode())
        n += 1
    return n, h.hexdigest()


# -- encoders ---------------------------------------------------------------------------

def add_encoder(store: Store, name: str, path: str, *, base: str | None = None, stage: str | None = None,
                run_id: int | None = None, parent_id: int | None = None, query_prefix: str = "",
                passage_prefix: str = "", meta: dict[str, Any] | None = None) -> Encoder:
    """Register an encoder (or update the row of the same name)."""
    with store.tx():
        store.execute(
            """INSERT INTO encoders (name, path, base, stage, run_id, parent_id, query_prefix, passage_prefix, meta, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET path = excluded.path, base = excluded.base, stage = excluded.stage,
               run_id = excluded.run_id, parent_id = excluded.parent_id, query_prefix = excluded.query_prefix,
               passage_prefix = excluded.passage_prefix, meta = excluded.meta""",
            (name, path, base, stage, run_id, parent_id, query_prefix, passage_prefix, dumps(meta or {}), now()),
        )
    enc = encoder_by_name(store, name)
    assert enc is not None
    return enc


def encoder_by_name(store: Store, name: str) -> Encoder | None:
    r = store.one("SELECT * FROM encoders WHERE name = ?", (name,))
    return _encoder(r) if r else None


def encoder_by_path(store: Store, path: str) -> Encoder | None:
    r = store.one("SELECT * FROM encoders WHERE path = ? ORDER BY id DESC LIMIT 1", (path,))
    return _encoder(r) if r else None


def encoders(store: Store) -> list[Encoder]:
    return [_encoder(r) for r in store.all("SELECT * FROM encoders ORDER BY id")]


# -- corpora ----------------------------------------------------------------------------

def ensure_corpus(store: Store, name: str, source: str | None = None) -> None:
    store.execute("INSERT OR IGNORE INTO corpora (name, source, created_at) VALUES (?, ?, ?)", (name, source, now()))


def add_docs(store: Store, corpus: str, docs: Iterable[tuple[str, str, dict[str, Any] | None]],
             import_id: int | None = None) -> int:
    """Add (doc_key, text, meta) documents, skipping keys already there; return how many were new
    (with ``import_id`` the new ones stay invisible until the import is published)."""
    with store.tx():
        before = store.scalar("SELECT COUNT(*) FROM corpus_docs WHERE corpus = ?", (corpus,)) or 0
        store.conn.executemany(
            "INSERT OR IGNORE INTO corpus_docs (corpus, doc_key, text, meta, import_id) VALUES (?, ?, ?, ?, ?)",
            [(corpus, k, t, dumps(m), import_id) for k, t, m in docs],
        )
        after = store.scalar("SELECT COUNT(*) FROM corpus_docs WHERE corpus = ?", (corpus,)) or 0
    return int(after - before)


def corpus_docs(store: Store, corpus: str) -> list[tuple[str, str]]:
    """[(doc_key, text)] in insertion order."""
    return [(r[0], r[1]) for r in store.all(
        f"SELECT doc_key, text FROM corpus_docs d WHERE corpus = ? AND NOT {staged('d')} ORDER BY id", (corpus,))]


def corpus_exists(store: Store, name: str) -> bool:
    return store.one("SELECT 1 FROM corpora WHERE name = ?", (name,)) is not None


def corpora(store: Store) -> dict[str, int]:
    """{corpus name: n documents}."""
    out = {r[0]: 0 for r in store.all("SELECT name FROM corpora ORDER BY name")}
    for r in store.all(f"SELECT corpus, COUNT(*) FROM corpus_docs d WHERE NOT {staged('d')} GROUP BY corpus"):
        out[r[0]] = r[1]
    return out


# -- judged pairs (for hard negatives) -------------------------------------------------

def judged_pair_rows(store: Store, kinds: Sequence[str] | None = None,
                     splits: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Effective (not superseded) judgments with a winner, joined with the prompt and both outputs.

    Each row: judgment_id, judge_kind, pair_id, prompt_id, prompt, group_key, split, collection,
    winner_output_id, output_a, output_b, text_a, text_b, backend_a, backend_b, system_a, system_b.
    """
    dropped = superseded_ids(store)
    sql = """
        SELECT j.id AS judgment_id, j.judge_kind, j.pair_id, j.winner_output_id, j.confidence,
               p.id AS prompt_id, p.text AS prompt, p.group_key, p.split, p.collection, p.bad_item,
               pr.output_a, pr.output_b, oa.text AS text_a, ob.text AS text_b,
               sa.backend AS backend_a, sb.backend AS backend_b, sa.name AS system_a, sb.name AS system_b
        """ + VOTE_JOINS + """
        WHERE j.verdict = 'win' AND j.winner_output_id IS NOT NULL"""
    params: list[Any] = []
    if kinds:
        sql += f" AND j.judge_kind IN ({','.join('?' * len(kinds))})"
        params.extend(kinds)
    if splits:
        sql += f" AND p.split IN ({','.join('?' * len(splits))})"
        params.extend(splits)
    sql += " ORDER BY j.id"
    return [dict(r) for r in store.execute(sql, params) if r["judgment_id"] not in dropped]


def verdict_counts(store: Store) -> dict[str, int]:
    """{verdict: n} over effective judgments (used to explain an empty negatives export)."""
    dropped = superseded_ids(store)
    out: dict[str, int] = {}
    for r in store.execute("SELECT id, verdict FROM judgments"):  # staged ones are in ``dropped``
        if r[0] not in dropped:
            out[r[1]] = out.get(r[1], 0) + 1
    return out


def record_export(store: Store, path: str, filters: dict[str, Any], n: int, sha256: str, manifest: dict[str, Any]) -> int:
    with store.tx():
        cur = store.execute(
            "INSERT INTO exports (kind, path, filters, n, sha256, manifest, created_at) VALUES ('negatives', ?, ?, ?, ?, ?, ?)",
            (path, dumps(filters), n, sha256, dumps(manifest), now()),
        )
        return int(cur.lastrowid)
