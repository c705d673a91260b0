"""Expert judging: sides, A/B mapping, overlap, repeats, reservations, undo/change, bad items."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from preceptor.db import judging as q
from preceptor.engine.judging.experts import ExpertSession, add_expert, list_experts
from preceptor.engine.judging.pairs import PairFilter
from preceptor.engine.judging.settings import JudgeSettings
from preceptor.errors import PreceptorError
from tests.test_judge_support import make_all_pairs, seed_outputs

ROOT = Path(__file__).resolve().parents[1]


def _setup(project, n=40, settings=None, experts=("Alice",), **kw):
    if settings:
        project.update_settings({"judge": settings})
    seed_outputs(project, n, **kw)
    make_all_pairs(project)
    for e in experts:
        add_expert(project.store, e)


def _pair_row(project, pair_id):
    return project.store.one("SELECT * FROM pairs WHERE id = ?", (pair_id,))


def test_expert_names_are_case_insensitive(project):
    a = add_expert(project.store, "Alice  Smith")
    b = add_expert(project.store, "alice smith")
    add_expert(project.store, "Bob")
    assert a == b
    assert [e.name for e in list_experts(project.store)] == ["Alice Smith", "Bob"]
    with pytest.raises(PreceptorError) as err:
        ExpertSession(project, "Carol")
    assert err.value.message == "no expert named 'Carol' in this project (experts: Alice Smith, Bob)"
    assert err.value.hint == "Add a new expert with `preceptor experts add 'Carol'`."
    with pytest.raises(PreceptorError) as err:
        ExpertSession(project, "Alise Smith")
    assert err.value.hint == "Did you mean 'Alice Smith'? Add a new expert with `preceptor experts add 'Alise Smith'`."
    assert [e.name for e in list_experts(project.store)] == ["Alice Smith", "Bob"]  # nobody created
    assert ExpertSession(project, "ALICE SMITH").expert == a


def test_sides_are_random_and_ab_maps_to_the_right_outputs(project):
    _setup(project, 400)
    s = ExpertSession(project, "Alice")
    left_is_a = 0
    n = 0
    while (pair := s.next()) is not None:
        row = _pair_row(project, pair.pair_id)
        assert {pair.left.output_id, pair.right.output_id} == {row["output_a"], row["output_b"]}
        texts = {o.id: o.text for o in (q_out(project, row["output_a"]), q_out(project, row["output_b"]))}
        assert pair.left.text == texts[pair.left.output_id] and pair.right.text == texts[pair.right.output_id]
        assert s.pair(pair.pair_id).left.output_id == pair.left.output_id  # deterministic sides
        left_is_a += pair.left.output_id == row["output_a"] and not pair.repeat
        verdict = "A" if n % 2 == 0 else "B"
        jid = s.record(pair, verdict)
        j = q.get_judgment(project.store, jid)
        expected = pair.left.output_id if verdict == "A" else pair.right.output_id
        assert (j["verdict"], j["winner_output_id"], j["left_output_id"]) == ("win", expected, pair.left.output_id)
        n += not pair.repeat
    assert n == 400
    share = left_is_a / n
    assert 0.42 < share < 0.58, share
    # another expert sees other sides for a good share of the same pairs
    add_expert(project.store, "Bob")
    bob = ExpertSession(project, "Bob")
    pairs = [r[0] for r in project.store.all("SELECT id, output_a, output_b FROM pairs")]
    differ = sum(bob.pair(pid).left.output_id != s.pair(pid).left.output_id for pid in pairs)
    assert 0.4 < differ / len(pairs) < 0.6


def q_out(project, output_id):
    from preceptor.db import outputs as q_outputs

    return q_outputs.get(project.store, output_id)


def test_unsafe_flags_refer_to_the_shown_sides(project):
    _setup(project, 30)
    s = ExpertSession(project, "Alice")
    for _ in range(10):
        pair = s.next()
        row = _pair_row(project, pair.pair_id)
        jid = s.record(pair, "A", unsafe=("B",), note="B misses the interaction")
        j = q.get_judgment(project.store, jid)
        right_is_a = pair.right.output_id == row["output_a"]
        assert (bool(j["unsafe_a"]), bool(j["unsafe_b"])) == (right_is_a, not right_is_a)
        assert j["rationale"] == "B misses the interaction"
        assert s.history(1)[0]["unsafe"] == ["B"]
    with pytest.raises(PreceptorError) as err:
        s.record(s.next(), "C")
    assert err.value.message == "verdict 'C' is not one of A, B, tie, both_bad"


def test_overlap_pairs_get_k_experts_and_others_one(project):
    _setup(project, 300, settings={"overlap_share": 0.2, "overlap_k": 2}, experts=("Alice", "Bob"))
    overlap = project.store.scalar("SELECT COUNT(*) FROM pairs WHERE needed = 2")
    assert 0.14 * 300 < overlap < 0.26 * 300
    sessions = [ExpertSession(project, "Alice"), ExpertSession(project, "Bob")]
    active = list(sessions)
    while active:  # the two experts take turns until both queues are empty
        for s in list(active):
            pair = s.next()
            if pair is None:
                active.remove(s)
            else:
                s.record(pair, "tie")
    rows = project.store.all(
        "SELECT p.id, p.needed, p.expert_votes, COUNT(j.id) AS n FROM pairs p LEFT JOIN judgments j ON j.pair_id = p.id "
        "AND j.judge_kind = 'expert' AND j.repeat = 0 GROUP BY p.id")
    for r in rows:
        assert r["expert_votes"] == r["needed"] == r["n"], dict(r)
    assert sessions[0].progress(refresh=True) == (300, 300)


def test_repeats_come_later_with_sides_swapped_and_never_count(project):
    _setup(project, 120, settings={"repeat_share": 0.25, "repeat_gap": 4, "overlap_share": 0.0})
    s = ExpertSession(project, "Alice")
    served_at: dict[int, int] = {}
    first_left: dict[int, int] = {}
    repeats = 0
    step = 0
    while (pair := s.next()) is not None:
        if pair.repeat:
            repeats += 1
            # shown later: after repeat_gap more votes (or once nothing else is left)
            assert step - served_at[pair.pair_id] > 4 or len(served_at) == 120
            assert pair.left.output_id != first_left[pair.pair_id]  # sides swapped
            jid = s.record(pair, "B")
            j = q.get_judgment(project.store, jid)
            assert j["repeat"] == 1 and j["supersedes"] is None
        else:
            served_at[pair.pair_id] = step
            first_left[pair.pair_id] = pair.left.output_id
            s.record(pair, "A")
        step += 1
    assert 0.12 * 120 < repeats < 0.38 * 120, repeats
    # a repeat never adds a vote: every pair has exactly one counted expert vote
    assert {r[0] for r in project.store.all("SELECT expert_votes FROM pairs")} == {1}
    counts = q.verdict_counts(project.store, "expert")["expert"]
    assert counts == {"win": 120}
    assert project.store.scalar("SELECT COUNT(*) FROM judgments WHERE repeat = 1") == repeats
    assert q.pending_repeats(project.store, s.expert.id) == 0


def test_reservations_keep_experts_apart_and_lapse(project, monkeypatch):
    _setup(project, 2, experts=("Alice", "Bob", "Carol"), splits=("val",))
    alice, bob, carol = (ExpertSession(project, n) for n in ("Alice", "Bob", "Carol"))
    pa = alice.next()
    pb = bob.next()
    assert pa.pair_id != pb.pair_id
    assert carol.next() is None  # both pairs reserved
    # reservations lapse after [judge] reservation_minutes
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 5 * 60 + 1)
    pc = carol.next()
    assert pc is not None and pc.pair_id in (pa.pair_id, pb.pair_id)
    monkeypatch.setattr(time, "time", real)
    # a vote on a lapsed reservation is still recorded (never lost)
    alice.record(pa, "A")
    assert project.store.scalar("SELECT COUNT(*) FROM judgments WHERE pair_id = ?", (pa.pair_id,)) == 1


def test_reservation_of_a_dead_process_lapses_at_once(project):
    _setup(project, 1, experts=("Alice", "Bob"), splits=("val",))
    code = textwrap.dedent(f"""
        from preceptor.project import Project
        from preceptor.engine.judging.experts import ExpertSession
        p = Project.open({str(project.root)!r})
        print(ExpertSession(p, "Alice").next().pair_id)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    pair_id = int(out.stdout.strip())
    assert project.store.scalar("SELECT COUNT(*) FROM reservations WHERE pair_id = ?", (pair_id,)) == 1
    bob = ExpertSession(project, "Bob")
    got = bob.next()  # Alice's session died without releasing: Bob gets the pair at once
    assert got is not None and got.pair_id == pair_id


