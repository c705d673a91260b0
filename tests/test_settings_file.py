"""preceptor.toml keeps the user's comments and layout through every settings write (tomlkit);
`preceptor settings` lists every setting; `init` writes a commented file."""

from __future__ import annotations

import json

import pytest
import tomllib

from preceptor.cli import main
from tests.test_embed import toy_rows, write_jsonl


def _commented(proj):
    conf = proj / "preceptor.toml"
    text = conf.read_text(encoding="utf-8")
    conf.write_text(text + "\n# my note about the judge\n[judge]\nseed = 7  # keep fixed\n", encoding="utf-8")
    return conf


def test_a_comment_survives_import_pairs_stage_and_systems_add(tmp_path, capsys):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    conf = _commented(proj)
    f = write_jsonl(tmp_path / "toy.jsonl", toy_rows(4))
    assert main(["import-pairs", str(f), "--stage", "toy", "--project", str(proj)]) == 0
    text = conf.read_text(encoding="utf-8")
    assert "# my note about the judge" in text and "seed = 7  # keep fixed" in text
    assert tomllib.loads(text)["embed"]["stages"] == ["toy"]
    assert main(["systems", "add", "api", "--backend", "litellm", "--model", "openai/gpt-4o-mini",
                 "--param", "temperature=0", "--project", str(proj)]) == 0
    assert main(["systems", "add", "api", "--backend", "litellm", "--model", "openai/gpt-4o",
                 "--project", str(proj)]) == 0
    text = conf.read_text(encoding="utf-8")
    assert "# my note about the judge" in text and "seed = 7  # keep fixed" in text
    assert "# [judge]          the LLM judge" in text  # init's own comments too
    data = tomllib.loads(text)
    # a redefinition replaces the system's table, it does not merge the old params in
    assert data["systems"]["api"] == {"role": "custom", "backend": "litellm", "model": "openai/gpt-4o"}
    assert data["judge"]["seed"] == 7 and data["project"]["name"] == "p"


def test_init_writes_a_commented_file_naming_the_main_tables(tmp_path, capsys):
    proj = tmp_path / "q"
    assert main(["init", str(proj), "--name", 'My "odd" name']) == 0
    text = (proj / "preceptor.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text) == {"project": {"name": 'My "odd" name'}}
    for table in ("[project]", "[systems.NAME]", "[generate]", "[judge]", "[eval]", "[train.sft]", "[train.dpo]", "[embed]"):
        assert table in text


def test_settings_lists_every_setting_with_default_current_and_help(tmp_path, capsys):
    from preceptor.cli.settings import SETTINGS_TABLES
    from preceptor.config import describe

    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    _commented(proj)
    capsys.readouterr()
    assert main(["settings", "--json", "--project", str(proj)]) == 0
    rows = json.loads(capsys.readouterr().out)
    expected = sum(len(describe(cls)) for _, cls in SETTINGS_TABLES)
    assert len(rows) == expected and expected > 100
    assert {r["table"] for r in rows} >= {"project", "judge", "eval", "generate", "train.sft", "train.dpo", "embed"}
    seed = next(r for r in rows if r["table"] == "judge" and r["key"] == "seed")
    assert seed["current"] == 7 and seed["set"] is True and seed["help"]
    assert all(r["help"] for r in rows), [r["key"] for r in rows if not r["help"]]
    name = next(r for r in rows if r["table"] == "project" and r["key"] == "name")
    assert name["current"] == "p" and name["default"] == ""
    assert main(["settings", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "judge" in out and "seed" in out and "max_field_chars" in out


@pytest.mark.parametrize("text, title, fragment", [
    ("[projekt]\nname = 'x'\n", "Unknown settings table", "table 'projekt' is not one preceptor reads (did you mean 'project'?)"),
    ("judge = 'x'\n", "Invalid setting", "judge = 'x' must be a table"),
    ("project = 5\n", "Invalid setting", "[project] must be a table, found int 5"),
    ("[train.sfft]\nlr = 1\n", "Unknown settings table", "'train.sfft' is not one preceptor reads (did you mean 'train.sft'?)"),
    ("[judge]\noverlap_shar = 0.2\n", "Unknown setting", "unknown key 'overlap_shar' (did you mean 'overlap_share'?)"),
])
def test_unknown_or_misplaced_settings_are_refused_with_a_suggestion(tmp_path, capsys, text, title, fragment):
    from preceptor.cli import main

    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    (root / "preceptor.toml").write_text(text)
    capsys.readouterr()
    code = main(["--project", str(root), "stats"])
    err = capsys.readouterr().err
    assert code == 2 and f"Error: {title}" in err and fragment in err and "Traceback" not in err


def test_a_folder_named_preceptor_toml_is_a_titled_error(tmp_path, capsys):
    from preceptor.cli import main

    root = tmp_path / "proj"
    root.mkdir()
    (root / "preceptor.toml").mkdir()
    code = main(["--project", str(root), "status"])
    err = capsys.readouterr().err
    assert code == 2 and "Error: Cannot read settings" in err and "is a folder" in err and "Traceback" not in err


def test_the_cheap_table_list_names_every_settings_table() -> None:
    from preceptor.engine.settings import FREE_FORM, TOP_TABLES, TRAIN_TABLES, tables

    names = [n for n, _ in tables()] + list(FREE_FORM)
    assert sorted({n.split(".")[0] for n in names}) == sorted(TOP_TABLES)
    assert sorted({n.split(".", 1)[1] for n in names if n.startswith("train.")}) == sorted(TRAIN_TABLES)
