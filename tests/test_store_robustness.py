"""The store under stress: databases from the future, damaged files, liveness, busy writers."""

from __future__ import annotations

import sqlite3

import pytest

from preceptor.cli import main
from preceptor.db import open_database
from preceptor.project import Project


def _db(project):
    return project.root / "preceptor.db"


def test_database_from_a_newer_preceptor_is_refused_exit_2(project, capsys):
    with project.store.tx():
        project.store.execute("INSERT INTO schema_migrations (name, applied_at) VALUES ('m042_future', 'x')")
    project.close()
    assert main(["status", "--project", str(project.root)]) == 2
    err = capsys.readouterr().err
    assert "Error: Database from a newer preceptor" in err
    assert f"{_db(project)} was made by a newer preceptor (schema m042_future); upgrade preceptor" in err


def test_zero_byte_database_is_refused_not_recreated(project, capsys):
    project.close()
    db = _db(project)
    for suffix in ("-wal", "-shm"):
        (db.parent / (db.name + suffix)).unlink(missing_ok=True)
    db.write_bytes(b"")
    assert main(["status", "--project", str(project.root)]) == 2
    err = capsys.readouterr().err
    assert "Error: Damaged database" in err
    assert f"{db} is empty (0 bytes)" in err
    assert "preceptor backup" in err
    assert db.stat().st_size == 0  # left as it was: never silently re-created


def test_garbage_database_is_a_titled_error(project, capsys):
    project.close()
    db = _db(project)
    for suffix in ("-wal", "-shm"):
        (db.parent / (db.name + suffix)).unlink(missing_ok=True)
    db.write_bytes(b"not a database at all " * 300)
    with pytest.raises(Exception) as info:
        open_database(db)
    assert info.value.title == "Damaged database"
    assert str(db) in info.value.message and "preceptor backup" in info.value.hint


def test_corrupted_page_is_a_titled_error_never_a_traceback(project, capsys):
    store = project.store
    with store.tx():
        store.execute("CREATE TABLE filler (x TEXT)")
        store.conn.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,) for _ in range(400)])
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    project.close()
    db = _db(project)
    data = bytearray(db.read_bytes())
    page = 4096
    for n in range(1, len(data) // page):  # scribble over every page but the header page
        data[n * page + 10: n * page + 400] = b"\xff" * 390
    db.write_bytes(bytes(data))
    rc = main(["status", "--project", str(project.root)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Error: Damaged database" in err and "Traceback" not in err
    assert "preceptor backup" in err


def test_missing_database_in_a_project_is_still_created(project):
    project.close()
    db = _db(project)
    db.unlink()
    for suffix in ("-wal", "-shm"):
        (db.parent / (db.name + suffix)).unlink(missing_ok=True)
    p = Project.open(project.root)
    assert p.store.scalar("SELECT COUNT(*) FROM schema_migrations") > 0
    p.close()
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM prompts").fetchone()[0] == 0