def test_undo_serves_the_same_pair_with_the_same_sides(project):
    _setup(project, 10)
    s = ExpertSession(project, "Alice")
    first = s.next()
    j1 = s.record(first, "A")
    second = s.next()
    j2 = s.record(second, "B")
    back = s.undo()
    assert back.pair_id == second.pair_id and back.left.output_id == second.left.output_id
    assert _pair_row(project, second.pair_id)["expert_votes"] == 0
    assert [h["judgment_id"] for h in s.history()] == [j1]
    j3 = s.record(back, "tie")
    assert q.get_judgment(project.store, j3)["supersedes"] != j2  # supersedes the undo marker …
    chain = q.get_judgment(project.store, q.get_judgment(project.store, j3)["supersedes"])
    assert chain["supersedes"] == j2 and chain["meta"] == {"undo": True}  # … which supersedes the vote
    assert _pair_row(project, second.pair_id)["expert_votes"] == 1
    # undo twice walks further back
    assert s.undo().pair_id == second.pair_id
    assert s.undo().pair_id == first.pair_id
    assert s.history() == []
    assert project.store.scalar("SELECT SUM(expert_votes) FROM pairs") == 0
    assert project.store.scalar("SELECT COUNT(*) FROM judgments") == 6  # 3 votes + 3 undo markers: nothing deleted


