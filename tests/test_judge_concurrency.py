"""Several experts judging one project at once, each in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from preceptor.engine.judging.experts import add_expert
from tests.test_judge_support import make_all_pairs, seed_outputs

ROOT = Path(__file__).resolve().parents[1]
WORKER = textwrap.dedent("""
    import json, os, sys, time
    from preceptor.project import Project
    from preceptor.engine.judging.experts import ExpertSession
    root, expert, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    p = Project.open(root)
    s = ExpertSession(p, expert)
    while not os.path.exists(go):
        time.sleep(0.005)
    ids, lat = [], []
    for i in range(n):
        t = time.perf_counter()
        pair = s.next()
        if pair is None:
            break
        ids.append(s.record(pair, ("A", "B", "tie", "both_bad")[i % 4]))
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    print(json.dumps({"ids": ids, "p50": lat[len(lat) // 2], "p95": lat[int(len(lat) * 0.95)]}))
""")


def test_four_processes_two_hundred_votes_each(project, tmp_path):
    import json

    seed_outputs(project, 1000, splits=("val",))
    make_all_pairs(project)
    experts = [f"Expert {i}" for i in range(4)]
    for e in experts:
        add_expert(project.store, e)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(project.root), e, "200", str(go)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for e in experts]
    time.sleep(0.5)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert "locked" not in err
        results.append(json.loads(out))
    store = project.store
    ids = [i for r in results for i in r["ids"]]
    assert len(ids) == 800 and len(set(ids)) == 800
    assert store.scalar("SELECT COUNT(*) FROM judgments") == 800
    # never one expert voting twice on a pair, never more experts on a pair than it needs
    dup = store.scalar("""SELECT COUNT(*) FROM (SELECT pair_id, judge_id FROM judgments WHERE repeat = 0
                          GROUP BY pair_id, judge_id HAVING COUNT(*) > 1)""")
    assert dup == 0
    over = store.scalar("""SELECT COUNT(*) FROM pairs p WHERE
                           (SELECT COUNT(*) FROM judgments j WHERE j.pair_id = p.id AND j.repeat = 0) > p.needed""")
    assert over == 0
    counted = store.scalar("SELECT SUM(expert_votes) FROM pairs")
    assert counted == store.scalar("SELECT COUNT(*) FROM judgments WHERE repeat = 0")
    assert store.scalar("SELECT COUNT(*) FROM reservations") == 0


def test_same_expert_in_four_processes_never_gets_a_pair_twice(project, tmp_path):
    import json

    seed_outputs(project, 400, splits=("val",))
    make_all_pairs(project)
    add_expert(project.store, "Solo")
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(project.root), "Solo", "60", str(go)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(0.5)
    go.touch()
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        ids += json.loads(out)["ids"]
    assert len(ids) == 240
    store = project.store
    twice = store.scalar("""SELECT COUNT(*) FROM (SELECT pair_id FROM judgments WHERE judge_id = 'Solo' AND repeat = 0
                            GROUP BY pair_id HAVING COUNT(*) > 1)""")
    assert twice == 0
    assert store.scalar("SELECT COUNT(*) FROM judgments WHERE supersedes IS NOT NULL") == 0
    assert store.scalar("SELECT COUNT(*) FROM reservations") == 0
