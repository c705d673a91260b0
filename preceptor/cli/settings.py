"""``preceptor settings``: every setting of preceptor.toml with its default, current value and help."""

from __future__ import annotations

from typing import Any

import click

from preceptor.cli.common import echo_json, open_project, project_option, table


def settings_tables() -> list[tuple[str, type]]:
    """(table, settings dataclass) for every table preceptor.toml may hold, in file order."""
    from preceptor.engine.settings import tables

    return tables()


def __getattr__(name: str) -> Any:  # SETTINGS_TABLES, computed on first use (the engine modules are lazy)
    if name == "SETTINGS_TABLES":
        return settings_tables()
    raise AttributeError(name)


def _text(value: Any) -> str:
    from preceptor import config as cfg

    if value is None:
        return "-"
    return cfg.format_value(value) if isinstance(value, (list, dict, bool)) else str(value)


@click.command("settings")
@click.argument("table_name", required=False, metavar="[TABLE]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@project_option
def settings_cmd(project_dir: str | None, table_name: str | None, as_json: bool) -> None:
    """Every setting of preceptor.toml: table, key, default, current value and help (TABLE: only that one)."""
    from preceptor import config as cfg
    from preceptor.errors import PreceptorError

    tables = settings_tables()
    if table_name is not None:
        known = [t for t, _ in tables]
        if table_name not in known:
            raise PreceptorError("Unknown settings table", f"no table [{table_name}]", f"Known tables: {', '.join(known)}.")
        tables = [(t, c) for t, c in tables if t == table_name]
    with open_project(project_dir) as project:
        rows = []
        for name, cls in tables:
            current = project.table(name)
            for key, default, help_text in cfg.describe(cls):
                rows.append({"table": name, "key": key, "default": default, "current": current.get(key, default),
                             "set": key in current, "help": help_text})
    if as_json:
        echo_json(rows)
        return
    click.echo(table([[r["table"], r["key"], _text(r["default"]), _text(r["current"]) + (" *" if r["set"] else ""),
                       r["help"]] for r in rows], ["table", "key", "default", "current", "help"]))
    click.echo("\n* set in preceptor.toml. [train.sft] and [train.dpo] start from their preset (--preset).")
