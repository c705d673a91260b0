"""Dashboard, Data, Results, errors, the palette and the Judge screen's side keys, by Pilot."""

from __future__ import annotations

import pytest

from tests.tui_helpers import judged_project, plain, wait_for

pytestmark = pytest.mark.anyio




def vote(project, name, verdicts):
    from preceptor.engine.judging.experts import ExpertSession
    from preceptor.engine.judging.pairs import PairFilter

    session = ExpertSession(project, name, PairFilter(), create=True)
    for v in verdicts:
        session.record(session.next(), v)
    session.release()


async def test_dashboard_counts(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp

    judged_project(project, 12, experts=('Dr Ada',))
    vote(project, "Dr Ada", ["A", "B", "A"])
    app = PreceptorApp(project)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "Dr Ada" in plain(screen.query_one("#dash-judging")))
        prompts = plain(screen.query_one("#dash-prompts"))
        assert "train" in prompts and " 4 " in prompts and "12" in prompts
        systems = plain(screen.query_one("#dash-systems"))
        assert "alpha" in systems and "beta" in systems
        judging = plain(screen.query_one("#dash-judging"))
        assert "3 of 12" in judging and "expert votes" in judging
        await wait_for(pilot, lambda: "Win rates" in plain(screen.query_one("#dash-figures"), 160), 20)
    assert app.errors == []


async def test_data_search_and_open_item(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.screens.data import ItemScreen

    judged_project(project, 12, experts=('Dr Ada',))
    app = PreceptorApp(project, start="data")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        table = screen.query_one("#data-table")
        await wait_for(pilot, lambda: table.row_count == 12)
        await pilot.press("slash", *"drug D7 ", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert "1 prompts" in plain(screen.query_one("#data-status"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ItemScreen))
        body = plain(app.screen.query_one("#item-body Static"))
        assert "Question 7" in body and "Alpha 7" in body and "Beta 7" in body and "alpha" in body
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
    assert app.errors == []


async def test_results_tables(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp

    judged_project(project, 12, experts=('Dr Ada',))
    vote(project, "Dr Ada", ["A"] * 8 + ["B"] * 2)
    app = PreceptorApp(project, start="results")
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "Win rates" in plain(screen.query_one("#results"), 160), 20)
        text = plain(screen.query_one("#results"), 160)
        assert "alpha" in text and "Bradley–Terry" in text and "position" in text
        assert "Stopping signal: " in text and ("settled" in text or "votes needed" in text)
        # the charts: win-rate bars and a Bradley–Terry forest plot, each row with its n
        assert "Win rate of system 1 (95% CI" in text and "Bradley–Terry ratings, Elo" in text
        assert "●" in text and "n=6" in text  # 6 of the 10 votes are on val/test prompts
        assert "split val,test (s switches)" in text
        await pilot.press("s")
        await wait_for(pilot, lambda: "split all (s switches)" in plain(screen.query_one("#results"), 160), 20)
    assert app.errors == []


async def test_engine_error_shows_titled_modal_and_app_survives(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.widgets.dialogs import ErrorModal

    judged_project(project, 4, experts=('Dr Ada',))
    project.update_settings({"judge": {"overlap_share": 3.0}})
    app = PreceptorApp(project, start="judge", expert="Dr Ada")
    async with app.run_test(size=(80, 24)) as pilot:
        # the modal is pushed, then composed: wait until its title is mounted
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal) and bool(app.screen.query("#error-title")))
        modal = app.screen
        assert plain(modal.query_one("#error-title")).strip() == "Invalid setting"
        # the message names the project path, so where it wraps depends on the folder: compare words
        assert "overlap_share = 3.0 must be between 0 and 1" in " ".join(plain(modal.query_one("#error-message")).split())
        await pilot.press("escape")
        await pilot.press("f1")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "DashboardScreen")
        assert app.is_running


async def test_palette_switches_screens(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp

    judged_project(project, 4, experts=('Dr Ada',))
    app = PreceptorApp(project)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Go to Export")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ExportScreen")
        dark = app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark is not dark  # light and dark themes


