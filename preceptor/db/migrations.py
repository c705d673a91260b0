"""Named, transactional migrations.

Each migration is a function ``mNNN_name(conn)``; it and the row recording it in
``schema_migrations`` run inside one transaction, so a crash never leaves a half-applied
step. Append new migrations to :data:`MIGRATIONS`; never edit one that has shipped.
A database made by an older version opens in a newer one and is brought to head.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from preceptor.db.store import Store, now
from preceptor.errors import PreceptorError


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the caller's transaction.

    (``executescript`` would COMMIT first, breaking the migration's atomicity.)
    """
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            conn.execute(buf)
            buf = ""
    if buf.strip():
        conn.execute(buf)


def m001_initial(conn: sqlite3.Connection) -> None:
    _script(conn, 
        """
        CREATE TABLE collections (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL DEFAULT 'prompts' CHECK (kind IN ('prompts', 'judgments')),
            source TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE prompts (
            id INTEGER PRIMARY KEY,
            text TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            reference TEXT,
            split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
            task TEXT,
            group_key TEXT NOT NULL,
            collection TEXT NOT NULL,
            meta TEXT,
            source TEXT,
            bad_item TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (collection, text_hash)
        );
        CREATE INDEX prompts_group ON prompts (group_key);
        CREATE INDEX prompts_split ON prompts (collection, split);

        CREATE TABLE systems (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL,
            backend TEXT NOT NULL,
            model TEXT,
            adapter TEXT,
            params TEXT,
            imported INTEGER NOT NULL DEFAULT 0,
            run_id INTEGER,
            meta TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE outputs (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
            system_id INTEGER NOT NULL REFERENCES systems (id) ON DELETE CASCADE,
            text TEXT,
            error TEXT,
            messages TEXT,
            template_hash TEXT,
            params TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_ms REAL,
            cost REAL,
            created_at TEXT NOT NULL,
            UNIQUE (prompt_id, system_id)
        );
        CREATE INDEX outputs_system ON outputs (system_id);

        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
            config TEXT,
            pid INTEGER,
            dir TEXT,
            error TEXT,
            warning TEXT,
            system_id INTEGER REFERENCES systems (id),
            parent_id INTEGER REFERENCES runs (id),
            created_at TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            heartbeat_at TEXT
        );

        CREATE TABLE run_metrics (
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            name TEXT NOT NULL,
            value REAL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX run_metrics_run ON run_metrics (run_id, name, step);

        CREATE TABLE metrics (
            output_id INTEGER NOT NULL REFERENCES outputs (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            reference TEXT NOT NULL,
            value REAL,
            meta TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (output_id, name, reference)
        );

        CREATE TABLE exports (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            path TEXT NOT NULL,
            filters TEXT,
            n INTEGER NOT NULL,
            sha256 TEXT,
            manifest TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE llm_cache (
            key TEXT PRIMARY KEY,
            model TEXT,
            request TEXT NOT NULL,
            response TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost REAL,
            created_at TEXT NOT NULL
        );
        """
    )


def m002_judging(conn: sqlite3.Connection) -> None:
    _script(conn, 
        """
        CREATE TABLE experts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            norm_name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );

        CREATE TABLE pairs (
            id INTEGER PRIMARY KEY,
            prompt_id INTEGER NOT NULL REFERENCES prompts (id) ON DELETE CASCADE,
            output_a INTEGER NOT NULL REFERENCES outputs (id) ON DELETE CASCADE,
            output_b INTEGER NOT NULL REFERENCES outputs (id) ON DELETE CASCADE,
            split TEXT NOT NULL,
            priority REAL NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            UNIQUE (output_a, output_b),
            CHECK (output_a < output_b)
        );
        CREATE INDEX pairs_prompt ON pairs (prompt_id);

        CREATE TABLE reservations (
            pair_id INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
            expert_id INTEGER NOT NULL REFERENCES experts (id) ON DELETE CASCADE,
            until REAL NOT NULL,
            repeat INTEGER NOT NULL DEFAULT 0,
            left_output_id INTEGER,
            PRIMARY KEY (pair_id, expert_id)
        );

        CREATE TABLE judgments (
            id INTEGER PRIMARY KEY,
            pair_id INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
            judge_kind TEXT NOT NULL CHECK (judge_kind IN ('expert', 'llm', 'metric', 'imported')),
            judge_id TEXT NOT NULL,
            left_output_id INTEGER,
            winner_output_id INTEGER REFERENCES outputs (id),
            verdict TEXT NOT NULL CHECK (verdict IN ('win', 'tie', 'both_bad', 'unparsed', 'inconsistent', 'skip')),
            confidence REAL,
            unsafe_a INTEGER NOT NULL DEFAULT 0,
            unsafe_b INTEGER NOT NULL DEFAULT 0,
            rationale TEXT,
            raw TEXT,
            latency_ms REAL,
            repeat INTEGER NOT NULL DEFAULT 0,
            supersedes INTEGER REFERENCES judgments (id),
            meta TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX judgments_pair ON judgments (pair_id, judge_kind);
        CREATE INDEX judgments_judge ON judgments (judge_kind, judge_id);
        """
    )


