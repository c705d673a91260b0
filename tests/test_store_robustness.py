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


# --- liveness from heartbeats --------------------------------------------------------

def test_stopped_worker_shows_stalled_with_age_then_interrupted_once_gone(project):
    import os
    import signal
    import subprocess
    import sys
    import time

    from preceptor.db import runs as q_runs
    from preceptor.engine import views

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        run = q_runs.create(project.store, "sft", {})
        old = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 45))
        q_runs.update(project.store, run.id, status="running", pid=proc.pid, started_at=old, heartbeat_at=old)
        row = views.runs_overview(project)[0]
        assert row["status"] == "stalled"
        assert 44 <= row["heartbeat_age_s"] < 60
        assert row["note"].startswith("no heartbeat for 4") and "stopped or hung" in row["note"]
        fresh = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        q_runs.update(project.store, run.id, heartbeat_at=fresh)
        assert views.runs_overview(project)[0]["status"] == "running"
    finally:
        proc.kill()
        proc.wait()
    row = views.runs_overview(project)[0]
    assert row["status"] == "interrupted"
    assert q_runs.get(project.store, run.id).status == "interrupted"


def test_one_liveness_check_zombies_count_as_gone():
    import os
    import subprocess
    import sys
    import time

    from preceptor.processes import alive

    assert alive(os.getpid())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while alive(proc.pid) and time.monotonic() < deadline:  # exited, not reaped: a zombie
        time.sleep(0.02)
    assert not alive(proc.pid)
    proc.wait()
    assert not alive(proc.pid) and not alive(None)


# --- the vote path waits for another writer, never fails -----------------------------

HOLDER = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("COMMIT")
"""


def test_cli_vote_waits_for_a_held_write_lock_and_says_so(project, capsys):
    import json
    import subprocess
    import sys
    import time

    from tests.test_judge_support import make_all_pairs, seed_outputs

    seed_outputs(project, 6, splits=("val",))
    make_all_pairs(project)
    from preceptor.engine.judging.experts import add_expert

    add_expert(project.store, "Ann")
    root = str(project.root)
    assert main(["judge", "next", "--as", "Ann", "--json", "--project", root]) == 0
    pair = json.loads(capsys.readouterr().out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(_db(project)), "2.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t = time.perf_counter()
        rc = main(["judge", "record", "--as", "Ann", "--pair", str(pair["pair_id"]), "--verdict", "A", "--project", root])
        waited = time.perf_counter() - t
    finally:
        holder.wait(timeout=30)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "waiting for the database…" in err and "locked" not in err
    assert waited >= 2.0
    assert project.store.scalar("SELECT COUNT(*) FROM judgments WHERE judge_id = 'Ann'") == 1


def test_a_stuck_writer_past_the_deadline_is_a_titled_error(project, monkeypatch):
    import subprocess
    import sys

    from preceptor.engine.judging.experts import ExpertSession
    from tests.test_judge_support import make_all_pairs, seed_outputs

    seed_outputs(project, 4, splits=("val",))
    make_all_pairs(project)
    session = ExpertSession(project, "Bo", create=True)
    pair = session.next()
    project.store.write_deadline = 1.5
    seen: list[str] = []
    session.on_wait = seen.append
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(_db(project)), "5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception) as info:
            session.record(pair, "B")
    finally:
        holder.kill()
        holder.wait()
    assert info.value.title == "Database busy"
    assert "nothing was written" in info.value.message and "preceptor status" in info.value.hint
    assert seen == ["waiting for the database…"]
