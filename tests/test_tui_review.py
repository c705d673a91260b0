"""The team lead's review screen, and that an expert's served session cannot reach it."""

from __future__ import annotations

import pytest

from tests.tui_helpers import judged_project, wait_for

pytestmark = pytest.mark.anyio


def _votes(project):
    from preceptor.db import judging as q
    from preceptor.engine.judging.experts import ExpertSession

    ada, bo = ExpertSession(project, "Dr Ada"), ExpertSession(project, "Dr Bo")
    p1 = ada.next()
    ada.record(p1, "A")
    p2 = ada.next()
    ada.record(p2, "tie")
    row = q.get_pair(project.store, p1.pair_id)
    with project.store.tx():  # the LLM judge disagrees with Dr Ada on p1 and agrees on p2
        other = row["output_b"] if p1.left.output_id == row["output_a"] else row["output_a"]
        q.insert_judgment(project.store, pair_id=p1.pair_id, judge_kind="llm", judge_id="stub", left_output_id=row["output_a"],
                          winner_output_id=other, verdict="win")
        q.insert_judgment(project.store, pair_id=p2.pair_id, judge_kind="llm", judge_id="stub", left_output_id=row["output_a"],
                          verdict="tie")
    ada.release()
    bo.release()
    return p1, p2


async def test_review_lists_disagreements_first_and_filters_by_expert(project, anyio_backend):
    from preceptor.engine.judging.review import review
    from preceptor.tui.app import PreceptorApp

    judged_project(project, 4, experts=("Dr Ada", "Dr Bo"))
    p1, p2 = _votes(project)
    rows = review(project)
    assert [r.pair_id for r in rows] == [p1.pair_id, p2.pair_id] and rows[0].disagreement and not rows[1].disagreement
    assert rows[1].experts == {"Dr Ada": "tie"} and rows[1].judges == {"llm:stub": "tie"}
    assert review(project, expert="Dr Bo") == []
    app = PreceptorApp(project)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f7")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ReviewScreen")
        table = app.screen.query_one("#review-table")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert str(table.get_row_at(0)[0]) == str(p1.pair_id) and str(table.get_row_at(0)[5]) == "disagree"
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ItemScreen")
        await pilot.press("escape")
        await pilot.press("slash", *"expert='Dr Bo'", "enter")
        await wait_for(pilot, lambda: table.row_count == 0)
    assert app.errors == []


async def test_an_experts_session_cannot_open_other_screens(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp

    judged_project(project, 3, experts=("Dr Ada",))
    app = PreceptorApp(project, start="dashboard", expert="Dr Ada", judge_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "current", None) is not None)
        for key in ("f1", "f5", "f7"):
            await pilot.press(key)
            assert type(app.screen).__name__ == "JudgeScreen"
        app.screen.action_ask_name()
        assert type(app.screen).__name__ == "JudgeScreen"  # no picker listing every name
    assert app.errors == []
