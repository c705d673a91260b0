"""How fast the expert queue serves the next pair on a large project, against a plain query.

The TUI calls ``ExpertSession.next()`` after every vote. Here a project with many pairs (20,000
by default; ``PRECEPTOR_BENCH_PAIRS=200000`` for the full-size figure), 90 % of them already
judged by other experts, serves and records votes; the baseline is the straightforward query
(open = fewer current expert votes than needed, counted from ``judgments`` per pair, in queue
order) on the same database in the same run. Prints ``BENCH`` lines.
"""

from __future__ import annotations

import os
import statistics
import time

from preceptor.db.store import now
from preceptor.engine.judging.experts import ExpertSession, add_expert

N_PAIRS = int(os.environ.get("PRECEPTOR_BENCH_PAIRS", "20000"))
DONE_SHARE = 0.9

BASELINE = """
SELECT p.id FROM pairs p JOIN prompts pr ON pr.id = p.prompt_id
WHERE pr.bad_item IS NULL
  AND (SELECT COUNT(*) FROM judgments j WHERE j.pair_id = p.id AND j.judge_kind = 'expert' AND j.repeat = 0
       AND j.verdict IN ('win', 'tie', 'both_bad')
       AND NOT EXISTS (SELECT 1 FROM judgments s WHERE s.supersedes = j.id)) < p.needed
  AND NOT EXISTS (SELECT 1 FROM judgments j WHERE j.pair_id = p.id AND j.judge_kind = 'expert' AND j.judge_id = ?)
  AND NOT EXISTS (SELECT 1 FROM reservations r WHERE r.pair_id = p.id AND r.expert_id != ? AND r.until >= ?)
ORDER BY p.priority DESC, p.queue_key LIMIT 1
"""


def _build(project, n_pairs: int) -> None:
    """n_pairs prompts with two outputs each and one pair each, 90 % judged by another expert."""
    conn = project.store.conn
    ts = now()
    with project.store.tx():
        conn.execute("INSERT INTO collections (name, kind, source, created_at) VALUES ('bench', 'prompts', 'bench', ?)", (ts,))
        conn.executemany("INSERT INTO systems (id, name, role, backend, imported, created_at) VALUES (?, ?, 'custom', 'imported', 1, ?)",
                         [(1, "s1", ts), (2, "s2", ts)])
        conn.executemany("INSERT INTO prompts (id, text, text_hash, split, group_key, collection, created_at) VALUES (?, ?, ?, ?, ?, 'bench', ?)",
                         ((i, f"Question {i}?", f"h{i}", ("train", "val", "test")[i % 3], f"g{i}", ts) for i in range(1, n_pairs + 1)))
        conn.executemany("INSERT INTO outputs (id, prompt_id, system_id, text, created_at) VALUES (?, ?, ?, ?, ?)",
                         ((2 * i - 1 + s, i, s + 1, f"answer {s} to {i}", ts) for i in range(1, n_pairs + 1) for s in (0, 1)))
        done = int(n_pairs * DONE_SHARE)
        conn.executemany(
            "INSERT INTO pairs (id, prompt_id, output_a, output_b, split, system_a, system_b, needed, expert_votes, queue_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, 1, 2, 1, ?, ?, ?)",
            ((i, i, 2 * i - 1, 2 * i, ("train", "val", "test")[i % 3], int(i <= done), (i * 2654435761) % 2**32, ts)
             for i in range(1, n_pairs + 1)))
        conn.executemany(
            "INSERT INTO judgments (pair_id, judge_kind, judge_id, left_output_id, winner_output_id, verdict, created_at)"
            " VALUES (?, 'expert', 'Other', ?, ?, 'win', ?)", ((i, 2 * i - 1, 2 * i - 1, ts) for i in range(1, done + 1)))
        # the pairs judged first come first in queue order: the walk has to skip them
        conn.execute("UPDATE pairs SET queue_key = id")
    conn.execute("ANALYZE")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def test_next_pair_is_fast_on_a_large_project(project):
    project.update_settings({"judge": {"repeat_share": 0.0, "overlap_share": 0.0}})
    t0 = time.perf_counter()
    _build(project, N_PAIRS)
    build_s = time.perf_counter() - t0
    add_expert(project.store, "Ada")
    session = ExpertSession(project, "Ada")
    engine, baseline = [], []
    for i in range(60):
        t = time.perf_counter()
        pair = session.next()
        engine.append((time.perf_counter() - t) * 1000)
        assert pair is not None and pair.pair_id > N_PAIRS * DONE_SHARE
        session.record(pair, "AB"[i % 2])
        if i < 15:  # the baseline is slow: fewer samples
            t = time.perf_counter()
            row = project.store.one(BASELINE, ("Ada", session.expert.id, time.time()))
            baseline.append((time.perf_counter() - t) * 1000)
            assert row is not None
    e50, e95 = statistics.median(engine), _pct(engine, 0.95)
    b50 = statistics.median(baseline)
    print(f"\nBENCH judge_next_pairs {N_PAIRS} pairs (90% judged; build {build_s:.1f} s; torch not used, threads n/a)")
    print(f"BENCH judge_next_p50 {e50:.2f} ms")
    print(f"BENCH judge_next_p95 {e95:.2f} ms")
    print(f"BENCH judge_next_baseline_p50 {b50:.2f} ms")
    print(f"BENCH judge_next_speedup {b50 / e50:.1f} x")
    assert e95 < 100.0
    assert e50 < b50
