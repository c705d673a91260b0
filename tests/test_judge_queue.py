"""The active judging queue: its rules on small synthetic leagues, in the session and the CLI."""

from __future__ import annotations

import json

import pytest

from preceptor.db import judging as q
from preceptor.db import outputs as q_outputs
from preceptor.db import systems as q_systems
from preceptor.engine.judging import queue
from preceptor.engine.judging.experts import ExpertSession, add_expert
from preceptor.engine.judging.settings import JudgeSettings
from tests.test_judge_support import make_all_pairs, seed_outputs

A, B, C, D = 1, 2, 3, 4


def test_choice_prefers_an_unresolved_matchup_to_a_settled_one():
    # A beats B 45-5 (settled); C and D split 6-5 (unresolved); B-C close
    league = queue.fit_league({(A, B): 45, (B, A): 5, (C, D): 6, (D, C): 5, (B, C): 6, (C, B): 4})
    assert league.order()[0] == A
    assert abs(league.z(A, B)) > queue.Z95 > abs(league.z(C, D))
    cands = [queue.Candidate(10, A, B, key=0.1), queue.Candidate(11, C, D, key=0.9)]
    choice = queue.choose(cands, league, "active")
    assert choice.candidate.pair_id == 11
    # the other orders ignore the league
    assert queue.choose(cands, league, "random").candidate.pair_id == 10
    assert queue.choose([queue.Candidate(12, A, B, key=0.0), *cands], league, "sequential").candidate.pair_id == 10
    why = queue.explain(choice, league, {A: "a", B: "b", C: "c", D: "d"})
    assert why["matchup"] == ["c", "d"] and "unresolved at 95%" in why["why"]
    assert why["alternatives"][0]["pair_id"] == 10


def test_pair_signals_raise_a_pair_within_its_matchup():
    league = queue.fit_league({(A, B): 3, (B, A): 3})
    plain, contested = queue.Candidate(1, A, B, 0.0, key=0.1), queue.Candidate(2, A, B, 1.0, key=0.9)
    assert queue.choose([plain, contested], league).candidate.pair_id == 2
    assert queue.pair_priority({"verdict": "inconsistent"}, None, contested_threshold=0.6) == (1.0, ["llm inconsistent under swap"])
    assert queue.pair_priority({"verdict": "win", "winner_output_id": 5, "confidence": 0.9},
                               {"verdict": "win", "winner_output_id": 6}, contested_threshold=0.6)[1] == [
        "llm and metric judge disagree", "would be a DPO pair without a human verdict"]
    assert queue.pair_priority({"verdict": "win", "winner_output_id": 5, "confidence": 0.9}, None,
                               contested_threshold=0.6) == (queue.LLM_SETTLED, ["llm settled"])


def test_stopping_signal_settled_unsettled_and_practically_tied():
    settled = queue.stopping(queue.fit_league({(A, B): 80, (B, A): 20, (B, C): 80, (C, B): 20}), {A: "a", B: "b", C: "c"})
    assert settled["settled"] and settled["votes_needed"] == 0
    assert settled["summary"] == "settled: every adjacent pair of systems is separated at 95%"
    open_ = queue.stopping(queue.fit_league({(A, B): 14, (B, A): 6}))
    assert not open_["settled"] and 0 < open_["votes_needed"] < 200
    assert open_["summary"].startswith(f"not settled: about {open_['votes_needed']} more votes needed")
    tied = queue.stopping(queue.fit_league({(A, B): 100, (B, A): 99}))
    assert tied["practically_tied"] and not tied["settled"]


def _three_systems(project, n=30, settings=None):
    if settings:
        project.update_settings({"judge": settings})
    seeded = seed_outputs(project, n, splits=("val",))
    gamma = q_systems.upsert(project.store, "gamma", role="custom", backend="imported", imported=True)
    q_outputs.record_many(project.store, [dict(prompt_id=p, system_id=gamma.id, text=f"Answer z{k}: gamma.")
                                          for k, p in enumerate(seeded["prompt_ids"])])
    for pair in (("alpha", "beta"), ("alpha", "gamma"), ("beta", "gamma")):
        make_all_pairs(project, pair)
    return {s.name: s.id for s in (*seeded["systems"], gamma)}


