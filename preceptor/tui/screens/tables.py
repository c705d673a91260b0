"""Turning engine results (JSON-able dicts) into Rich tables. Presentation only."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{fmt(float(value[0]))}, {fmt(float(value[1]))}]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    return str(value)


def rows_table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None, limit: int = 50) -> Table:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    table = Table(title=title, title_justify="left", expand=False, show_edge=False, pad_edge=False)
    for c in columns:
        table.add_column(c.replace("_", " "), overflow="fold")
    for r in rows[:limit]:
        table.add_row(*[fmt(r.get(c)) for c in columns])
    if len(rows) > limit:
        table.caption = f"{len(rows) - limit} more rows not shown"
    return table


def kv_table(title: str, data: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, show_edge=False, pad_edge=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for k, v in data.items():
        table.add_row(str(k).replace("_", " "), fmt(v))
    return table


def render_any(title: str, value: Any) -> RenderableType:
    """A list of dicts becomes a table; a dict of dicts a table per key; a dict a key/value table."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return rows_table(title, value)
    if isinstance(value, dict):
        if value and all(isinstance(v, list) and v and all(isinstance(x, dict) for x in v) for v in value.values()):
            return Group(*[rows_table(f"{title}: {k}", v) for k, v in value.items()])
        if value and all(isinstance(v, dict) for v in value.values()):
            return rows_table(title, [{"": k, **v} for k, v in value.items()])
        return kv_table(title, value)
    if value in (None, [], {}):
        return Text(f"{title}: none yet", style="italic")
    return Text(f"{title}: {fmt(value)}")
