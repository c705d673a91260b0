"""Every bulk import is staged: short transactions under an import id, nothing visible until
one quick statement publishes it, nothing left behind by a failure, a cancel or a kill -9.

Prompt imports are covered in test_store_robustness.py; here the judgments import
(``import-judgments``) and the embedding pair import (``import-pairs``).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from preceptor.db import embed as q_embed
from preceptor.db import judging as q
from preceptor.db import prompts as q_prompts
from preceptor.engine.events import Progress, run
from preceptor.project import Project

ROOT = Path(__file__).resolve().parents[1]


def _judgments_csv(path: Path, n: int, bad_last: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "answer_a", "answer_b", "winner", "judge"])
        for i in range(n):
            w.writerow([f"Q{i}: does drug {i} interact with drug {i + 3}?", f"Yes, drug {i} raises drug {i + 3}.",
                        f"No interaction is known for drug {i}.", "1" if i % 3 else "2", f"rater{i % 4}"])
        if bad_last:
            w.writerow(["last question", "a", "b", "maybe", "rater0"])
    return path


def _pairs_csv(path: Path, n: int, bad_last: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["anchor", "positive", "group"])
        for i in range(n):
            w.writerow([f"what does drug {i} treat", f"Drug {i} treats condition {i % 97} by acting on target {i}.", f"g{i // 2}"])
        if bad_last:
            w.writerow(["an anchor without a positive", "", "gx"])
    return path


def _cli(project: Project, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "preceptor", *args, "--project", str(project.root)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(project: Project, sql: str) -> int:
    return int(project.store.scalar(sql) or 0)


def _wait_for(project: Project, proc: subprocess.Popen, sql: str, at_least: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while _count(project, sql) < at_least and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)


def _judgments_visible(project: Project) -> dict[str, int]:
    from preceptor.db.exports import superseded_ids

    store = project.store
    hidden = superseded_ids(store)
    current = [r[0] for r in store.all("SELECT id FROM judgments")]
    return {
        "collections": _count(project, "SELECT COUNT(*) FROM collections WHERE name = 'big'"),
        "prompts": len(q_prompts.select(store, q_prompts.PromptFilter(collections=("big",)))),
        "pairs": q.count_pairs(store, q.PairQuery(collections=("big",))),
        "judgments": sum(1 for j in current if j not in hidden),
        "verdicts": sum(n for kinds in q.verdict_counts(store).values() for n in kinds.values()),
        "by_kind": sum(q.judgment_counts_by_kind(store).values()),
    }


def _all_rows(project: Project) -> dict[str, int]:
    return {t: _count(project, f"SELECT COUNT(*) FROM {t}")
            for t in ("prompts", "outputs", "pairs", "judgments", "imports", "collections", "systems")}


def test_kill_9_mid_judgments_import_leaves_nothing_visible_and_is_dropped(project, tmp_path):
    before = _all_rows(project)
    proc = _cli(project, "import-judgments", str(_judgments_csv(tmp_path / "big.csv", 30_000)), "--format", "generic")
    _wait_for(project, proc, "SELECT COUNT(*) FROM judgments WHERE import_id IS NOT NULL", 600)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    staged = _count(project, "SELECT COUNT(*) FROM judgments WHERE import_id IS NOT NULL")
    assert staged >= 600, "votes were written in short transactions before the kill"
    seen = _judgments_visible(project)
    assert seen == {k: 0 for k in seen}, seen  # ...and none of it is visible
    status = _cli(project, "stats", "--split", "all", "--json")
    out, err = status.communicate(timeout=120)
    assert "big" not in out, "the staged votes reached stats"
    reopened = Project.open(project.root)  # the killed import is dropped on the next open
    try:
        q_prompts.drop_stale_imports(reopened.store)
        assert _all_rows(reopened) == before
    finally:
        reopened.close()


def test_a_cancelled_judgments_import_leaves_nothing_and_a_whole_one_settles(project, tmp_path):
    from preceptor.engine.judging.imported import ImportJudgmentsOptions, import_judgments

    before = _all_rows(project)
    path = _judgments_csv(tmp_path / "big.csv", 1_500)
    cancel = threading.Event()
    seen_progress = 0
    with pytest.raises(Exception) as info:
        for ev in import_judgments(project, path, ImportJudgmentsOptions(format="generic"), cancel):
            if isinstance(ev, Progress) and ev.done:
                seen_progress += 1
                if seen_progress == 3:  # three batches were written
                    assert _count(project, "SELECT COUNT(*) FROM judgments") >= 200
                    cancel.set()
    assert "ancel" in type(info.value).__name__ or "ancel" in str(info.value)
    assert _all_rows(project) == before

    summary = run(import_judgments(project, path, ImportJudgmentsOptions(format="generic")))
    assert summary["votes"] == 1_500 and summary["pairs"] == 1_500 and summary["prompts"] == 1_500
    for table in ("prompts", "outputs", "pairs", "judgments"):
        assert _count(project, f"SELECT COUNT(*) FROM {table} WHERE import_id IS NOT NULL") == 0, table
    assert _count(project, "SELECT COUNT(*) FROM imports") == 0
    assert _count(project, "SELECT COUNT(*) FROM collections WHERE name = 'big' AND kind = 'judgments'") == 1
    from preceptor.db.exports import superseded_ids

    assert not superseded_ids(project.store)
    # a second import of the same file adds nothing
    again = run(import_judgments(project, path, ImportJudgmentsOptions(format="generic")))
    assert again["votes"] == 0 and again["existing_votes"] == 1_500


def test_a_vote_commits_while_a_judgments_import_runs(project, tmp_path):
    """No import transaction holds the write lock for long, and the import gives way to a waiting
    writer before each batch: another process's write always gets in quickly."""
    from preceptor.db.store import Store

    proc = _cli(project, "import-judgments", str(_judgments_csv(tmp_path / "big.csv", 6_000)), "--format", "generic")
    _wait_for(project, proc, "SELECT COUNT(*) FROM judgments WHERE import_id IS NOT NULL", 100)
    other = Store(project.root / "preceptor.db")
    waits = []
    try:
        while proc.poll() is None and len(waits) < 200:
            t = time.perf_counter()
            with other.tx():
                waits.append(time.perf_counter() - t)
                other.execute("UPDATE schema_migrations SET applied_at = applied_at WHERE 0")
            time.sleep(0.01)
    finally:
        other.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert len(waits) >= 5, "the import ended before the writer could measure anything"
    assert max(waits) < 0.5, f"a writer waited {max(waits):.2f}s for the lock"


