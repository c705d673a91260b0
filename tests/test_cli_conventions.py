"""CLI conventions: NO_COLOR, `-` for stdin/stdout, --json everywhere, help texts name real commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from preceptor.cli import cli, main

# Commands that print no result to parse: the two faces of the app and the interactive judging loop.
NO_RESULT = {"tui", "serve", "judge expert"}


def _commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    out: list[tuple[str, click.Command]] = []

    def walk(cmd: click.Command, path: list[str]) -> None:
        out.append((" ".join(path), cmd))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])  # type: ignore[arg-type]

    walk(cli, [])
    return out


def test_every_command_that_prints_a_result_accepts_json():
    leaves = [(p, c) for p, c in _commands() if p and not isinstance(c, click.Group)]
    assert len(leaves) > 40
    missing = [p for p, c in leaves if p not in NO_RESULT and not any("--json" in o.opts for o in c.params)]
    assert missing == []


def test_no_help_text_names_a_command_that_does_not_exist():
    commands = {p for p, _ in _commands() if p}
    groups = {p for p, c in _commands() if p and isinstance(c, click.Group)}
    ctx = click.Context(cli)
    named: list[tuple[str, str]] = []
    for path, cmd in _commands():
        text = cmd.get_help(click.Context(cmd, info_name=path or "preceptor", parent=ctx))
        text += " ".join(str(o.help or "") for o in cmd.params if isinstance(o, click.Option))
        for m in re.finditer(r"`preceptor ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", " ".join(text.split())):
            first, second = m.group(1), m.group(2)
            name = f"{first} {second}" if first in groups and second else first
            named.append((path or "preceptor", name))
    assert named, "the help texts name some commands"
    assert [(where, n) for where, n in named if n not in commands] == []


def test_no_color_under_a_terminal_prints_no_escape_sequence(tmp_path):
    import pty

    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "TERM": "xterm-256color"}
    env.pop("FORCE_COLOR", None)

    def run(extra: dict[str, str]) -> bytes:
        pid, fd = pty.fork()
        if pid == 0:  # the child: stdout and stderr are the pseudo-terminal
            os.chdir(tmp_path)
            os.execve(sys.executable, [sys.executable, "-m", "preceptor", "import", "missing.csv"], {**env, **extra})
        chunks = []
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        os.waitpid(pid, 0)
        return b"".join(chunks)

    assert main(["init", str(tmp_path)]) == 0
    out = run({})
    assert b"Error:" in out and b"missing.csv" in out
    assert b"\x1b" not in out
    env.pop("NO_COLOR")
    assert b"\x1b[" in run({}), "without NO_COLOR the error is coloured on a terminal"


def test_import_dash_reads_stdin_with_a_format(tmp_path):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    csv = "prompt,reference\nWhat is CYP3A4?,an enzyme\nExplain warfarin,an anticoagulant\n"
    r = subprocess.run([sys.executable, "-m", "preceptor", "import", "-", "--format", "csv", "--project", str(proj), "--json"],
                       input=csv, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["imported"] == 2 and summary["collection"] == "stdin"
    r = subprocess.run([sys.executable, "-m", "preceptor", "import", "-", "--project", str(proj)],
                       input=csv, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "Error: Format needed for stdin" in r.stderr and "Add --format csv|tsv|jsonl|json." in r.stderr


def test_dash_as_an_export_target_writes_to_stdout(tmp_path, capsysbinary):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    capsysbinary.readouterr()
    assert main(["export", "votes", "-", "--format", "jsonl", "--project", str(proj)]) == 0
    cap = capsysbinary.readouterr()
    assert cap.out == b"" and b"Wrote 0 votes to stdout" in cap.err
    assert not (proj / "-").exists() and not Path("-").exists()
    assert main(["export", "votes", "-", "--format", "csv", "--project", str(proj)]) == 0
    header = capsysbinary.readouterr().out.decode().splitlines()[0]
    assert header.startswith("judgment_id") or "verdict" in header
    assert main(["export", "dpo", "-", "--format", "hf", "--project", str(proj)]) == 2


def test_status_lists_the_default_systems(tmp_path, capsys):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    capsys.readouterr()
    assert main(["status", "--project", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "Systems: none yet" not in out
    assert main(["systems", "list", "--json", "--project", str(proj)]) == 0
    listed = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert main(["status", "--json", "--project", str(proj)]) == 0
    assert {s["name"] for s in json.loads(capsys.readouterr().out)["systems"]} == listed and len(listed) == 2


def test_tables_print_user_text_whole_and_verbatim(capsys):
    from preceptor.cli.common import table

    name = "base-annotator1 ~ imported-with-a-long-name-that-does-not-fit-in-forty-columns"
    text = table([[name, "[bold]not markup[/bold]", 3]], ["system", "note", "n"])
    assert name in text and "[bold]not markup[/bold]" in text and "\x1b" not in text
    assert "…" not in text


@pytest.mark.parametrize("args", [["init"], ["backup", "b.db"], ["experts", "add", "Alice"], ["settings"]])
def test_json_results_parse(tmp_path, capsys, args):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    capsys.readouterr()
    extra = [str(tmp_path / a) if a.endswith(".db") else a for a in args]
    if args == ["init"]:
        extra = ["init", str(proj)]
    assert main([*extra, "--json", "--project", str(proj)] if args != ["init"] else [*extra, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_format_is_only_for_stdin(tmp_path, capsys):
    proj = tmp_path / "p"
    assert main(["init", str(proj)]) == 0
    f = tmp_path / "items.csv"
    f.write_text("prompt\nWhat is CYP3A4?\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["import", str(f), "--format", "csv", "--project", str(proj)]) == 2
    assert "--format is for stdin (FILE -)" in capsys.readouterr().err
