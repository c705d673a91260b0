"""Export screen: live preview of the DPO counts, then the file it writes."""

from __future__ import annotations

import json

import pytest

from tests.tui_helpers import judged_project, plain, wait_for

pytestmark = pytest.mark.anyio




def vote_all(project, verdicts):
    from preceptor.engine.judging.experts import ExpertSession
    from preceptor.engine.judging.pairs import PairFilter

    session = ExpertSession(project, "Dr Bo", PairFilter(split="train"), create=True)
    served = []
    for verdict in verdicts:
        pair = session.next()
        session.record(pair, verdict)
        served.append((pair, verdict))
    return served


async def test_export_preview_and_write(project, anyio_backend):
    from textual.widgets import Input, Select

    from preceptor.tui.app import PreceptorApp

    judged_project(project, 12, settings={})
    project.store.execute("UPDATE prompts SET split = 'train'")  # everything in train: material to export
    project.store.execute("UPDATE pairs SET split = 'train'")
    served = vote_all(project, ["A", "B", "tie", "A", "both_bad", "B"])
    app = PreceptorApp(project, start="export")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "last_count", None) is not None)
        text = plain(screen.query_one("#export-preview"))
        assert screen.last_count == 4, text  # 4 decisive votes; tie and both-bad excluded
        assert "4 preference pairs would be written" in text
        assert "tie" in text and "both_bad" in text
        # changing a filter updates the preview
        screen.query_one("#x-source", Select).value = "llm"
        await wait_for(pilot, lambda: screen.last_count == 0)
        screen.query_one("#x-source", Select).value = "expert"
        await wait_for(pilot, lambda: screen.last_count == 4)
        out = project.root / "exports" / "mine.jsonl"
        screen.query_one("#x-out", Input).value = str(out)
        await pilot.press("ctrl+w")
        await wait_for(pilot, lambda: out.exists() and "Wrote 4 pairs" in plain(screen.query_one("#export-preview")))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4
    decisive = {p.pair_id: (p, v) for p, v in served if v in ("A", "B")}
    texts = {}
    for r in rows:
        pair, verdict = decisive[r["pair_id"]]
        chosen = pair.left.text if verdict == "A" else pair.right.text
        rejected = pair.right.text if verdict == "A" else pair.left.text
        # the default style is conversational: one assistant turn each
        assert r["chosen"][0]["role"] == "assistant" and isinstance(r["prompt"], list)
        texts[r["pair_id"]] = (r["chosen"][0]["content"], r["rejected"][0]["content"]) == (chosen, rejected)
    assert all(texts.values()) and set(texts) == set(decisive)
    assert app.errors == []