def test_bulk_writer_gives_way_to_a_waiting_writer(tmp_path):
    """SQLite's lock is not fair: a writer committing batch after batch starves one that waits on
    the busy handler. Inside ``Store.bulk`` the batches pause while a writer waits."""
    from preceptor.db.store import Store

    db = tmp_path / "t.db"
    setup = Store(db)
    with setup.tx():
        setup.execute("CREATE TABLE t (x INTEGER)")
    setup.close()
    code = (
        "import sys, time\n"
        "from preceptor.db.store import Store\n"
        f"s = Store({str(db)!r})\n"
        "end = time.monotonic() + 4\n"
        "print('go', flush=True)\n"
        "with s.bulk():\n"
        "    while time.monotonic() < end:\n"
        "        with s.tx():\n"
        "            t = time.monotonic()\n"
        "            while time.monotonic() - t < 0.02:\n"
        "                s.execute('INSERT INTO t VALUES (1)')\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "go"
    time.sleep(0.3)
    me = Store(db)
    waits = []
    try:
        for _ in range(20):
            t = time.perf_counter()
            with me.tx():
                waits.append(time.perf_counter() - t)
                me.execute("INSERT INTO t VALUES (2)")
            time.sleep(0.05)
    finally:
        me.close()
    writer.wait(timeout=30)
    # each wait is at most about one 20 ms batch (plus scheduling), never SQLite's 100 ms back-off rounds
    assert sorted(waits)[len(waits) // 2] < 0.05, waits
    assert max(waits) < 0.3, waits
    assert not list((tmp_path / "t.db-waiting").iterdir())  # markers are removed once the lock is taken


def test_a_command_line_import_lowers_its_own_cpu_priority():
    code = "import os; from preceptor.processes import yield_cpu; before = os.nice(0); print(before, yield_cpu())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout.split()
    before, after = int(out[0]), int(out[1])
    assert after == min(19, before + 5)


def test_kill_9_mid_pair_import_leaves_no_stage_pairs_docs_or_queries(project, tmp_path):
    proc = _cli(project, "import-pairs", str(_pairs_csv(tmp_path / "pairs.csv", 120_000)), "--stage", "big", "--queries")
    _wait_for(project, proc, "SELECT COUNT(*) FROM embed_pairs WHERE import_id IS NOT NULL", 4_000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:  # pragma: no cover - the import finished first
        pytest.fail(f"import ended before the kill: {proc.returncode} {proc.stderr.read() if proc.stderr else ''}")
    assert _count(project, "SELECT COUNT(*) FROM embed_pairs WHERE import_id IS NOT NULL") >= 4_000
    assert q_embed.pairs(project.store, "big") == []
    assert q_embed.stage_counts(project.store).get("big", {}) == {}
    assert q_embed.corpus_docs(project.store, "big") == []
    reopened = Project.open(project.root)
    try:
        q_prompts.drop_stale_imports(reopened.store)
        for table in ("embed_pairs", "corpus_docs", "imports", "embed_stages", "corpora"):
            assert _count(reopened, f"SELECT COUNT(*) FROM {table}") == 0, table
        assert _count(reopened, "SELECT COUNT(*) FROM prompts") == 0
    finally:
        reopened.close()


def test_a_failing_pair_import_leaves_nothing_and_a_whole_one_publishes(project, tmp_path):
    from preceptor.engine.embed.data import PairImportOptions, import_pairs

    bad = _pairs_csv(tmp_path / "bad.csv", 3_000, bad_last=True)
    with pytest.raises(Exception) as info:
        run(import_pairs(project, bad, PairImportOptions(stage="s1", queries=True)))
    assert getattr(info.value, "title", "") == "Empty field"
    for table in ("embed_pairs", "corpus_docs", "imports", "embed_stages", "corpora", "prompts", "collections"):
        assert _count(project, f"SELECT COUNT(*) FROM {table}") == 0, table

    good = _pairs_csv(tmp_path / "good.csv", 3_000)
    summary = run(import_pairs(project, good, PairImportOptions(stage="s1", queries=True)))
    assert summary["imported"] == 3_000
    assert sum(q_embed.stage_counts(project.store)["s1"].values()) == 3_000
    assert summary["corpus_docs"] == len(q_embed.corpus_docs(project.store, "s1")) == 3_000
    assert summary["queries_published"] > 0
    for table in ("embed_pairs", "corpus_docs", "prompts"):
        assert _count(project, f"SELECT COUNT(*) FROM {table} WHERE import_id IS NOT NULL") == 0, table
    assert _count(project, "SELECT COUNT(*) FROM imports") == 0
