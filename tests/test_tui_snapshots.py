"""Snapshots of the Judge and Dashboard screens (fixed size, no cursor blink).

Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and look at the SVGs under tests/__snapshots__/.
"""

from __future__ import annotations

import time

from rich.text import Text

from tests.tui_helpers import judged_project


def idle(app) -> bool:
    return not any(w.is_running for w in app.workers)


async def settle(pilot, cond, timeout=10.0):
    end = time.monotonic() + timeout
    while not (cond() and idle(pilot.app)) and time.monotonic() < end:
        await pilot.pause(0.05)
    await pilot.pause(0.2)


def make_app(project, **kw):
    from preceptor.tui.app import PreceptorApp

    app = PreceptorApp(project, **kw)
    app.cursor_blink = False  # no blinking caret in the screenshot
    return app


def test_judge_snapshot(project, snap_compare):
    judged_project(project, 6, experts=('Dr Snap',))
    app = make_app(project, start="judge", expert="Dr Snap")

    async def ready(pilot):
        await settle(pilot, lambda: getattr(app.screen, "current", None) is not None)

    assert snap_compare(app, terminal_size=(120, 40), run_before=ready)


def test_judge_snapshot_narrow_after_flag(project, snap_compare):
    judged_project(project, 6, experts=('Dr Snap',))
    app = make_app(project, start="judge", expert="Dr Snap")

    async def ready(pilot):
        await settle(pilot, lambda: getattr(app.screen, "current", None) is not None)
        await pilot.press("1", "f", "2")
        await settle(pilot, lambda: "you: 1 judged" in str(app.screen.query_one("#judge-status").render()))

    assert snap_compare(app, terminal_size=(80, 24), run_before=ready)


def test_dashboard_snapshot(project, snap_compare):
    from preceptor.engine.judging.experts import ExpertSession
    from preceptor.engine.judging.pairs import PairFilter

    judged_project(project, 12, experts=('Dr Snap',))
    session = ExpertSession(project, "Dr Snap", PairFilter(), create=True)
    for v in ["A", "A", "B", "tie", "A", "both_bad"]:
        session.record(session.next(), v)
    session.release()
    app = make_app(project)

    async def ready(pilot):
        await settle(pilot, lambda: "Dr Snap" in str(getattr(app.screen.query_one("#dash-judging"), "content", "")) or
                     app.screen.query_one("#dash-figures").content != "", 20)
        app.screen.query_one("#dash-path").update(Text("Project proj: <tmp>"))  # the temp path differs per run
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=ready)