def test_change_supersedes_and_counts_once(project):
    _setup(project, 5)
    s = ExpertSession(project, "Alice")
    pair = s.next()
    jid = s.record(pair, "A")
    new = s.change(jid, "B", unsafe=("A",))
    j = q.get_judgment(project.store, new)
    assert j["supersedes"] == jid and j["winner_output_id"] == pair.right.output_id
    assert s.history()[0]["verdict"] == "B" and s.history()[0]["unsafe"] == ["A"]
    assert q.verdict_counts(project.store, "expert") == {"expert": {"win": 1}}
    assert _pair_row(project, pair.pair_id)["expert_votes"] == 1
    with pytest.raises(PreceptorError) as err:
        s.change(jid, "tie")
    assert err.value.title == "Vote already changed"
    assert err.value.message == f"judgment {jid} was superseded by a later one"
    add_expert(project.store, "Bob")
    with pytest.raises(PreceptorError) as err:
        ExpertSession(project, "Bob").change(new, "tie")
    assert err.value.message == f"judgment {new} is not a vote of Bob"


def test_skip_passes_the_pair_to_others(project):
    _setup(project, 1, experts=("Alice", "Bob"), splits=("val",))
    alice, bob = ExpertSession(project, "Alice"), ExpertSession(project, "Bob")
    pair = alice.next()
    alice.skip(pair)
    assert bob.next().pair_id == pair.pair_id
    assert alice.next() is None  # Bob holds it now
    assert alice.history()[0]["verdict"] == "skip"


