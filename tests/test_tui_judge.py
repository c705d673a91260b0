"""The Judge screen driven by keys: the exact judgments it leaves in the database."""

from __future__ import annotations

import pytest

from tests.tui_helpers import judged_project, wait_for

pytestmark = pytest.mark.anyio


def judgments(project):
    return [dict(r) for r in project.store.all(
        """SELECT id, pair_id, judge_kind, judge_id, left_output_id, winner_output_id, verdict, unsafe_a, unsafe_b,
                  rationale, supersedes, repeat FROM judgments ORDER BY id""")]




async def test_judge_ten_pairs_by_keys(project, anyio_backend):
    from preceptor.db import judging as q
    from preceptor.tui.app import PreceptorApp

    info = judged_project(project, 12, experts=('Dr Ada',))
    assert info["pairs"] == 12
    app = PreceptorApp(project, start="judge", expert="Dr Ada")
    expected = []  # (pair_id, verdict, winner side, unsafe labels, note, supersedes previous?)

    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "current", None) is not None)

        def cur():
            return screen.current

        async def vote(keys, verdict, unsafe=(), note=None):
            pair = cur()
            await pilot.press(*keys)
            side = {"A": pair.left.output_id, "B": pair.right.output_id}.get(verdict)
            expected.append(("vote", pair, verdict, side, unsafe, note))
            assert cur() is None or cur().pair_id != pair.pair_id

        await vote(["1"], "A")                          # 1
        await vote(["2"], "B")                          # 2
        await vote(["t"], "tie")                        # 3
        await vote(["x"], "both_bad")                   # 4
        await vote(["f", "1", "right"], "B", ("A",))    # 5: unsafe A, B better
        skipped = cur()                                 # 6: skip
        await pilot.press("s")
        expected.append(("skip", skipped, None, None, (), None))
        assert cur().pair_id != skipped.pair_id
        undone = cur()                                  # 7: vote A, undo, vote B
        await pilot.press("1")
        expected.append(("vote", undone, "A", undone.left.output_id, (), None))
        assert cur().pair_id != undone.pair_id
        await pilot.press("u")
        assert cur().pair_id == undone.pair_id and cur().left.output_id == undone.left.output_id
        expected.append(("undo", undone, None, None, (), None))
        await vote(["2"], "B")
        await vote(["left"], "A")                       # 8
        # 9: a note, then tie
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is not screen)
        await pilot.press(*"clear win", "enter")
        await wait_for(pilot, lambda: app.screen is screen)
        await vote(["t"], "tie", (), "clear win")
        await vote(["f", "2", "f", "1", "x"], "both_bad", ("A", "B"))   # 10: both unsafe, both bad
        done, total = screen.session.progress()
        assert (done, total) == (9, 12)  # ten pairs served: nine voted, one skipped
        await wait_for(pilot, lambda: "you: 9 judged · 3 left for you" in str(screen.query_one("#judge-status").render()))

    rows = judgments(project)
    want = []
    prev_for_pair: dict[int, int] = {}
    for i, (kind, pair, verdict, side, unsafe, note) in enumerate(expected):
        pid = pair.pair_id
        row = q.get_pair(project.store, pid)
        by_label = {"A": pair.left.output_id, "B": pair.right.output_id}
        unsafe_ids = {by_label[u] for u in unsafe}
        if kind == "vote":
            v = "win" if verdict in ("A", "B") else verdict
        else:
            v = "skip"
        want.append({
            "pair_id": pid, "judge_kind": "expert", "judge_id": "Dr Ada", "left_output_id": pair.left.output_id,
            "winner_output_id": side, "verdict": v, "unsafe_a": int(row["output_a"] in unsafe_ids),
            "unsafe_b": int(row["output_b"] in unsafe_ids), "rationale": note,
            "supersedes": prev_for_pair.get(pid), "repeat": 0,
        })
        prev_for_pair[pid] = rows[i]["id"] if i < len(rows) else -1
    assert [{k: r[k] for k in want[0]} for r in rows] == want


