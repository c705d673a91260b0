"""The judging sections of `preceptor report` and the `stats` / `export` commands."""

from __future__ import annotations

import json

from preceptor.cli import main
from tests.test_stats_support import Judged


def _judged(project) -> Judged:
    j = Judged(project)
    for i in range(8):
        pid = j.prompt(split="val" if i < 6 else "train", task="ddi" if i % 2 else "moa")
        pair, outs = j.pair(pid, {"base": f"b{i}", "teacher": f"teacher answer {i} that is longer"})
        j.vote(pair, outs, "teacher" if i else "base", judge="ann")
        j.vote(pair, outs, "teacher", kind="llm", judge="gpt", left="base", confidence=0.8,
               orders=(("base", "B"), ("teacher", "A")))
        j.answer(pid, "api-teacher", f"api answer {i}", cost=0.002)
    with project.store.tx():
        project.store.execute("INSERT INTO llm_cache (key, model, request, response, prompt_tokens, completion_tokens,"
                              " cost, created_at) VALUES ('k1', 'openai/gpt-4o-mini', '{}', '{}', 100, 20, 0.0125, 'now')")
    return j


def test_report_sections_registered_and_filled(project) -> None:
    from preceptor.engine.results.report import build_sections, registered

    _judged(project)
    sections = {s.key: s for s in build_sections(project)}  # imports preceptor.engine.*_report
    keys = [k for k, _ in registered()]
    for key in ("judge_win_rates", "judge_league", "judge_agreement", "judge_bias", "api_spend"):
        assert key in keys and key in sections
    win = sections["judge_win_rates"]
    assert "6 votes on 6 pairs" not in win.markdown  # expert + LLM votes: 12 on 6 pairs
    assert "12 votes on 6 pairs (split val,test)" in win.markdown
    rows = {(r["task"], r["judge"]): r for r in win.csv_rows}
    assert rows[("moa", "expert")]["wins_1"] == 1 and rows[("moa", "expert")]["wins_2"] == 2
    league = sections["judge_league"]
    assert [r["system"] for r in league.csv_rows if r["judge"] == "llm"] == ["teacher", "base"]
    spend = sections["api_spend"]
    assert "**$0.0160**" in spend.markdown  # 8 outputs × 0.002
    assert "**$0.0125**" in spend.markdown and "openai/gpt-4o-mini" in spend.markdown
    bias = {r["judge"]: r for r in sections["judge_bias"].csv_rows if "first_position" in r}
    assert bias["llm:gpt"]["first_position"] == 0.5 and bias["llm:gpt"]["position_consistency"] == 1.0


def test_report_sections_absent_without_judgments(project) -> None:
    from preceptor.engine.results.report import judging as stats_report

    assert stats_report.win_rates_section(project, None) is None
    assert stats_report.league_section(project, None) is None
    assert stats_report.spend_section(project, None) is None


def test_stats_command_text_and_json(project, capsys) -> None:
    _judged(project)
    root = str(project.root)
    assert main(["--project", root, "stats", "--n-boot", "50"]) == 0
    out = capsys.readouterr().out
    assert "Bradley–Terry league (expert votes, 6 comparisons)" in out
    assert "Win rates" in out and "expert:ann ~ llm:gpt" in out and "Position bias" in out
    assert main(["--project", root, "stats", "--json", "--n-boot", "0", "--judge", "llm", "--split", "all"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_votes"] == 8 and list(res["bradley_terry"]) == ["llm"]


def test_export_commands(project, tmp_path, capsys) -> None:
    _judged(project)
    root = str(project.root)
    out = tmp_path / "x" / "dpo.jsonl"
    assert main(["--project", root, "export", "dpo", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Wrote 2 pairs to" in text and "Considered 2 pairs; excluded: none." in text
    assert "6 judged pairs in other splits were left out." in text
    assert main(["--project", root, "export", "dpo", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["--project", root, "export", "dpo", str(out), "--force", "--style", "conversational", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2
    assert main(["--project", root, "export", "dpo", str(tmp_path / "v.jsonl"), "--split", "test"]) == 2
    err = capsys.readouterr().err
    assert "Error: Empty export" in err and "0 pairs considered" in err
    assert main(["--project", root, "export", "votes", str(tmp_path / "votes.csv")]) == 0
    assert "Wrote 16 votes" in capsys.readouterr().out
    spin = tmp_path / "spin.jsonl"  # the references of the 2 train prompts against base's answers, no votes
    assert main(["--project", root, "export", "dpo", str(spin), "--against-reference", "base"]) == 0
    text = capsys.readouterr().out
    assert "Wrote 2 pairs to" in text and "Considered 2 prompts; excluded: none." in text
    assert [json.loads(line)["rejected"][0]["content"] for line in spin.read_text().splitlines()] == ["b6", "b7"]
    assert main(["--project", root, "export", "dpo", str(tmp_path / "s2.jsonl"), "--against-reference", "base",
                 "--source", "expert"]) == 2
    assert "need no votes" in capsys.readouterr().err
