"""The CLI's project commands: init, import, status (80 columns, --json)."""

from __future__ import annotations

import json

from preceptor.cli import main


def test_init_import_status(tmp_path, capsys):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    assert (proj / "preceptor.toml").exists() and (proj / "preceptor.db").exists()
    data = tmp_path / "data.csv"
    data.write_text("prompt,reference,drug\nExplain warfarin and aspirin,bleeding,warfarin\nWhat is CYP3A4?,an enzyme,cyp\n"
                    "Mechanism of atorvastatin?,HMG-CoA reductase inhibitor,atorvastatin\n")
    capsys.readouterr()
    assert main(["import", str(data), "--project", str(proj), "--group-col", "drug", "--val-ratio", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "Imported 3 of 3 rows into collection 'data'" in out
    assert main(["status", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "Prompts: 3" in out
    assert max(len(line) for line in out.splitlines() if str(proj) not in line) <= 80
    assert main(["--project", str(proj), "status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["prompts"]["total"] == 3
    assert st["prompts"]["train"] + st["prompts"]["val"] == 3


def test_project_from_environment(tmp_path, monkeypatch, capsys):
    proj = tmp_path / "envproj"
    assert main(["init", str(proj)]) == 0
    monkeypatch.setenv("PRECEPTOR_PROJECT", str(proj))
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["project"] == str(proj)


def test_status_outside_a_project_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert "Error: Not a preceptor project" in err and "preceptor init" in err