async def test_a_vote_while_another_program_holds_the_database_waits_and_says_so(project, anyio_backend):
    import subprocess
    import sys

    from preceptor.tui.app import PreceptorApp
    from tests.test_store_robustness import HOLDER

    judged_project(project, 4, experts=("Dr Ada",))
    app = PreceptorApp(project, start="judge", expert="Dr Ada")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "current", None) is not None)
        await pilot.pause(0.5)  # let the preload of the next pair finish
        pair = screen.current
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(project.root / "preceptor.db"), "2.5"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            await pilot.press("1")
            await wait_for(pilot, lambda: any(n.message == "waiting for the database…" for n in app._notifications), timeout=15)
            await wait_for(pilot, lambda: project.store.scalar(
                "SELECT COUNT(*) FROM judgments WHERE pair_id = ? AND judge_id = 'Dr Ada'", (pair.pair_id,)) == 1, timeout=20)
        finally:
            holder.wait(timeout=30)
        assert not app.errors


async def test_a_burst_of_keys_records_one_vote_with_the_default_dwell_time(project, anyio_backend):
    """[judge] min_seconds keeps its default (0.5 s): keys that arrive before the next pair has
    been on screen that long are discarded with a notice, never applied to it."""
    import asyncio

    from preceptor.tui.app import PreceptorApp

    judged_project(project, 6, settings={"min_seconds": 0.5}, experts=("Dr Ada",))
    app = PreceptorApp(project, start="judge", expert="Dr Ada")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "current", None) is not None)
        first = screen.current
        await pilot.press("1")  # too early too: the pair has been on screen for less than 0.5 s
        assert "key ignored" in str(screen.query_one("#judge-status").render())
        assert screen.current is first
        await asyncio.sleep(0.6)
        await pilot.press("1", "2", "t", "1")  # the burst: only the first key counts
        second = screen.current
        assert second.pair_id != first.pair_id
        await pilot.pause(0.1)
        assert "key ignored" in str(screen.query_one("#judge-status").render())
        assert screen.current is second
    rows = judgments(project)
    assert [(r["pair_id"], r["verdict"], r["winner_output_id"]) for r in rows] == [
        (first.pair_id, "win", first.left.output_id)]
    latency = project.store.scalar("SELECT latency_ms FROM judgments")
    assert latency >= 500.0  # from the moment the pair was drawn, not from the key before


async def test_at_80x24_the_answers_get_the_height_and_keys_scroll_what_they_name(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp

    judged_project(project, 3, experts=("Dr Ada",))
    long = "\n\n".join(f"Paragraph {i} of a long answer about the interaction." for i in range(40))
    with project.store.tx():
        project.store.execute("UPDATE outputs SET text = ?", (long,))
        project.store.execute("UPDATE prompts SET reference = ?", ("\n".join(f"reference line {i}" for i in range(20)),))
    app = PreceptorApp(project, start="judge", expert="Dr Ada")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "current", None) is not None)
        await pilot.pause(0.1)
        box, a, b = screen.query_one("#prompt-box"), screen.query_one("#pane-a"), screen.query_one("#pane-b")
        assert box.outer_size.height <= 4  # the prompt collapsed: the answers share the rest
        assert a.outer_size.height + b.outer_size.height >= 15
        await pilot.press("r", "down", "down", "down")
        await pilot.pause(0.1)
        assert a.scroll_y > 0 and b.scroll_y == 0 and box.scroll_y == 0  # ↓ scrolls answer A, even with the reference shown
        await pilot.press("shift+down")
        await pilot.pause(0.1)
        assert b.scroll_y > 0
        before = (a.scroll_y, b.scroll_y)
        await pilot.press("pagedown")
        await pilot.pause(0.1)
        assert a.scroll_y > before[0] and b.scroll_y > before[1]  # PgDn scrolls both
        await pilot.press("p")
        await pilot.pause(0.1)
        assert box.outer_size.height > 4
    assert app.errors == []
