"""Typed queries on ``outputs`` (one answer per prompt × system, with provenance)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from preceptor.db.store import Store, dumps, loads, now


@dataclass(frozen=True)
class Output:
    id: int
    prompt_id: int
    system_id: int
    text: str | None
    error: str | None
    messages: list[dict[str, str]] | None
    template_hash: str | None
    params: dict[str, Any] | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_ms: float | None
    cost: float | None


def _row(r: Any) -> Output:
    return Output(r["id"], r["prompt_id"], r["system_id"], r["text"], r["error"], loads(r["messages"]),
                  r["template_hash"], loads(r["params"]), r["prompt_tokens"], r["completion_tokens"],
                  r["latency_ms"], r["cost"])


COLUMNS = ("prompt_id", "system_id", "text", "error", "messages", "template_hash", "params",
           "prompt_tokens", "completion_tokens", "latency_ms", "cost")


def record(store: Store, prompt_id: int, system_id: int, *, text: str | None = None, error: str | None = None,
           messages: list[dict[str, str]] | None = None, template_hash: str | None = None,
           params: dict[str, Any] | None = None, prompt_tokens: int | None = None,
           completion_tokens: int | None = None, latency_ms: float | None = None, cost: float | None = None) -> None:
    """Store (or replace) the output of ``system_id`` for ``prompt_id`` (call inside ``store.tx()`` to batch)."""
    record_many(store, [dict(prompt_id=prompt_id, system_id=system_id, text=text, error=error, messages=messages,
                             template_hash=template_hash, params=params, prompt_tokens=prompt_tokens,
                             completion_tokens=completion_tokens, latency_ms=latency_ms, cost=cost)])


def record_many(store: Store, rows: Iterable[dict[str, Any]], import_id: int | None = None) -> None:
    """Store (or replace) outputs; new rows of a staged import carry ``import_id``."""
    values = [
        (*(dumps(r.get(c)) if c in ("messages", "params") else r.get(c) for c in COLUMNS), now(), import_id)
        for r in rows
    ]
    with store.tx():
        store.conn.executemany(
            f"""INSERT INTO outputs ({','.join(COLUMNS)}, created_at, import_id) VALUES ({','.join('?' * (len(COLUMNS) + 2))})
                ON CONFLICT (prompt_id, system_id) DO UPDATE SET
                {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[2:])}, created_at = excluded.created_at""",
            values,
        )


def get(store: Store, output_id: int) -> Output | None:
    r = store.one("SELECT * FROM outputs WHERE id = ?", (output_id,))
    return _row(r) if r else None


def for_system(store: Store, system_id: int, *, ok_only: bool = True) -> list[Output]:
    sql = "SELECT * FROM outputs WHERE system_id = ?" + (" AND error IS NULL AND text IS NOT NULL" if ok_only else "")
    return [_row(r) for r in store.all(sql + " ORDER BY prompt_id", (system_id,))]


def for_prompt(store: Store, prompt_id: int) -> list[Output]:
    return [_row(r) for r in store.all("SELECT * FROM outputs WHERE prompt_id = ? ORDER BY system_id", (prompt_id,))]


def done_prompt_ids(store: Store, system_id: int) -> set[int]:
    """Prompts that already have a successful output from this system."""
    return {r[0] for r in store.execute(
        "SELECT prompt_id FROM outputs WHERE system_id = ? AND error IS NULL AND text IS NOT NULL", (system_id,))}
