"""The store: one SQLite database per project (WAL, foreign keys, busy timeout).

``preceptor.db.store.Store`` owns the connection and transactions; the typed query
functions live in one module per area (``prompts``, ``systems``, ``outputs``, ``runs``,
``judging``, ``metrics``, ``exports``, ``cache``). The engine calls those; no SQL
strings elsewhere.
"""

from preceptor.db.store import Store

__all__ = ["Store"]
