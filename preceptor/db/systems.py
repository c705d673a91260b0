"""Typed queries on ``systems`` (base, teacher, ft, dpo, retriever, custom)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from preceptor.db.store import Store, dumps, loads, now
from preceptor.errors import PreceptorError

ROLES = ("base", "teacher", "ft", "dpo", "retriever", "custom", "judge")
BACKENDS = ("hf", "litellm", "imported", "grounded", "retriever")


@dataclass(frozen=True)
class System:
    id: int
    name: str
    role: str
    backend: str
    model: str | None
    adapter: str | None
    params: dict[str, Any] = field(default_factory=dict)
    imported: bool = False
    run_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _row(r: Any) -> System:
    return System(r["id"], r["name"], r["role"], r["backend"], r["model"], r["adapter"], loads(r["params"]) or {},
                  bool(r["imported"]), r["run_id"], loads(r["meta"]) or {})


def get(store: Store, system_id: int) -> System | None:
    r = store.one("SELECT * FROM systems WHERE id = ?", (system_id,))
    return _row(r) if r else None


def by_name(store: Store, name: str) -> System | None:
    r = store.one("SELECT * FROM systems WHERE name = ?", (name,))
    return _row(r) if r else None


def latest_with_role(store: Store, role: str) -> System | None:
    """The latest system with ``role`` whose training run (if any) succeeded.

    Systems that can generate win over imported ones (a file's ``response_student`` column
    must not hide the packaged student); an imported system is the fallback.
    """
    r = store.one(
        """SELECT s.* FROM systems s LEFT JOIN runs r ON r.id = s.run_id
           WHERE s.role = ? AND (s.run_id IS NULL OR r.status = 'succeeded')
           ORDER BY s.imported ASC, s.id DESC LIMIT 1""",
        (role,),
    )
    return _row(r) if r else None


def latest_trainable(store: Store, role: str) -> System | None:
    """The latest non-imported system with ``role`` that names a local transformers model
    (backend hf) whose training run (if any) succeeded: what a role means as a training base.
    Imported systems (a file's ``response_student`` column) never qualify."""
    r = store.one(
        """SELECT s.* FROM systems s LEFT JOIN runs r ON r.id = s.run_id
           WHERE s.role = ? AND s.imported = 0 AND s.backend = 'hf' AND s.model IS NOT NULL AND s.model != ''
             AND (s.run_id IS NULL OR r.status = 'succeeded')
           ORDER BY s.id DESC LIMIT 1""",
        (role,),
    )
    return _row(r) if r else None


def resolve(store: Store, name_or_role: str) -> System:
    """A system by exact name, or a role name meaning the latest succeeded one with that role."""
    s = by_name(store, name_or_role)
    if s is None and name_or_role in ROLES:
        s = latest_with_role(store, name_or_role)
    if s is None:
        names = ", ".join(x.name for x in all_systems(store)) or "none yet"
        raise PreceptorError(
            "Unknown system",
            f"no system named or with role {name_or_role!r}",
            f"Known systems: {names}. Add one with `preceptor systems add`.",
        )
    return s


def all_systems(store: Store) -> list[System]:
    return [_row(r) for r in store.all("SELECT * FROM systems ORDER BY id")]


def upsert(store: Store, name: str, *, role: str, backend: str, model: str | None = None, adapter: str | None = None,
           params: dict[str, Any] | None = None, imported: bool = False, run_id: int | None = None,
           meta: dict[str, Any] | None = None) -> System:
    """Create a system, or update its definition if the name exists."""
    with store.tx():
        existing = store.one("SELECT id FROM systems WHERE name = ?", (name,))
        values = (role, backend, model, adapter, dumps(params or {}), int(imported), run_id, dumps(meta or {}))
        if existing:
            store.execute(
                "UPDATE systems SET role=?, backend=?, model=?, adapter=?, params=?, imported=?, run_id=?, meta=? WHERE id=?",
                (*values, existing[0]),
            )
            sid = existing[0]
        else:
            sid = store.execute(
                "INSERT INTO systems (role, backend, model, adapter, params, imported, run_id, meta, name, created_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (*values, name, now()),
            ).lastrowid
    s = get(store, sid)
    assert s is not None
    return s


def output_counts(store: Store) -> dict[str, dict[str, int]]:
    """{system name: {"ok": n, "failed": n}}."""
    out: dict[str, dict[str, int]] = {s.name: {"ok": 0, "failed": 0} for s in all_systems(store)}
    for r in store.all(
        """SELECT s.name, SUM(o.error IS NULL), SUM(o.error IS NOT NULL)
           FROM outputs o JOIN systems s ON s.id = o.system_id GROUP BY s.name"""
    ):
        out[r[0]] = {"ok": r[1] or 0, "failed": r[2] or 0}
    return out