async def test_judge_side_keys_history_bad_item_narrow(project, anyio_backend):
    from preceptor.db import prompts as q_prompts
    from preceptor.tui.app import PreceptorApp
    from preceptor.tui.widgets.dialogs import ChoiceModal, TextModal, TextPrompt

    judged_project(project, 6)
    app = PreceptorApp(project, start="judge")
    async with app.run_test(size=(80, 24)) as pilot:
        # no experts yet: asked for a name
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        await pilot.press(*"Dr Cy", "enter")
        await wait_for(pilot, lambda: getattr(app.screen, "current", None) is not None)
        screen = app.screen
        judge = screen
        assert judge.expert == "Dr Cy"
        # narrow terminal: answers stacked, one above the other
        a, b = judge.query_one("#pane-a"), judge.query_one("#pane-b")
        assert a.region.x == b.region.x and b.region.y > a.region.y
        first = judge.current
        await pilot.press("r")  # the reference answer, on demand
        assert "Reference: D" in plain(judge.query_one("#prompt")) and "inhibits CYP3A" in plain(judge.query_one("#prompt"))
        await pilot.press("r")
        assert "Reference" not in plain(judge.query_one("#prompt"))
        await pilot.press("1")
        # g: guidelines from the domain pack's rubric; ?: help
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, TextModal))
        assert "Judging guidelines" in plain(app.screen.query_one("Label"))
        await pilot.press("escape")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, TextModal))
        await pilot.press("escape")
        # b: report the current item as bad, with a reason
        bad = judge.current
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, TextPrompt))
        await pilot.press(*"ambiguous", "enter")
        await wait_for(pilot, lambda: app.screen is judge and judge.current.pair_id != bad.pair_id)
        assert q_prompts.get(project.store, bad.prompt_id).bad_item == "ambiguous (flagged by Dr Cy)"
        # h: history, open the first vote and change it to B
        await pilot.press("h")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceModal) and "Change" in plain(app.screen.query_one("Label")))
        # the past pair is on screen, as it was shown, before the new verdict is asked
        assert "Past vote: A better" in plain(judge.query_one("#prompt"))
        assert first.prompt in plain(judge.query_one("#prompt"))
        assert plain(judge.query_one("#pane-a")._body).split()[:2] == first.left.text.replace("*", "").split()[:2]
        await pilot.press("down", "enter")  # A better -> B better
        await wait_for(pilot, lambda: app.screen is judge)
        history = judge.session.history()
        assert history[0]["pair_id"] == first.pair_id and history[0]["verdict"] == "B"
    assert app.errors == []


async def test_llm_verdict_revealed_after_the_vote(project, anyio_backend):
    from preceptor.db import judging as q
    from preceptor.tui.app import PreceptorApp

    judged_project(project, 3, experts=('Dr Ada',))
    with project.store.tx():  # an LLM judge preferred output_a of every pair
        for r in project.store.all("SELECT id, output_a FROM pairs"):
            q.insert_judgment(project.store, pair_id=r[0], judge_kind="llm", judge_id="stub-llm", left_output_id=r[1],
                              winner_output_id=r[1], verdict="win", confidence=0.8, rationale="names the enzyme")
    app = PreceptorApp(project, start="judge", expert="Dr Ada")
    shown = []
    app.notify = lambda message, **kw: shown.append((kw.get("title"), message))  # type: ignore[method-assign]
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "current", None) is not None)
        pair = screen.current
        llm_side = "A" if pair.left.output_id == project.store.scalar("SELECT output_a FROM pairs WHERE id = ?", (pair.pair_id,)) else "B"
        assert shown == []  # nothing revealed before the vote
        await pilot.press("1")
        await wait_for(pilot, lambda: shown)
    title, message = shown[0]
    assert title == "LLM judge on the last pair"
    agrees = "agrees" if llm_side == "A" else "differs"
    assert message == f"You: A better. LLM judge: {llm_side} better (80% sure), {agrees}.\nnames the enzyme"


async def test_question_mark_opens_the_keys_of_every_screen(project, anyio_backend):
    from preceptor.tui.app import SCREENS, PreceptorApp
    from preceptor.tui.widgets.dialogs import TextModal

    judged_project(project, 3, experts=("Dr Ada",))
    app = PreceptorApp(project, expert="Dr Ada")
    async with app.run_test(size=(80, 24)) as pilot:
        for mode, _title, key, _help in SCREENS:
            await pilot.press(key)
            await wait_for(pilot, lambda m=mode: app.current_mode == m and not isinstance(app.screen, TextModal))
            await pilot.pause(0.2)
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, TextModal))
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, TextModal))
    assert app.errors == []