def test_skipped_pairs_come_back_at_the_end_of_the_experts_queue(project):
    _setup(project, 3, experts=("Alice",), splits=("val",))
    alice = ExpertSession(project, "Alice")
    skipped = alice.next()
    alice.skip(skipped)
    others = []
    for _ in range(2):
        pair = alice.next()
        assert pair.pair_id != skipped.pair_id
        others.append(pair.pair_id)
        alice.record(pair, "A")
    back = alice.next()
    assert back.pair_id == skipped.pair_id and back.left.output_id == skipped.left.output_id
    alice.record(back, "B")
    assert alice.next() is None
    assert alice.count_mine() == {"judged": 3, "left": 0, "repeats": 0, "held_by_others": 0}


def test_bad_item_leaves_the_queue_until_cleared(project):
    from preceptor.engine.judging.experts import clear_bad_item

    _setup(project, 3, splits=("val",))
    s = ExpertSession(project, "Alice")
    pair = s.next()
    s.flag_bad_item(pair.prompt_id, "wrong reference")
    assert project.store.scalar("SELECT bad_item FROM prompts WHERE id = ?", (pair.prompt_id,)) == "wrong reference (flagged by Alice)"
    assert s.progress() == (0, 2)
    seen = set()
    while (p := s.next()) is not None:
        seen.add(p.prompt_id)
        s.record(p, "A")
    assert pair.prompt_id not in seen and len(seen) == 2
    clear_bad_item(project.store, pair.prompt_id)
    assert s.next().prompt_id == pair.prompt_id
    with pytest.raises(PreceptorError) as err:
        s.flag_bad_item(pair.prompt_id, "  ")
    assert err.value.message == "flagging a bad item needs a reason"


def test_llm_verdict_only_after_the_vote_in_the_experts_labels(project):
    _setup(project, 2, splits=("val",))
    s = ExpertSession(project, "Alice")
    pair = s.next()
    q.insert_judgments(project.store, [dict(pair_id=pair.pair_id, judge_kind="llm", judge_id="stub", verdict="win",
                                            winner_output_id=pair.right.output_id, left_output_id=pair.left.output_id,
                                            confidence=0.8, rationale="B names the enzyme")])
    assert s.llm_verdict(pair) is None  # hidden before the vote
    s.record(pair, "A")
    v = s.llm_verdict(pair)
    assert (v["winner"], v["rationale"], v["confidence"]) == ("B", "B names the enzyme", 0.8)
    project.update_settings({"judge": {"show_llm_rationale": "never"}})
    assert ExpertSession(project, "Alice").llm_verdict(pair) is None


def test_preload_returns_the_following_pair_at_once(project):
    _setup(project, 6, experts=("Alice", "Bob"), splits=("val",))
    s = ExpertSession(project, "Alice")
    pair = s.next()
    nxt = s.preload()
    assert nxt is not None and nxt.pair_id != pair.pair_id
    assert project.store.scalar("SELECT COUNT(*) FROM reservations WHERE expert_id = ?", (s.expert.id,)) == 2
    s.record(pair, "A")
    assert s.next().pair_id == nxt.pair_id
    # the preloaded pair is reserved: another expert does not get it meanwhile
    nxt2 = s.preload()
    bob = ExpertSession(project, "Bob")
    assert bob.next().pair_id not in (nxt.pair_id, nxt2.pair_id)
    s.release()
    assert project.store.scalar("SELECT COUNT(*) FROM reservations WHERE expert_id = ?", (s.expert.id,)) == 0


def test_filter_by_systems_and_split(project):
    _setup(project, 30, settings={"overlap_share": 0.0})
    s = ExpertSession(project, "Alice", PairFilter(systems=("beta", "alpha"), split="val"))
    splits = set()
    while (p := s.next()) is not None:
        splits.add(project.store.scalar("SELECT split FROM prompts WHERE id = ?", (p.prompt_id,)))
        s.record(p, "tie")
    assert splits == {"val"}
    assert s.progress(refresh=True) == (10, 10)
    with pytest.raises(PreceptorError) as err:
        ExpertSession(project, "Alice", PairFilter(split="dev"))
    assert err.value.message == "--split 'dev': 'dev' is not train, val or test"


