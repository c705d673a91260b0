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


# --- bulk writers: short transactions, atomic imports --------------------------------

def _write_prompts_csv(path, n, tag="Q"):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "reference", "group"])
        for i in range(n):
            w.writerow([f"{tag} {i}: does drug {i} interact with drug {i + 7}?", f"Drug {i} raises drug {i + 7}.", f"g{i // 3}"])


def _start_import(project, csv_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen([sys.executable, "-m", "preceptor", "import", str(csv_path), "--project", str(project.root)],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _staged(project):
    return project.store.scalar("SELECT COUNT(*) FROM prompts WHERE import_id IS NOT NULL")


def test_kill_9_mid_import_leaves_nothing_visible(project, tmp_path):
    import signal
    import time

    from preceptor.db import prompts as q_prompts

    _write_prompts_csv(tmp_path / "big.csv", 60_000)
    proc = _start_import(project, tmp_path / "big.csv")
    deadline = time.monotonic() + 60
    while _staged(project) < 6_000 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _staged(project) >= 6_000  # rows were written in short transactions...
    assert q_prompts.counts_by_split(project.store) == {}  # ...and none of them is visible
    assert q_prompts.select(project.store) == []
    assert q_prompts.search(project.store, "drug")[1] == 0
    reopened = Project.open(project.root)  # the killed import is dropped on the next open
    assert reopened.store.scalar("SELECT COUNT(*) FROM prompts") == 0
    assert reopened.store.scalar("SELECT COUNT(*) FROM imports") == 0
    reopened.close()


def test_a_failing_import_leaves_nothing_and_a_good_one_settles(project, tmp_path):
    from preceptor.db import prompts as q_prompts
    from preceptor.engine.events import run
    from preceptor.engine.ingest.prompts import import_prompts

    bad = tmp_path / "bad.csv"
    _write_prompts_csv(bad, 5_000)
    with bad.open("a", encoding="utf-8") as fh:
        fh.write(',"ref",g\n')  # an empty prompt on the last line, after two batches were written
    with pytest.raises(Exception) as info:
        run(import_prompts(project, bad))
    assert info.value.title == "Empty prompt"
    assert project.store.scalar("SELECT COUNT(*) FROM prompts") == 0
    assert project.store.scalar("SELECT COUNT(*) FROM imports") == 0
    good = tmp_path / "good.csv"
    _write_prompts_csv(good, 3_000)
    run(import_prompts(project, good))
    assert sum(q_prompts.counts_by_split(project.store)["good"].values()) == 3_000
    assert _staged(project) == 0 and project.store.scalar("SELECT COUNT(*) FROM imports") == 0


def _cli_vote(root):
    import io
    import json
    import time
    from contextlib import redirect_stdout

    t = time.perf_counter()
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["judge", "next", "--as", "Ann", "--json", "--project", root]) == 0
    pair = json.loads(buf.getvalue())
    with redirect_stdout(io.StringIO()):
        assert main(["judge", "record", "--as", "Ann", "--pair", str(pair["pair_id"]), "--verdict", "A", "--project", root]) == 0
    return time.perf_counter() - t


def test_cli_vote_during_a_large_import_succeeds_and_is_not_much_slower(project, tmp_path, capsys):
    import time

    from preceptor.engine.judging.experts import add_expert
    from tests.test_judge_support import make_all_pairs, seed_outputs

    seed_outputs(project, 40, splits=("val",))
    make_all_pairs(project)
    add_expert(project.store, "Ann")
    root = str(project.root)
    idle = sorted(_cli_vote(root) for _ in range(4))
    _write_prompts_csv(tmp_path / "big.csv", 80_000, tag="Import")
    proc = _start_import(project, tmp_path / "big.csv")
    try:
        deadline = time.monotonic() + 60
        while _staged(project) < 4_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = []
        while proc.poll() is None and len(busy) < 6:
            busy.append(_cli_vote(root))
        assert _staged(project) > 0 or proc.poll() is not None
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(busy) >= 3, "the import ended before the votes ran"
    assert "locked" not in capsys.readouterr().err
    assert max(busy) < max(idle) + 1.0, (idle, busy)
    assert project.store.scalar("SELECT COUNT(*) FROM judgments WHERE judge_id = 'Ann'") == 4 + len(busy)
