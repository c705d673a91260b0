"""Typed queries on ``runs`` and ``run_metrics``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from preceptor.db.store import Store, dumps, loads, now
from preceptor.processes import alive

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    status: str
    config: dict[str, Any]
    pid: int | None
    dir: str | None
    error: str | None
    warning: str | None
    system_id: int | None
    parent_id: int | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    heartbeat_at: str | None = None


STALL_AFTER_S = 30.0  # a running run whose heartbeat (every 5 s) is older than this shows "stalled"


def _row(r: Any) -> Run:
    return Run(r["id"], r["kind"], r["status"], loads(r["config"]) or {}, r["pid"], r["dir"], r["error"],
               r["warning"], r["system_id"], r["parent_id"], r["created_at"], r["started_at"], r["ended_at"],
               r["heartbeat_at"])


def _age_s(stamp: str | None, t: float) -> float | None:
    if not stamp:
        return None
    import calendar
    import time

    whole, _, frac = stamp.rstrip("Z").partition(".")
    try:
        sec = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None
    return max(0.0, t - sec)


def liveness(run: Run, t: float | None = None, stall_after_s: float | None = None) -> tuple[str, float | None]:
    """(status as shown, seconds since the last sign of life) of a run.

    A ``running`` run whose heartbeat (or, before its first one, its start) is older than
    :data:`STALL_AFTER_S` shows ``stalled`` (its process exists but makes no progress, e.g.
    stopped with SIGSTOP or hung); one whose process is gone is marked ``interrupted`` by
    :func:`mark_dead_runs`. Other statuses are shown as they are, with no age.
    """
    import time

    if run.status != "running":
        return run.status, None
    t = time.time() if t is None else t
    age = _age_s(run.heartbeat_at or run.started_at, t)
    limit = STALL_AFTER_S if stall_after_s is None else stall_after_s
    if age is not None and age > limit:
        return "stalled", age
    return "running", age


def create(store: Store, kind: str, config: dict[str, Any], *, dir: str | None = None, parent_id: int | None = None) -> Run:
    with store.tx():
        rid = store.execute(
            "INSERT INTO runs (kind, status, config, dir, parent_id, created_at) VALUES (?, 'queued', ?, ?, ?, ?)",
            (kind, dumps(config), dir, parent_id, now()),
        ).lastrowid
    run = get(store, rid)
    assert run is not None
    return run


def get(store: Store, run_id: int) -> Run | None:
    r = store.one("SELECT * FROM runs WHERE id = ?", (run_id,))
    return _row(r) if r else None


def list_runs(store: Store, kind: str | None = None, limit: int = 100) -> list[Run]:
    if kind:
        rows = store.all("SELECT * FROM runs WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit))
    else:
        rows = store.all("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
    return [_row(r) for r in rows]


def update(store: Store, run_id: int, **fields: Any) -> None:
    if "config" in fields:
        fields["config"] = dumps(fields["config"])
    cols = ", ".join(f"{k} = ?" for k in fields)
    with store.tx():
        store.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))


def set_status(store: Store, run_id: int, status: str, *, error: str | None = None) -> None:
    assert status in STATUSES
    fields: dict[str, Any] = {"status": status}
    if status == "running":
        fields["started_at"] = now()
        fields["pid"] = os.getpid()
    if status in ("succeeded", "failed", "cancelled", "interrupted"):
        fields["ended_at"] = now()
    if error is not None:
        fields["error"] = error
    update(store, run_id, **fields)


def add_metrics(store: Store, run_id: int, items: Iterable[tuple[int, str, float]]) -> None:
    ts = now()
    with store.tx():
        store.conn.executemany(
            "INSERT INTO run_metrics (run_id, step, name, value, created_at) VALUES (?, ?, ?, ?, ?)",
            [(run_id, int(step), name, None if value is None else float(value), ts) for step, name, value in items],
        )


def metrics(store: Store, run_id: int, name: str | None = None) -> list[tuple[int, str, float]]:
    if name:
        rows = store.all("SELECT step, name, value FROM run_metrics WHERE run_id = ? AND name = ? ORDER BY rowid", (run_id, name))
    else:
        rows = store.all("SELECT step, name, value FROM run_metrics WHERE run_id = ? ORDER BY rowid", (run_id,))
    return [(r[0], r[1], r[2]) for r in rows]


def mark_dead_runs(store: Store) -> list[int]:
    """Mark runs whose process is gone as ``interrupted``; return their ids."""
    dead = [r[0] for r in store.all("SELECT id, pid FROM runs WHERE status = 'running'") if not r[1] or not alive(r[1])]
    for rid in dead:
        with store.tx():
            store.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = ?, error = COALESCE(error, 'the process ended without recording a result') "
                "WHERE id = ? AND status = 'running'",
                (now(), rid),
            )
    return dead + mark_dead_queued(store)


def counts_by_status(store: Store) -> dict[str, int]:
    return {r[0]: r[1] for r in store.all("SELECT status, COUNT(*) FROM runs GROUP BY status")}


# --- used by the training runner (preceptor.engine.train) ----------------------------

TERMINAL = ("succeeded", "failed", "cancelled", "interrupted")


def heartbeat(store: Store, run_id: int) -> None:
    """Record that the run's process is alive (written every few seconds by the worker)."""
    with store.tx():
        store.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (now(), run_id))