def test_vote_survives_the_process_being_killed(project):
    _setup(project, 3, splits=("val",))
    code = textwrap.dedent(f"""
        import os, signal
        from preceptor.project import Project
        from preceptor.engine.judging.experts import ExpertSession
        p = Project.open({str(project.root)!r})
        s = ExpertSession(p, "Alice")
        pair = s.next()
        jid = s.record(pair, "B")
        print(pair.pair_id, jid, pair.right.output_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == -9
    pair_id, jid, winner = map(int, out.stdout.split())
    j = q.get_judgment(project.store, jid)
    assert (j["pair_id"], j["verdict"], j["winner_output_id"]) == (pair_id, "win", winner)
    assert _pair_row(project, pair_id)["expert_votes"] == 1


def test_settings_are_validated(project):
    project.update_settings({"judge": {"overlap_share": 1.5}})
    with pytest.raises(PreceptorError) as err:
        project.section("judge", JudgeSettings)
    assert "overlap_share = 1.5 must be between 0 and 1" in err.value.message
    assert os.fspath(project.config_path) in err.value.message


def test_m004_backfills_pairs_made_before_it(tmp_path):
    from preceptor.db import migrations
    from preceptor.db.store import Store

    store = Store(tmp_path / "old.db")
    migrations.migrate(store, target=3)  # a database from before m004_judging_extra
    c = store.conn
    ts = "2026-01-01T00:00:00.000Z"
    with store.tx():
        c.execute("INSERT INTO collections (name, created_at) VALUES ('c', ?)", (ts,))
        c.execute("INSERT INTO prompts (id, text, text_hash, split, group_key, collection, created_at) VALUES (1, 'q', 'h', 'val', 'g', 'c', ?)", (ts,))
        c.executemany("INSERT INTO systems (id, name, role, backend, created_at) VALUES (?, ?, 'custom', 'imported', ?)", [(7, "x", ts), (9, "y", ts)])
        c.executemany("INSERT INTO outputs (id, prompt_id, system_id, text, created_at) VALUES (?, 1, ?, ?, ?)", [(1, 9, "a", ts), (2, 7, "b", ts)])
        c.execute("INSERT INTO pairs (id, prompt_id, output_a, output_b, split, created_at) VALUES (1, 1, 1, 2, 'val', ?)", (ts,))
        c.execute("INSERT INTO experts (id, name, norm_name, created_at) VALUES (1, 'Ada', 'ada', ?)", (ts,))
        c.execute("INSERT INTO judgments (id, pair_id, judge_kind, judge_id, verdict, winner_output_id, created_at) VALUES (1, 1, 'expert', 'Ada', 'win', 1, ?)", (ts,))
        c.execute("INSERT INTO judgments (id, pair_id, judge_kind, judge_id, verdict, supersedes, created_at) VALUES (2, 1, 'expert', 'Ada', 'tie', 1, ?)", (ts,))
    assert migrations.migrate(store, target=4) == ["m004_judging_extra"]  # later migrations are not its business
    row = store.one("SELECT system_a, system_b, needed, expert_votes, queue_key FROM pairs WHERE id = 1")
    assert (row["system_a"], row["system_b"], row["needed"], row["expert_votes"]) == (9, 7, 1, 1)
    assert row["queue_key"] > 0
    store.close()


def test_votes_for_prompt_lists_current_votes_readably(project):
    _setup(project, 2, splits=("val",))
    s = ExpertSession(project, "Alice")
    pair = s.next()
    jid = s.record(pair, "A")
    s.change(jid, "B", unsafe=("A",))
    rows = q.votes_for_prompt(project.store, pair.prompt_id)
    winner = project.store.scalar("SELECT s.name FROM outputs o JOIN systems s ON s.id = o.system_id WHERE o.id = ?",
                                  (pair.right.output_id,))
    loser = ({"alpha", "beta"} - {winner}).pop()
    assert [(r["judge"], r["pair"], r["verdict"], r["unsafe"]) for r in rows] == [("expert:Alice", "alpha vs beta", winner, loser)]
