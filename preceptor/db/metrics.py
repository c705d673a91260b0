"""Typed queries on ``metrics``: one value per (output, metric name, reference).

``reference`` names what the output was compared with: ``"gold"`` (the prompt's
reference), ``"teacher"`` or another system name (that system's output for the same
prompt). Reference-free metrics (perplexity) are stored under :data:`NO_REFERENCE` and
count for every reference. ``value`` is NULL where the metric does not apply to the item;
``meta`` holds the cache key and details (language, whether rescaled, P/R...).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from preceptor.db.prompts import PromptFilter
from preceptor.db.store import Store, dumps, loads, now

NO_REFERENCE = "none"
_CHUNK = 500


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    ids = list(ids)
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def values_for_outputs(store: Store, output_ids: Sequence[int], name: str, reference: str) -> dict[int, float]:
    """{output_id: value} of metric ``name`` against ``reference`` (items where it does not apply are left out)."""
    out: dict[int, float] = {}
    for chunk in _chunks(output_ids):
        for r in store.all(
            f"SELECT output_id, value FROM metrics WHERE name = ? AND reference IN (?, ?) AND value IS NOT NULL "
            f"AND output_id IN ({','.join('?' * len(chunk))})",
            [name, reference, NO_REFERENCE, *chunk],
        ):
            out[r[0]] = r[1]
    return out


def cached(store: Store, output_ids: Sequence[int], name: str, reference: str) -> dict[int, tuple[float | None, dict[str, Any]]]:
    """{output_id: (value, meta)} already stored for ``name`` / ``reference`` (NULL values included)."""
    out: dict[int, tuple[float | None, dict[str, Any]]] = {}
    for chunk in _chunks(output_ids):
        for r in store.all(
            f"SELECT output_id, value, meta FROM metrics WHERE name = ? AND reference = ? "
            f"AND output_id IN ({','.join('?' * len(chunk))})",
            [name, reference, *chunk],
        ):
            out[r[0]] = (r[1], loads(r[2]) or {})
    return out


def upsert_many(store: Store, rows: Iterable[tuple[int, str, str, float | None, dict[str, Any] | None]]) -> int:
    """Store (output_id, name, reference, value, meta) rows, replacing earlier values; returns the count."""
    ts = now()
    values = [(oid, name, ref, None if v is None else float(v), dumps(meta), ts) for oid, name, ref, v, meta in rows]
    if not values:
        return 0
    with store.tx():
        store.conn.executemany(
            """INSERT INTO metrics (output_id, name, reference, value, meta, created_at) VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (output_id, name, reference) DO UPDATE SET
               value = excluded.value, meta = excluded.meta, created_at = excluded.created_at""",
            values,
        )
    return len(values)


def delete(store: Store, output_ids: Sequence[int], names: Sequence[str], reference: str) -> int:
    n = 0
    with store.tx():
        for chunk in _chunks(output_ids):
            n += store.execute(
                f"DELETE FROM metrics WHERE reference = ? AND name IN ({','.join('?' * len(names))}) "
                f"AND output_id IN ({','.join('?' * len(chunk))})",
                [reference, *names, *chunk],
            ).rowcount
    return n


def all_values(store: Store, output_ids: Sequence[int], reference: str) -> dict[int, dict[str, float | None]]:
    """{output_id: {name: value}} for ``reference`` plus the reference-free metrics."""
    out: dict[int, dict[str, float | None]] = {}
    for chunk in _chunks(output_ids):
        for r in store.all(
            f"SELECT output_id, name, value FROM metrics WHERE reference IN (?, ?) "
            f"AND output_id IN ({','.join('?' * len(chunk))})",
            [reference, NO_REFERENCE, *chunk],
        ):
            out.setdefault(r[0], {})[r[1]] = r[2]
    return out


def metas(store: Store, output_ids: Sequence[int], name: str, reference: str) -> dict[int, dict[str, Any]]:
    return {oid: meta for oid, (_, meta) in cached(store, output_ids, name, reference).items()}


def references_in_use(store: Store) -> list[str]:
    """The references that have stored values, most values first."""
    return [r[0] for r in store.all(
        "SELECT reference, COUNT(*) FROM metrics WHERE reference != ? GROUP BY reference ORDER BY COUNT(*) DESC",
        (NO_REFERENCE,))]


def eval_rows(store: Store, flt: PromptFilter, system_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Successful outputs of ``system_ids`` on the prompts selected by ``flt``, with their prompt.

    Rows: output_id, prompt_id, system_id, system (name), text, prompt, gold (the prompt's
    reference), split, collection. Ordered by prompt then system.
    """
    if not system_ids:
        return []
    where, params = flt.where("p")
    sql = (
        "SELECT o.id AS output_id, o.prompt_id, o.system_id, s.name AS system, o.text, p.text AS prompt, "
        "p.reference AS gold, p.split, p.collection FROM outputs o JOIN prompts p ON p.id = o.prompt_id "
        f"JOIN systems s ON s.id = o.system_id WHERE {where} AND o.error IS NULL AND o.text IS NOT NULL "
        f"AND o.system_id IN ({','.join('?' * len(system_ids))}) ORDER BY o.prompt_id, o.system_id"
    )
    return [dict(r) for r in store.all(sql, [*params, *system_ids])]


def systems_with_outputs(store: Store, flt: PromptFilter) -> list[tuple[int, str, int]]:
    """(system_id, name, n successful outputs) for systems with outputs on the selected prompts."""
    where, params = flt.where("p")
    return [(r[0], r[1], r[2]) for r in store.all(
        "SELECT s.id, s.name, COUNT(*) FROM outputs o JOIN prompts p ON p.id = o.prompt_id "
        f"JOIN systems s ON s.id = o.system_id WHERE {where} AND o.error IS NULL AND o.text IS NOT NULL "
        "GROUP BY s.id ORDER BY s.id", params)]


def count_with_reference(store: Store, flt: PromptFilter) -> int:
    where, params = flt.where("p")
    return store.scalar(
        f"SELECT COUNT(*) FROM prompts p WHERE {where} AND p.reference IS NOT NULL AND TRIM(p.reference) != ''", params) or 0