def mark_dead_queued(store: Store) -> list[int]:
    """Queued runs whose launched process (pid recorded) is gone: they never started."""
    dead = [r[0] for r in store.all("SELECT id, pid FROM runs WHERE status = 'queued' AND pid IS NOT NULL")
            if not alive(r[1])]
    for rid in dead:
        with store.tx():
            store.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = ?, "
                "error = COALESCE(error, 'the training process ended before it started (see the run log)') "
                "WHERE id = ? AND status = 'queued'",
                (now(), rid),
            )
    return dead


def requeue(store: Store, run_id: int, config: dict[str, Any]) -> None:
    """Put a stopped run back in the queue (resume): clears the error and end time."""
    with store.tx():
        store.execute(
            "UPDATE runs SET status = 'queued', config = ?, error = NULL, warning = NULL, ended_at = NULL, pid = NULL "
            "WHERE id = ?",
            (dumps(config), run_id),
        )


def merge_config(store: Store, run_id: int, values: dict[str, Any]) -> dict[str, Any]:
    """Add keys to the run's recorded config (e.g. the data's sha256 once it is known)."""
    with store.tx():
        row = store.one("SELECT config FROM runs WHERE id = ?", (run_id,))
        config = (loads(row[0]) if row else None) or {}
        config.update(values)
        store.execute("UPDATE runs SET config = ? WHERE id = ?", (dumps(config), run_id))
    return config


def append_warning(store: Store, run_id: int, text: str) -> None:
    with store.tx():
        store.execute(
            "UPDATE runs SET warning = CASE WHEN warning IS NULL OR warning = '' THEN ? ELSE warning || char(10) || ? END "
            "WHERE id = ?",
            (text, text, run_id),
        )


def metrics_after(store: Store, run_id: int, after_rowid: int = 0) -> list[tuple[int, int, str, float | None]]:
    """(rowid, step, name, value) recorded after ``after_rowid`` (for live watching)."""
    rows = store.all(
        "SELECT rowid, step, name, value FROM run_metrics WHERE run_id = ? AND rowid > ? ORDER BY rowid",
        (run_id, after_rowid),
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def delete_metrics_after(store: Store, run_id: int, step: int) -> int:
    """Drop metrics logged after ``step`` (a resume from that checkpoint logs them again)."""
    with store.tx():
        return store.execute("DELETE FROM run_metrics WHERE run_id = ? AND step > ?", (run_id, step)).rowcount


def last_values(store: Store, run_id: int) -> dict[str, tuple[int, float | None]]:
    """{name: (step, value)} of the last value recorded for each metric."""
    rows = store.all(
        "SELECT name, step, value FROM run_metrics WHERE rowid IN "
        "(SELECT MAX(rowid) FROM run_metrics WHERE run_id = ? GROUP BY name) ORDER BY name",
        (run_id,),
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def set_launch_pid(store: Store, run_id: int, pid: int) -> None:
    """Record the launched process while the run is still queued (the worker then records its own)."""
    with store.tx():
        store.execute("UPDATE runs SET pid = ? WHERE id = ? AND status = 'queued'", (pid, run_id))