def m003_embedding(conn: sqlite3.Connection) -> None:
    """The embedding track: curriculum stages, their pairs, encoder models and corpora.

    A stage's order lives in ``preceptor.toml`` (``[embed] stages``); this table records
    which stages hold data. ``encoders`` lists every encoder a run produced (one per
    stage, chained through ``parent_id``); ``corpora`` / ``corpus_docs`` are the document
    sets a retriever system searches.
    """
    _script(conn,
        """
        CREATE TABLE embed_stages (
            name TEXT PRIMARY KEY,
            description TEXT,
            source TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE embed_pairs (
            id INTEGER PRIMARY KEY,
            stage TEXT NOT NULL REFERENCES embed_stages (name) ON DELETE CASCADE,
            anchor TEXT NOT NULL,
            positive TEXT NOT NULL,
            negative TEXT,
            score REAL,
            group_key TEXT NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('train', 'val', 'test')),
            pair_hash TEXT NOT NULL,
            source TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (stage, pair_hash)
        );
        CREATE INDEX embed_pairs_stage ON embed_pairs (stage, split);
        CREATE INDEX embed_pairs_group ON embed_pairs (stage, group_key);

        CREATE TABLE encoders (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            base TEXT,
            stage TEXT,
            run_id INTEGER REFERENCES runs (id) ON DELETE SET NULL,
            parent_id INTEGER REFERENCES encoders (id) ON DELETE SET NULL,
            query_prefix TEXT NOT NULL DEFAULT '',
            passage_prefix TEXT NOT NULL DEFAULT '',
            meta TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE corpora (
            name TEXT PRIMARY KEY,
            source TEXT,
            created_at TEXT NOT NULL
        );

        CREATE TABLE corpus_docs (
            id INTEGER PRIMARY KEY,
            corpus TEXT NOT NULL REFERENCES corpora (name) ON DELETE CASCADE,
            doc_key TEXT NOT NULL,
            text TEXT NOT NULL,
            meta TEXT,
            UNIQUE (corpus, doc_key)
        );
        """
    )


def m004_judging_extra(conn: sqlite3.Connection) -> None:
    """Judging queue: denormalised pair columns + a partial index of open pairs, repeats."""
    _script(conn,
        """
        ALTER TABLE pairs ADD COLUMN system_a INTEGER REFERENCES systems (id);
        ALTER TABLE pairs ADD COLUMN system_b INTEGER REFERENCES systems (id);
        ALTER TABLE pairs ADD COLUMN needed INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE pairs ADD COLUMN expert_votes INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE pairs ADD COLUMN queue_key INTEGER NOT NULL DEFAULT 0;
        UPDATE pairs SET system_a = (SELECT system_id FROM outputs WHERE outputs.id = pairs.output_a),
                         system_b = (SELECT system_id FROM outputs WHERE outputs.id = pairs.output_b),
                         queue_key = (id * 2654435761) % 4294967296;
        UPDATE pairs SET expert_votes = (
            SELECT COUNT(DISTINCT j.judge_id) FROM judgments j
            WHERE j.pair_id = pairs.id AND j.judge_kind = 'expert' AND j.repeat = 0
              AND j.verdict IN ('win', 'tie', 'both_bad')
              AND NOT EXISTS (SELECT 1 FROM judgments s WHERE s.supersedes = j.id));
        CREATE INDEX pairs_open ON pairs (priority DESC, queue_key) WHERE expert_votes < needed;
        CREATE INDEX pairs_systems ON pairs (system_a, system_b, split);
        CREATE INDEX pairs_split ON pairs (split);

        ALTER TABLE reservations ADD COLUMN host TEXT;
        ALTER TABLE reservations ADD COLUMN pid INTEGER;
        ALTER TABLE reservations ADD COLUMN served_at REAL;
        CREATE INDEX reservations_expert ON reservations (expert_id);

        CREATE INDEX judgments_expert_pair ON judgments (judge_kind, judge_id, pair_id);
        CREATE INDEX judgments_supersedes ON judgments (supersedes);

        CREATE TABLE repeats (
            expert_id INTEGER NOT NULL REFERENCES experts (id) ON DELETE CASCADE,
            pair_id INTEGER NOT NULL REFERENCES pairs (id) ON DELETE CASCADE,
            due_after INTEGER NOT NULL,
            left_output_id INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (expert_id, pair_id)
        );
        CREATE INDEX repeats_due ON repeats (expert_id, due_after);
        """
    )