def _vote(project, pair_id, winner_system, judge="Panel"):
    row = q.get_pair(project.store, pair_id)
    sys_of = {row["output_a"]: row["system_a"], row["output_b"]: row["system_b"]}
    winner = next(o for o, s in sys_of.items() if s == winner_system)
    with project.store.tx():
        q.insert_judgment(project.store, pair_id=pair_id, judge_kind="expert", judge_id=judge, left_output_id=row["output_a"],
                          winner_output_id=winner, verdict="win")
        q.recount_expert_votes(project.store, pair_id)


def test_session_serves_the_unresolved_matchup_first(project):
    ids = _three_systems(project)
    add_expert(project.store, "Alice")
    ab = [r[0] for r in project.store.all("SELECT id FROM pairs WHERE system_a + system_b = ?", (ids["alpha"] + ids["beta"],))]
    bg = [r[0] for r in project.store.all("SELECT id FROM pairs WHERE system_a + system_b = ?", (ids["beta"] + ids["gamma"],))]
    for pid in ab[:20]:  # alpha beats beta 20-0: settled
        _vote(project, pid, ids["alpha"])
    for k, pid in enumerate(bg[:3]):  # beta vs gamma 2-1: open
        _vote(project, pid, ids["beta"] if k < 2 else ids["gamma"])
    s = ExpertSession(project, "Alice")
    served = s.next()
    row = q.get_pair(project.store, served.pair_id)
    assert {row["system_a"], row["system_b"]} != {ids["alpha"], ids["beta"]}
    why = s.queue.explain(project.store, s.query)
    assert why["order"] == "active" and "gamma" in why["matchup"]
    assert why["stopping"]["settled"] is False


def test_two_experts_never_hold_the_same_pair_and_overlap_is_honoured(project):
    _three_systems(project, 12, settings={"overlap_share": 1.0, "overlap_k": 2, "repeat_share": 0.0})
    for e in ("Alice", "Bob"):
        add_expert(project.store, e)
    alice, bob = ExpertSession(project, "Alice"), ExpertSession(project, "Bob")
    active = [alice, bob]
    while active:
        for s in list(active):
            pair = s.next()
            if pair is None:
                active.remove(s)
                continue
            pre = s.preload()
            held = project.store.all("SELECT pair_id, expert_id FROM reservations")
            by_pair: dict[int, set[int]] = {}
            for r in held:
                by_pair.setdefault(r[0], set()).add(r[1])
            assert all(len(v) == 1 for v in by_pair.values()), held  # nobody shares a reservation
            assert pre is None or pre.pair_id != pair.pair_id
            s.record(pair, "tie")
    rows = project.store.all("SELECT needed, expert_votes FROM pairs")
    assert rows and all(r[0] == r[1] == 2 for r in rows)


def test_repeats_still_come_back_under_the_active_queue(project):
    _three_systems(project, 10, settings={"repeat_share": 0.5, "repeat_gap": 2, "overlap_share": 0.0})
    add_expert(project.store, "Alice")
    s = ExpertSession(project, "Alice")
    repeats = firsts = 0
    while (pair := s.next()) is not None:
        repeats += pair.repeat
        firsts += not pair.repeat
        s.record(pair, "A")
    assert firsts == 30 and 5 <= repeats <= 25
    assert q.pending_repeats(project.store, s.expert.id) == 0


