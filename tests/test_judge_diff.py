"""The word-level difference view between answers A and B."""

from __future__ import annotations

import pytest

from preceptor.engine.judging.diff import tokens, word_diff

pytestmark = pytest.mark.anyio


def test_word_diff_marks_only_the_words_that_differ():
    a, b = word_diff("Take 5 mg twice daily with food.", "Take 10 mg twice daily.")
    assert "".join(t for t, _ in a) == "Take 5 mg twice daily with food."
    assert [t for t, d in a if d] == ["5", "daily", "with", "food."]  # "daily" vs "daily.": punctuation counts
    assert [t for t, d in b if d] == ["10", "daily."]


def test_thai_is_compared_word_by_word():
    text = "ยานี้ควรรับประทานหลังอาหาร"
    assert "".join(tokens(text)) == text and len(tokens(text)) > 2  # segmented by pythainlp newmm
    a, b = word_diff("ยานี้ควรรับประทานหลังอาหาร", "ยานี้ควรรับประทานก่อนอาหาร")
    # "after meals" vs "before meals": one dictionary word each; the shared words are not marked
    assert [t for t, d in a if d] == ["หลังอาหาร"] and [t for t, d in b if d] == ["ก่อนอาหาร"]


async def test_d_toggles_the_difference_view(project, anyio_backend):
    from preceptor.tui.app import PreceptorApp
    from tests.tui_helpers import judged_project, wait_for

    judged_project(project, 3, experts=("Dr Ada",))
    app = PreceptorApp(project, start="judge", expert="Dr Ada")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: getattr(screen, "current", None) is not None)
        await pilot.press("d")
        body = screen.query_one("#pane-a")._body.content
        marked = [body.plain[s.start:s.end] for s in body.spans if "reverse" in str(s.style)]
        assert marked and all(w not in ("interact",) for w in marked)
        assert screen.query_one("#pane-a").border_subtitle == "differences"
        await pilot.press("d")
        assert screen.query_one("#pane-a").border_subtitle == ""
    assert app.errors == []


def test_thai_answers_wrap_at_word_boundaries_not_mid_word() -> None:
    from rich.console import Console

    from preceptor.engine.judging.diff import tokens
    from preceptor.tui.widgets.answer import WordWrapped

    thai = ("ยาคลาริโทรมัยซินยับยั้งเอนไซม์ไซโตโครมพีสี่ห้าสามเอสี่ทำให้ระดับยาซิมวาสแตตินในเลือดสูงขึ้น"
            "และเพิ่มความเสี่ยงต่อการเกิดกล้ามเนื้อสลาย")
    console = Console(width=24, record=True, file=open("/dev/null", "w"), color_system=None)  # noqa: SIM115
    console.print(WordWrapped(thai))
    lines = [ln.rstrip() for ln in console.export_text().splitlines() if ln.strip()]
    from rich.cells import cell_len

    assert len(lines) > 3 and all(cell_len(ln) <= 24 for ln in lines)  # Thai vowel and tone marks take no cell
    assert "".join(lines) == thai  # nothing lost or added
    cuts, pos = set(), 0
    for tok in tokens(thai):
        pos += len(tok)
        cuts.add(pos)
    pos = 0
    for ln in lines[:-1]:
        pos += len(ln)
        assert pos in cuts, f"line {ln!r} ends inside a word"
