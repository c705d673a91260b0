"""The store: migrations, pragmas, transactions, backup, shared folders, settings."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from preceptor.db import migrations, open_database
from preceptor.db import prompts as q_prompts
from preceptor.db import runs as q_runs
from preceptor.db.store import BUSY_TIMEOUT_MS, Store
from preceptor.errors import PreceptorError
from preceptor.project import Project


def test_pragmas(project):
    store = project.store
    assert store.scalar("PRAGMA journal_mode") == "wal"
    assert store.scalar("PRAGMA foreign_keys") == 1
    assert store.scalar("PRAGMA busy_timeout") == BUSY_TIMEOUT_MS
    assert store.schema_version == migrations.head()


def test_database_from_v1_migrates_to_head_with_data_intact(tmp_path):
    path = tmp_path / "old.db"
    old = Store(path)
    assert migrations.migrate(old, target=1) == ["m001_initial"]
    with old.tx():
        old.execute("INSERT INTO collections (name, kind, created_at) VALUES ('c', 'prompts', 'now')")
        old.execute(
            "INSERT INTO prompts (text, text_hash, split, group_key, collection, created_at) VALUES ('hello', 'h', 'train', 'g', 'c', 'now')")
    assert old.schema_version == 1
    assert old.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'judgments'") == 0
    old.close()
    new = open_database(path)  # opening brings it to head
    assert new.schema_version == migrations.head()
    assert new.scalar("SELECT text FROM prompts") == "hello"
    assert new.scalar("SELECT COUNT(*) FROM judgments") == 0
    names = [r[0] for r in new.all("SELECT name FROM schema_migrations ORDER BY rowid")]
    assert names == [m.__name__ for m in migrations.MIGRATIONS]
    new.close()


def test_a_failing_migration_leaves_no_trace(tmp_path, monkeypatch):
    path = tmp_path / "x.db"
    open_database(path).close()

    def m999_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, m999_broken])
    with pytest.raises(RuntimeError):
        open_database(path)
    monkeypatch.undo()
    s = open_database(path)
    assert s.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'") == 0
    assert s.scalar("SELECT COUNT(*) FROM schema_migrations WHERE name = 'm999_broken'") == 0
    s.close()


def test_tx_rolls_back_on_error_and_nests(project):
    store = project.store
    with pytest.raises(ValueError):
        with store.tx():
            q_prompts.ensure_collection(store, "a")
            with store.tx():
                q_prompts.ensure_collection(store, "b")
            raise ValueError
    assert store.scalar("SELECT COUNT(*) FROM collections") == 0


def test_backup_is_consistent_copy(project, tmp_path):
    with project.store.tx():
        q_prompts.ensure_collection(project.store, "demo")
    out = tmp_path / "backup" / "copy.db"
    project.store.backup(out)
    copy = sqlite3.connect(out)
    assert copy.execute("SELECT name FROM collections").fetchall() == [("demo",)]
    copy.close()
    with pytest.raises(PreceptorError, match="already exists"):
        project.store.backup(out)


def test_backup_cli(project, tmp_path, capsys):
    from preceptor.cli import main

    out = tmp_path / "b.db"
    assert main(["backup", str(out), "--project", str(project.root)]) == 0
    assert out.exists()


def test_group_writable_when_folder_is(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)
    p = Project.init(shared)
    with p.store.tx():
        q_prompts.ensure_collection(p.store, "x")
    for suffix in ("", "-wal", "-shm"):
        f = shared / ("preceptor.db" + suffix)
        assert f.exists()
        assert f.stat().st_mode & stat.S_IWGRP, suffix
    p.close()


def test_open_requires_a_project(tmp_path):
    with pytest.raises(PreceptorError) as info:
        Project.open(tmp_path)
    assert info.value.title == "Not a preceptor project"
    assert "preceptor init" in info.value.hint


def test_dead_running_run_is_marked_interrupted_on_open(project):
    run = q_runs.create(project.store, "sft", {"x": 1})
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    q_runs.update(project.store, run.id, status="running", pid=proc.pid)
    reopened = Project.open(project.root)
    got = q_runs.get(reopened.store, run.id)
    assert got.status == "interrupted" and got.ended_at
    reopened.close()


def test_live_running_run_is_left_alone(project):
    run = q_runs.create(project.store, "sft", {})
    q_runs.update(project.store, run.id, status="running", pid=os.getpid())
    reopened = Project.open(project.root)
    assert q_runs.get(reopened.store, run.id).status == "running"
    reopened.close()


def test_settings_errors_name_file_and_field(project):
    from dataclasses import dataclass

    from preceptor import config
    from preceptor.config import setting

    @dataclass
    class S:
        lr: float = setting(1e-4, "learning rate")
        steps: int = setting(10, "steps")

    project.config_path.write_text('[train]\nlr = "fast"\n')
    project.reload()
    with pytest.raises(PreceptorError) as info:
        project.section("train", S)
    assert info.value.message == f"{project.config_path}: [train].lr must be a number, got 'fast'"
    project.config_path.write_text('[train]\nsteps = 5\nlearnin_rate = 1\n')
    project.reload()
    with pytest.raises(PreceptorError) as info:
        project.section("train", S)
    assert "unknown key 'learnin_rate'" in info.value.message and "lr, steps" in info.value.hint
    s = config.override(S(), lr="0.5", steps=None)
    assert (s.lr, s.steps) == (0.5, 10)
    project.config_path.write_text('[train\n')
    with pytest.raises(PreceptorError, match="Invalid settings file"):
        Project.open(project.root)


def test_update_settings_round_trips(project):
    project.update_settings({"systems": {"teacher": {"role": "teacher", "params": {"temperature": 0.0}}}, "judge": {"model": "m"}})
    project.update_settings({"judge": {"backend": "litellm"}})
    assert project.table("systems.teacher") == {"role": "teacher", "params": {"temperature": 0.0}}
    assert project.table("judge") == {"model": "m", "backend": "litellm"}
    assert project.settings.name == "proj"


def test_m007_hides_collections_from_default_selections(tmp_path):
    from preceptor.db import migrations
    from preceptor.db import prompts as q_prompts
    from preceptor.db.store import Store

    store = Store(tmp_path / "old.db")
    migrations.migrate(store, target=4)
    with store.tx():
        store.conn.execute("INSERT INTO collections (name, created_at) VALUES ('mine', '2026-01-01T00:00:00Z')")
    assert "m007_language_and_splits" in migrations.migrate(store)
    with store.tx():
        q_prompts.ensure_collection(store, "demo-queries", hidden=True)
        q_prompts.insert_many(store, [("q1", "h1", None, "val", None, "g1", "mine", None, None, "t"),
                                      ("q2", "h2", None, "val", None, "g2", "demo-queries", None, None, "t")])
    assert [p.text for p in q_prompts.select(store)] == ["q1"]  # the old collection is visible, the hidden one not
    assert [p.text for p in q_prompts.select(store, q_prompts.PromptFilter(collections=["demo-queries"]))] == ["q2"]
    store.close()
