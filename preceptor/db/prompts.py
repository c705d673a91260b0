"""Typed queries on ``prompts``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from preceptor.db.store import Store, loads

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Prompt:
    id: int
    text: str
    reference: str | None
    split: str
    task: str | None
    group_key: str
    collection: str
    meta: dict[str, Any]
    source: str | None
    bad_item: str | None


def _row(r: Any) -> Prompt:
    return Prompt(r["id"], r["text"], r["reference"], r["split"], r["task"], r["group_key"], r["collection"],
                  loads(r["meta"]) or {}, r["source"], r["bad_item"])


@dataclass(frozen=True)
class PromptFilter:
    """The selection used everywhere prompts are picked (generate, pairs, stats, export).

    ``collections=None`` means the project's own collections (imported judgment sets are
    left out unless named).
    """

    split: str | Sequence[str] | None = None  # None or "all" = every split
    collections: Sequence[str] | None = None
    task: str | None = None
    include_bad: bool = False
    limit: int | None = None

    def where(self, alias: str = "p") -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        splits = self.split
        if isinstance(splits, str):
            splits = None if splits == "all" else [s.strip() for s in splits.split(",") if s.strip()]
        if splits:
            clauses.append(f"{alias}.split IN ({','.join('?' * len(splits))})")
            params.extend(splits)
        if self.collections:
            clauses.append(f"{alias}.collection IN ({','.join('?' * len(self.collections))})")
            params.extend(self.collections)
        else:
            clauses.append(f"{alias}.collection NOT IN (SELECT name FROM collections WHERE kind = 'judgments' OR hidden = 1)")
        if self.task:
            clauses.append(f"{alias}.task = ?")
            params.append(self.task)
        if not self.include_bad:
            clauses.append(f"{alias}.bad_item IS NULL")
        clauses.append(visible(alias))
        return (" AND ".join(clauses) or "1"), params


def visible(alias: str = "p") -> str:
    """The rows a reader may see: not staged by an import that has not finished."""
    return f"({alias}.import_id IS NULL OR {alias}.import_id IN (SELECT id FROM imports WHERE status = 'done'))"


def get(store: Store, prompt_id: int) -> Prompt | None:
    r = store.one("SELECT * FROM prompts WHERE id = ?", (prompt_id,))
    return _row(r) if r else None


def select(store: Store, flt: PromptFilter = PromptFilter()) -> list[Prompt]:
    where, params = flt.where()
    sql = f"SELECT p.* FROM prompts p WHERE {where} ORDER BY p.id"
    if flt.limit:
        sql += f" LIMIT {int(flt.limit)}"
    return [_row(r) for r in store.all(sql, params)]


def split_of_group(store: Store, group_key: str) -> str | None:
    return store.scalar("SELECT split FROM prompts WHERE group_key = ? LIMIT 1", (group_key,))


def hashes_in_collection(store: Store, collection: str) -> set[str]:
    return {r[0] for r in store.execute(f"SELECT text_hash FROM prompts p WHERE collection = ? AND {visible()}", (collection,))}


INSERT_COLUMNS = ("text", "text_hash", "reference", "split", "task", "group_key", "collection", "meta", "source", "created_at")


def insert_many(store: Store, rows: Iterable[Sequence[Any]], import_id: int | None = None) -> None:
    """Insert rows of :data:`INSERT_COLUMNS` values (call inside ``store.tx()``); with
    ``import_id`` they stay invisible until :func:`publish_import`."""
    cols = (*INSERT_COLUMNS, "import_id")
    store.conn.executemany(
        f"INSERT INTO prompts ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
        [(*r, import_id) for r in rows],
    )


# --- staged imports: short transactions, one quick statement to publish -------------

SETTLE_CHUNK = 20_000  # rows per short transaction when clearing or dropping a staged import


def begin_import(store: Store, kind: str, source: str | None) -> int:
    import os
    import socket

    from preceptor.db.store import now

    with store.tx():
        return int(store.execute("INSERT INTO imports (kind, source, host, pid, status, created_at) VALUES (?, ?, ?, ?, 'staging', ?)",
                                 (kind, source, socket.gethostname(), os.getpid(), now())).lastrowid)


def publish_import(store: Store, import_id: int, collection: str | None, kind: str = "prompts", source: str | None = None,
                   *, hidden: bool = False) -> None:
    """The one quick statement that makes every row of the import visible at once (and its collection)."""
    with store.tx():
        if collection is not None:
            ensure_collection(store, collection, kind, source, hidden=hidden)
        store.execute("UPDATE imports SET status = 'done' WHERE id = ?", (import_id,))


# Tables whose rows an import stages (children before parents: the order rows are dropped in).
STAGED_TABLES = ("corpus_docs", "judgments", "pairs", "outputs", "embed_pairs", "prompts")


def staged(alias: str) -> str:
    """SQL true for a row of ``alias`` that belongs to an import not yet published."""
    return f"({alias}.import_id IS NOT NULL AND {alias}.import_id NOT IN (SELECT id FROM imports WHERE status = 'done'))"


def _chunked(store: Store, sql: str, import_id: int) -> int:
    total = 0
    while True:
        with store.tx():
            n = store.execute(sql, (import_id, SETTLE_CHUNK)).rowcount
        total += n
        if n < SETTLE_CHUNK:
            return total


def settle_import(store: Store, import_id: int) -> None:
    """After publishing: clear the rows' import id in short transactions, then forget the import."""
    for table in reversed(STAGED_TABLES):
        _chunked(store, f"UPDATE {table} SET import_id = NULL WHERE rowid IN "
                        f"(SELECT rowid FROM {table} WHERE import_id = ? LIMIT ?)", import_id)
    with store.tx():
        store.execute("DELETE FROM imports WHERE id = ?", (import_id,))


