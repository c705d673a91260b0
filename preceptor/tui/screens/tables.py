"""Turning engine results (JSON-able dicts) into Rich tables. Presentation only."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from preceptor.terminal import clean


def is_figure(value: Any) -> bool:
    return isinstance(value, dict) and "value" in value and "n" in value


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if is_figure(value):
        if value.get("value") is None:
            return str(value.get("note") or "n too small")
        ci = value.get("ci")
        text = fmt(float(value["value"]))
        if ci:
            text += f" [{fmt(float(ci[0]))}, {fmt(float(ci[1]))}]"
        return text + f" n={value['n']}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        return f"[{fmt(float(value[0]))}, {fmt(float(value[1]))}]"
    if isinstance(value, dict):
        return ", ".join(f"{clean(k)}={fmt(v)}" for k, v in value.items())
    return clean(value)


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
        if value and all(isinstance(v, dict) and isinstance(v.get("rows"), list) for v in value.values()):
            parts: list[RenderableType] = []
            for k, v in value.items():
                parts.append(rows_table(f"{title}: {k}", v["rows"]) if v["rows"] else Text(f"{title}: {k}: none"))
                if v.get("note"):
                    parts.append(Text(str(v["note"]), style="italic"))
            return Group(*parts)
        if value and all(isinstance(v, list) for v in value.values()):
            return Group(*[render_any(f"{title}: {k.replace('_', ' ')}", v) for k, v in value.items()])
        if value and all(isinstance(v, dict) for v in value.values()):
            return rows_table(title, [{"": k, **v} for k, v in value.items()])
        return kv_table(title, value)
    if value is None or (isinstance(value, (list, dict)) and not value):
        return Text(f"{title}: none yet", style="italic")
    return Text(f"{title}: {fmt(value)}")


def win_rate_table(rows: list[dict[str, Any]]) -> RenderableType:
    """Win rates, compact: one line per judge and pair of systems."""
    if not rows:
        return Text("Win rates: none yet", style="italic")
    out = []
    for r in rows:
        out.append({
            "judge": r.get("judge"),
            "systems": f"{r.get('system_1')} vs {r.get('system_2')}",
            "W-L-T": f"{r.get('wins_1', 0)}-{r.get('wins_2', 0)}-{r.get('ties', 0)}",
            "both bad": r.get("both_bad"),
            "win rate (95% CI)": fmt(r.get("win_rate_1")),
            **({"task": r["task"]} if r.get("task") else {}),
        })
    return rows_table("Win rates (first system vs second)", out)


def bt_tables(league: dict[str, Any]) -> list[RenderableType]:
    """The Bradley-Terry league per judge kind."""
    parts: list[RenderableType] = []
    for judge, table in league.items():
        if not isinstance(table, dict):
            continue
        rows = [{"rank": r.get("rank"), "system": r.get("system"), "wins": r.get("wins"),
                 "strength": fmt(r.get("strength")), "Elo": fmt(r.get("elo"))} for r in table.get("rows") or []]
        parts.append(rows_table(f"Bradley–Terry league ({judge})", rows) if rows else Text(f"Bradley–Terry ({judge}): none"))
        if table.get("note"):
            parts.append(Text(str(table["note"]), style="italic"))
    return parts