def m005_judgment_attribution(conn: sqlite3.Connection) -> None:
    """Who cast a judgment beyond the typed name: the OS account and, when served, the
    web session; experts' personal access tokens (stored as SHA-256 hashes only)."""
    _script(
        conn,
        """
        ALTER TABLE judgments ADD COLUMN os_user TEXT;
        ALTER TABLE judgments ADD COLUMN served_session TEXT;
        ALTER TABLE experts ADD COLUMN token_hash TEXT;
        CREATE UNIQUE INDEX experts_token ON experts (token_hash) WHERE token_hash IS NOT NULL;
        """
    )


def m006_store_robustness(conn: sqlite3.Connection) -> None:
    """Staged imports: rows written in short transactions under an import id stay invisible
    until one quick statement marks the import ``done`` (a killed import is dropped later)."""
    _script(conn,
        """
        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            source TEXT,
            host TEXT,
            pid INTEGER,
            status TEXT NOT NULL DEFAULT 'staging' CHECK (status IN ('staging', 'done')),
            created_at TEXT NOT NULL
        );
        ALTER TABLE prompts ADD COLUMN import_id INTEGER;
        CREATE INDEX prompts_staged ON prompts (import_id) WHERE import_id IS NOT NULL;
        """
    )


def m007_language_and_splits(conn: sqlite3.Connection) -> None:
    """Collections kept out of default selections (``hidden``): the embedding demo's held-out
    queries, so `train embed --demo` never adds prompts to a project's default views."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(collections)")}
    if "hidden" not in cols:
        conn.execute("ALTER TABLE collections ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0")


def m009_active_queue(conn: sqlite3.Connection) -> None:
    """Partial indexes for the judging queue's orders: per matchup (active), by queue key
    (random) and by id (sequential), each over the pairs still needing a vote."""
    _script(
        conn,
        """
        CREATE INDEX pairs_open_matchup ON pairs (system_a, system_b, priority DESC, queue_key) WHERE expert_votes < needed;
        CREATE INDEX pairs_open_key ON pairs (queue_key) WHERE expert_votes < needed;
        CREATE INDEX pairs_open_id ON pairs (id) WHERE expert_votes < needed;
        """
    )


def m010_staged_bulk_imports(conn: sqlite3.Connection) -> None:
    """Staging for every bulk import, not only prompts: outputs, pairs and judgments written by
    ``import-judgments`` and embedding pairs and corpus documents written by ``import-pairs``
    carry the import id too, so a killed import is dropped whole and stays invisible meanwhile."""
    for table in ("outputs", "pairs", "judgments", "embed_pairs", "corpus_docs"):
        cols = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
        if "import_id" not in cols:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN import_id INTEGER")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_staged ON {table} (import_id) WHERE import_id IS NOT NULL")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    m001_initial,
    m002_judging,
    m003_embedding,
    m004_judging_extra,
    m005_judgment_attribution,
    m006_store_robustness,
    m007_language_and_splits,
    m009_active_queue,
    m010_staged_bulk_imports,
]


def migrate(store: Store, target: int | None = None) -> list[str]:
    """Apply pending migrations (up to ``target`` steps in total); return the names applied."""
    conn = store.conn
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    refuse_newer(store, done)
    todo = MIGRATIONS if target is None else MIGRATIONS[:target]
    applied = []
    for fn in todo:
        if fn.__name__ in done:
            continue
        with store.tx():
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (fn.__name__,)).fetchone():
                continue  # another process migrated meanwhile
            fn(conn)
            conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (fn.__name__, now()))
        applied.append(fn.__name__)
    return applied


def refuse_newer(store: Store, done: set[str]) -> None:
    """A database migrated by a newer preceptor (names this version does not know) is refused."""
    unknown = sorted(done - {fn.__name__ for fn in MIGRATIONS})
    if unknown:
        raise PreceptorError(
            "Database from a newer preceptor",
            f"{store.path} was made by a newer preceptor (schema {', '.join(unknown)}); upgrade preceptor",
            "Install the newer preceptor that wrote this project (pip install -U preceptor), "
            "or open a copy made with `preceptor backup` before the upgrade.",
        )


def head() -> int:
    return len(MIGRATIONS)