def drop_import(store: Store, import_id: int) -> int:
    """Delete a staged (never published) import's rows in short transactions; returns how many
    prompts (or, for an import of embedding pairs, pairs) it had staged."""
    counts = {table: _chunked(store, f"DELETE FROM {table} WHERE rowid IN "
                                     f"(SELECT rowid FROM {table} WHERE import_id = ? LIMIT ?)", import_id)
              for table in STAGED_TABLES}
    with store.tx():
        row = store.one("SELECT kind, source, created_at FROM imports WHERE id = ? AND status = 'staging'", (import_id,))
        if row is not None and row["kind"] == "judgments":  # the answer systems this import created
            store.execute("DELETE FROM systems WHERE imported = 1 AND json_extract(meta, '$.import_id') = ? AND NOT EXISTS "
                          "(SELECT 1 FROM outputs o WHERE o.system_id = systems.id)", (import_id,))
        if row is not None and row["kind"] == "embed_pairs":
            # the stage (and its corpus) this import created, if it left them empty
            names = [r[0] for r in store.all(
                "SELECT name FROM embed_stages s WHERE source = ? AND created_at >= ? AND NOT EXISTS "
                "(SELECT 1 FROM embed_pairs e WHERE e.stage = s.name)", (row["source"], row["created_at"]))]
            for name in names:
                store.execute("DELETE FROM corpora WHERE name = ? AND created_at >= ? AND NOT EXISTS "
                              "(SELECT 1 FROM corpus_docs d WHERE d.corpus = corpora.name)", (name, row["created_at"]))
                store.execute("DELETE FROM embed_stages WHERE name = ?", (name,))
        store.execute("DELETE FROM imports WHERE id = ? AND status = 'staging'", (import_id,))
    return counts["prompts"] or counts["embed_pairs"]


def drop_stale_imports(store: Store) -> list[int]:
    """Staged imports whose process is gone (killed mid-import): drop their rows; published ones left
    half-settled are settled. Returns the ids dropped."""
    import socket

    from preceptor.processes import alive

    rows = store.all("SELECT id, host, pid, status FROM imports")
    host = socket.gethostname()
    dropped = []
    for r in rows:
        if r["host"] != host or alive(r["pid"]):
            continue
        if r["status"] == "done":
            settle_import(store, r["id"])
        else:
            drop_import(store, r["id"])
            dropped.append(r["id"])
    return dropped


