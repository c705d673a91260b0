"""Typed queries on ``llm_cache``: one row per (model, messages, params) request."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from preceptor.db.store import Store, loads, now


@dataclass(frozen=True)
class CachedResponse:
    key: str
    model: str | None
    response: dict[str, Any]
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None


def get_many(store: Store, keys: Sequence[str]) -> dict[str, CachedResponse]:
    """The cached responses among ``keys`` (missing keys are absent from the result)."""
    out: dict[str, CachedResponse] = {}
    unique = list(dict.fromkeys(keys))
    for i in range(0, len(unique), 500):
        chunk = unique[i:i + 500]
        for r in store.all(
            "SELECT key, model, response, prompt_tokens, completion_tokens, cost FROM llm_cache"
            f" WHERE key IN ({','.join('?' * len(chunk))})", chunk):
            out[r[0]] = CachedResponse(r[0], r[1], loads(r[2]) or {}, r[3], r[4], r[5])
    return out


def put_many(store: Store, rows: Iterable[dict[str, Any]]) -> int:
    """Insert (or replace) rows with keys key, model, request (JSON text), response (JSON text),
    prompt_tokens, completion_tokens, cost; one transaction. Returns the number written."""
    values = [(r["key"], r.get("model"), r["request"], r["response"], r.get("prompt_tokens"),
               r.get("completion_tokens"), r.get("cost"), now()) for r in rows]
    if not values:
        return 0
    with store.tx():
        store.conn.executemany(
            "INSERT OR REPLACE INTO llm_cache (key, model, request, response, prompt_tokens, completion_tokens, cost, created_at)"
            " VALUES (?,?,?,?,?,?,?,?)", values)
    return len(values)


def count(store: Store, model: str | None = None) -> int:
    if model is None:
        return int(store.scalar("SELECT COUNT(*) FROM llm_cache") or 0)
    return int(store.scalar("SELECT COUNT(*) FROM llm_cache WHERE model = ?", (model,)) or 0)


def clear(store: Store, model: str | None = None) -> int:
    with store.tx():
        if model is None:
            return store.execute("DELETE FROM llm_cache").rowcount
        return store.execute("DELETE FROM llm_cache WHERE model = ?", (model,)).rowcount
