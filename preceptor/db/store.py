"""Connection and transactions of a project database (migrations are applied by the opener: ``db.open_database``)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from preceptor.errors import PreceptorError

BUSY_TIMEOUT_MS = 1_000  # one wait of SQLite's own busy handler; a write transaction retries it (below)
WRITE_DEADLINE_S = 600.0  # how long a write keeps retrying a database another process holds
WAIT_NOTICE_S = 1.0  # after this long, the waiting caller is told ("waiting for the database…")
POLL_BUSY_MS = 10  # while a writer waits: SQLite's own wait per try (short, so the lock is seen free quickly)
YIELD_MAX_S = 0.25  # a bulk writer pauses at most this long per transaction for a waiting writer
STALE_WAITER_S = 5.0  # a waiting-writer marker older than this is left by a killed process: ignored


def is_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database is busy" (another connection holds the write lock)."""
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


def now() -> str:
    """UTC timestamp with milliseconds, sortable as text."""
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Store:
    """A project database.

    The connection is plain ``sqlite3`` in autocommit mode (fast to open: the TUI's
    start-up reads go through it); writes happen inside :meth:`tx`, which takes the write
    lock up front (``BEGIN IMMEDIATE``) so concurrent writers queue on the busy timeout
    instead of failing with "database is locked". sqlite-utils is available through
    :attr:`utils` for schema work and bulk inserts, imported only when first used.
    """

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._depth = 0
        self._lock = threading.RLock()  # one connection, several threads: one writer at a time
        self._local = threading.local()  # per thread: who to tell while a write waits for the lock
        self.write_deadline = WRITE_DEADLINE_S
        self.notify_wait: Callable[[str], None] | None = None  # the default for threads that set none (the CLI: stderr)
        self.waiting_dir = self.path.parent / (self.path.name + "-waiting")  # one marker per writer waiting for the lock
        shared = self._shared_folder()
        old_umask = os.umask(0o002) if shared else None
        try:
            if readonly:
                uri = f"file:{self.path}?mode=ro"
                self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
            else:
                self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if mode.lower() != "wal":  # pragma: no cover - e.g. a network file system
                    raise PreceptorError("Database", f"{self.path}: cannot switch to WAL mode ({mode})", "Keep the project on a local disk.")
                self.conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as exc:
            raise PreceptorError("Cannot open database", f"{self.path}: {exc}", "Check the file is a preceptor database and the folder is writable.")
        finally:
            if old_umask is not None:
                os.umask(old_umask)
        if shared:
            self._make_group_writable()

    # -- sharing between OS users ----------------------------------------------------
    def _shared_folder(self) -> bool:
        try:
            return bool(self.path.parent.stat().st_mode & stat.S_IWGRP)
        except OSError:
            return False

    def _make_group_writable(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            try:
                if p.exists() and p.stat().st_uid == os.getuid():
                    p.chmod(p.stat().st_mode | stat.S_IRGRP | stat.S_IWGRP)
            except OSError:
                pass

    # -- transactions -----------------------------------------------------------------
    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (nestable: inner calls join the outer one).

        Thread-safe: a thread that opens a transaction while another thread holds one on
        this connection waits for it (other processes wait on SQLite's busy timeout).
        """
        with self._lock:
            with self._tx() as conn:
                yield conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        if getattr(self._local, "bulk", 0):
            self._yield_to_waiters()
        self._begin()
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        else:
            self._depth = 0
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Mark a long run of short write transactions (an import, a generation run): before each,
        the writer gives way to any other process waiting for the write lock (a vote), so SQLite's
        unfair lock never starves it behind back-to-back batches."""
        self._local.bulk = getattr(self._local, "bulk", 0) + 1  # per thread: the app's vote thread is not slowed
        try:
            yield
        finally:
            self._local.bulk -= 1

    def _waiters(self) -> bool:
        try:
            entries = list(os.scandir(self.waiting_dir))
        except OSError:
            return False
        t = time.time()
        for e in entries:
            try:
                age = t - e.stat().st_mtime
            except OSError:
                continue
            if age < STALE_WAITER_S:
                return True
            if age > 10 * STALE_WAITER_S:
                with contextlib.suppress(OSError):
                    os.unlink(e.path)
        return False

    def _yield_to_waiters(self) -> None:
        deadline = time.monotonic() + YIELD_MAX_S
        while self._waiters() and time.monotonic() < deadline:
            time.sleep(0.001)

    @contextlib.contextmanager
    def _waiting(self) -> Iterator[Path | None]:
        """A marker file that says "a writer is waiting" while this thread waits for the lock."""
        marker: Path | None = self.waiting_dir / f"{os.getpid()}-{threading.get_ident()}"
        try:
            self.waiting_dir.mkdir(exist_ok=True)
            assert marker is not None
            marker.touch()
        except OSError:  # a read-only folder: wait without the marker
            marker = None
        try:
            yield marker
        finally:
            if marker is not None:
                with contextlib.suppress(OSError):
                    marker.unlink()

    @contextlib.contextmanager
    def on_wait(self, notify: Callable[[str], None] | None) -> Iterator[None]:
        """While inside, a write of this thread that waits for another writer calls ``notify(text)`` once."""
        prev = getattr(self._local, "notify", None)
        self._local.notify = notify
        try:
            yield
        finally:
            self._local.notify = prev

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE``, retried with backoff while another process holds the write lock.

        In WAL mode the write lock is the only thing a writer waits for: once taken, the
        transaction's statements never meet "database is locked". So the whole wait is here:
        short tries (SQLite's busy handler for :data:`POLL_BUSY_MS`, then a jittered sleep of a
        few ms) until :attr:`write_deadline`; past it (a writer stuck for minutes) a titled
        error. While it waits, a marker in :attr:`waiting_dir` makes bulk writers pause.
        """
        self.conn.execute(f"PRAGMA busy_timeout = {POLL_BUSY_MS}")
        try:
            self._begin_polling()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def _begin_polling(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        import tenacity

        start = time.monotonic()
        told = False
        touched = start

        def tell(_state: Any) -> None:
            nonlocal told, touched
            t = time.monotonic()
            if t - touched > 1.0:  # keep the marker fresh (an old one is taken for a killed process's)
                touched = t
                if marker is not None:
                    with contextlib.suppress(OSError):
                        marker.touch()
            notify = getattr(self._local, "notify", None) or self.notify_wait
            if not told and notify is not None and t - start >= WAIT_NOTICE_S:
                told = True
                notify("waiting for the database…")

        # Poll often (SQLite's busy handler backs off to 100 ms between looks, so a writer that
        # commits batch after batch would keep the lock): short busy waits, short jittered sleeps,
        # and a marker that makes bulk writers pause before their next batch.
        retry = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_busy),
            wait=tenacity.wait_random(0.0005, 0.003),
            stop=tenacity.stop_after_delay(self.write_deadline),
            before_sleep=tell, reraise=True)
        try:
            with self._waiting() as marker:
                for attempt in retry:
                    with attempt:
                        self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            raise PreceptorError(
                "Database busy",
                f"{self.path}: another program held the write lock for more than {self.write_deadline:.0f} s; nothing was written",
                "Try again; if it persists, look for a stuck preceptor process (`preceptor status`) and stop it.") from exc

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Any = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @property
    def schema_version(self) -> int:
        try:
            return int(self.scalar("SELECT COUNT(*) FROM schema_migrations") or 0)
        except sqlite3.OperationalError:
            return 0

    def backup(self, out: Path) -> None:
        """A consistent copy through SQLite's online backup API (safe while others write)."""
        out = Path(out)
        if out.exists():
            raise PreceptorError("Backup", f"{out} already exists", "Choose a new file name.")
        out.parent.mkdir(parents=True, exist_ok=True)
        dst = sqlite3.connect(out)
        try:
            self.conn.backup(dst)
        finally:
            dst.close()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
