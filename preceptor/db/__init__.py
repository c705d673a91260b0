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

__all__ = ["Store", "open_database"]


def open_database(path: Path | str) -> Store:
    """Open (or create) a project database and bring its schema to the newest migration."""
    store = Store(path)
    try:
        migrations.migrate(store)
    except sqlite3.DatabaseError as exc:
        store.close()
        raise PreceptorError("Cannot open database", f"{path}: {exc}",
                             "Check the file is a preceptor database and the folder is writable.")
    except BaseException:
        store.close()
        raise
    return store
