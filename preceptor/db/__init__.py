"""The store: one SQLite database per project (WAL, foreign keys, busy timeout).

``preceptor.db.store.Store`` owns the connection and transactions; ``migrations`` holds the
named schema migrations, applied by :func:`open_database` (what ``Project.open`` calls); the
typed query functions live in one module per area (``prompts``, ``systems``, ``outputs``,
``runs``, ``judging``, ``metrics``, ``exports``, ``cache``, ``embed``). The engine calls
those; no SQL strings elsewhere.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from preceptor.db import migrations
from preceptor.db.store import Store
from preceptor.errors import PreceptorError

__all__ = ["Store", "open_database", "user_error"]


RESTORE_HINT = ("Restore the project's last copy made with `preceptor backup` (copy it over this file, "
                "with the -wal and -shm files removed), or move the damaged file aside to start afresh.")


def damaged(path: Path | str, exc: BaseException) -> PreceptorError:
    """The titled error for a database file SQLite cannot read."""
    return PreceptorError("Damaged database", f"{path}: {exc} (the file is not a readable preceptor database)", RESTORE_HINT)


def user_error(exc: sqlite3.Error, path: Path | str | None = None) -> PreceptorError:
    """A titled error for an SQLite failure that reached a face (never "this is a bug")."""
    where = f"{path}: " if path else ""
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower():
        return PreceptorError("Database busy", f"{where}another program kept the database locked too long ({exc})",
                              "Try again in a moment; if it persists, look for a stuck preceptor process (preceptor status).")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, (sqlite3.OperationalError, sqlite3.IntegrityError)):
        return damaged(path or "the project database", exc)
    return PreceptorError("Database error", f"{where}{exc}", "Check the disk has space and the project folder is writable.")


def open_database(path: Path | str) -> Store:
    """Open (or create) a project database and bring its schema to the newest migration.

    A missing file is created; an existing one that is empty (zero bytes) or that SQLite
    cannot read is refused, never silently re-created; one made by a newer preceptor too.
    """
    path = Path(path)
    try:
        empty = path.stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        raise PreceptorError("Damaged database", f"{path} is empty (0 bytes): the project's data is not in it", RESTORE_HINT)
    try:
        store = Store(path)
    except PreceptorError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, sqlite3.DatabaseError) and not isinstance(cause, sqlite3.OperationalError):
            raise damaged(path, cause) from cause
        raise
    try:
        migrations.migrate(store)
        store.conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        store.close()
        raise PreceptorError("Cannot open database", f"{path}: {exc}",
                             "Check the folder is writable and no other program holds the file.")
    except sqlite3.DatabaseError as exc:
        store.close()
        raise damaged(path, exc) from exc
    except BaseException:
        store.close()
        raise
    return store