def ids_by_hash(store: Store, collection: str, hashes: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(hashes), 500):
        chunk = list(hashes[i:i + 500])
        for r in store.all(
            f"SELECT text_hash, id FROM prompts WHERE collection = ? AND text_hash IN ({','.join('?' * len(chunk))})",
            [collection, *chunk],
        ):
            out[r[0]] = r[1]
    return out


def counts_by_split(store: Store) -> dict[str, dict[str, int]]:
    """{collection: {split: n}}."""
    out: dict[str, dict[str, int]] = {}
    for r in store.all(f"SELECT collection, split, COUNT(*) FROM prompts p WHERE {visible()} GROUP BY collection, split"):
        out.setdefault(r[0], {})[r[1]] = r[2]
    return out


def set_bad_item(store: Store, prompt_id: int, reason: str | None) -> None:
    with store.tx():
        store.execute("UPDATE prompts SET bad_item = ? WHERE id = ?", (reason, prompt_id))


def ensure_collection(store: Store, name: str, kind: str = "prompts", source: str | None = None, *,
                      hidden: bool = False) -> None:
    """Create a collection if new; ``hidden`` ones are left out of every default selection
    (they are read only when named, e.g. ``--collection retrieval-consumer_query``)."""
    from preceptor.db.store import now

    store.execute("INSERT OR IGNORE INTO collections (name, kind, source, created_at, hidden) VALUES (?, ?, ?, ?, ?)",
                  (name, kind, source, now(), int(hidden)))


def collections(store: Store) -> list[dict[str, Any]]:
    return [dict(r) for r in store.all("SELECT * FROM collections ORDER BY created_at")]


def search(store: Store, query: str, limit: int = 500) -> tuple[list[Prompt], int]:
    """Prompts (every collection, bad items included) whose text or reference contains ``query``
    (case-insensitive), or whose task or split equals it; returns (first ``limit`` rows, total)."""
    q = query.strip()
    if not q:
        where, params = "1", []
    else:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where = ("(text LIKE ? ESCAPE '\\' OR reference LIKE ? ESCAPE '\\' OR lower(task) = lower(?) OR split = lower(?))")
        params = [like, like, q, q]
    where = f"{where} AND {visible()}"
    total = store.scalar(f"SELECT COUNT(*) FROM prompts p WHERE {where}", params) or 0
    rows = store.all(f"SELECT * FROM prompts p WHERE {where} ORDER BY id LIMIT ?", [*params, int(limit)])
    return [_row(r) for r in rows], int(total)


def in_use(store: Store) -> dict[int, str]:
    """Prompt id -> why its split must not change: it has judgments, or a training run used it.

    A run that recorded its ``prompt_ids`` (SFT from this version on) locks exactly those;
    an older SFT / DPO run that did not (and was not a failure) locks every prompt that
    existed when it was created.
    """
    out: dict[int, str] = {}
    for pid, n in store.all("SELECT p.prompt_id, COUNT(*) FROM judgments j JOIN pairs p ON p.id = j.pair_id "
                            "GROUP BY p.prompt_id"):
        out[int(pid)] = f"{n} judgment{'s' if n != 1 else ''}"
    for rid, kind, config, created in store.all(
            "SELECT id, kind, config, created_at FROM runs WHERE kind IN ('sft', 'dpo') AND status != 'failed' ORDER BY id"):
        ids = (loads(config) or {}).get("prompt_ids")
        if ids is None:
            ids = [r[0] for r in store.all("SELECT id FROM prompts WHERE created_at <= ?", (created,))]
        for pid in ids:
            out.setdefault(int(pid), f"used by {kind} run {rid}")
    return out


def set_splits(store: Store, changes: Sequence[tuple[int, str, str]]) -> None:
    """(prompt id, group key, split) for each prompt; pairs on those prompts follow (call inside ``store.tx()``)."""
    store.conn.executemany("UPDATE prompts SET group_key = ?, split = ? WHERE id = ?", [(g, s, i) for i, g, s in changes])
    store.conn.executemany("UPDATE pairs SET split = ? WHERE prompt_id = ?", [(s, i) for i, _, s in changes])