def test_orders_llm_first_and_the_folded_setting(project):
    _three_systems(project, 6)
    add_expert(project.store, "Alice")
    s = ExpertSession(project, "Alice")
    s.queue = queue.ExpertQueue(s.settings, "sequential")
    first = s.next()
    assert first.pair_id == project.store.scalar("SELECT MIN(id) FROM pairs")
    # llm_first: a pair the LLM judge settled is left to it (unless drawn for an audit)
    project.update_settings({"judge": {"llm_first": True, "audit_share": 0.0}})
    s2 = ExpertSession(project, "Alice")
    s.release()
    all_ids = [r[0] for r in project.store.all("SELECT id FROM pairs ORDER BY id")]
    q.set_priorities(project.store, [(i, queue.LLM_SETTLED) for i in all_ids if i != all_ids[3]])
    got = s2.next()
    assert got.pair_id == all_ids[3]
    s2.record(got, "A")
    assert s2.next() is None
    assert JudgeSettings(contested_first=False).queue == "random"
    with pytest.raises(ValueError, match="order 'fast' is not one of active, random, sequential"):
        queue.ExpertQueue(JudgeSettings(), "fast")


def test_cli_judge_next_order_and_why(project):
    from click.testing import CliRunner

    from preceptor.cli import cli as main

    _three_systems(project, 4)
    add_expert(project.store, "Alice")
    res = CliRunner().invoke(main, ["judge", "next", "--as", "Alice", "--order", "sequential", "--why", "--json",
                                    "--project", str(project.root)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["pair_id"] == project.store.scalar("SELECT MIN(id) FROM pairs")
    assert out["why"]["order"] == "sequential" and out["why"]["why"] == "sequential order: the open pair with the lowest id"
    res = CliRunner().invoke(main, ["judge", "next", "--as", "Alice", "--why", "--project", str(project.root)])
    assert res.exit_code == 0, res.output
    assert "Why this pair (active order):" in res.output and "League: " in res.output


def test_stats_carry_the_stopping_signal_and_the_llm_audit(project):
    from click.testing import CliRunner

    from preceptor.cli import cli
    from preceptor.engine.results.stats import StatsOptions, compute

    ids = _three_systems(project, 30)
    rows = project.store.all("SELECT id, system_a, system_b, output_a, output_b FROM pairs ORDER BY id")
    strength = {ids["alpha"]: 3, ids["beta"]: 2, ids["gamma"]: 1}
    for r in rows:  # a clear order: alpha > beta > gamma, every time
        winner = max((r["system_a"], r["system_b"]), key=strength.get)
        _vote(project, r["id"], winner)
        loser_out = r["output_b"] if winner == r["system_a"] else r["output_a"]
        with project.store.tx():  # an LLM judge that always picks the loser
            q.insert_judgment(project.store, pair_id=r["id"], judge_kind="llm", judge_id="tiny", left_output_id=r["output_a"],
                              winner_output_id=loser_out, verdict="win", confidence=0.9)
    res = compute(project, StatsOptions(split="all", n_boot=50))
    stop = res["stopping"]
    assert stop["settled"] is True and [r["higher"] for r in stop["adjacent"]] == ["alpha", "beta"]
    audit = res["llm_audit"][0]
    assert audit["judge"] == "tiny" and audit["n"] == 90 and audit["agrees_with_humans"]["value"] == 0.0
    assert audit["floor_chance"] == 0.5 and audit["floor_first_shown_wins"]["n"] == 90
    out = CliRunner().invoke(cli, ["stats", "--split", "all", "--project", str(project.root)])
    assert out.exit_code == 0, out.output
    assert "Stopping signal (human votes): settled: every adjacent pair of systems is separated at 95%." in out.output
    assert "LLM judge against the humans' majority, beside its floors" in out.output


def test_active_judging_bench_runs_small():
    import os
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "bench" / "active_judging.py"
    proc = subprocess.run([sys.executable, str(bench), "--seeds", "1"], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    assert [ln.split()[1] for ln in lines] == ["votes_to_settle_random", "votes_to_settle_active", "active_vs_random_votes"]
    assert lines[-1].endswith(" x")
