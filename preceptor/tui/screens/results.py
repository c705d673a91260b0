"""Results: what the loop gained (with each figure's lineage one key away), win rates with CIs,
Bradley–Terry league, agreement, judge bias; report export."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Label, Static

from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.screens.tables import bt_tables, render_any, win_rate_table

SECTIONS = [
    ("win_rates", "Win rates (with 95% CI)"),
    ("bradley_terry", "Bradley–Terry league"),
    ("agreement", "Agreement between judges"),
    ("bias", "Judge bias (position, length)"),
    ("metric_vs_expert", "Metrics vs expert verdicts"),
]


class StatsReady(Message):
    def __init__(self, stats: dict[str, Any]) -> None:
        super().__init__()
        self.stats = stats


class GainsReady(Message):
    def __init__(self, gains: dict[str, Any]) -> None:
        super().__init__()
        self.gains = gains


class LineageScreen(ModalScreen[None]):
    """The lineage behind one gains figure: run, data, settings, parent."""

    BINDINGS = [Binding("escape,q,l", "close", "Close")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.body = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(Text(self.title_text, style="bold"))
            with VerticalScroll(id="lineage-body"):
                yield Static(Text(self.body), id="lineage-text")
            yield Static("Escape to close.", classes="dim")

    def action_close(self) -> None:
        self.dismiss(None)


class ReportWritten(Message):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


def _forest_line(label: str, value: float | None, ci: list[float] | None, n: int, lo: float, hi: float,
                 ref: float, width: int = 32, fmt: str = "{:.0%}") -> Text:
    """One row of a text forest plot: the CI as ─, the value as ●, the reference as ┊, then n."""
    cells = [" "] * width

    def pos(v: float) -> int:
        return int(round((min(max(v, lo), hi) - lo) / (hi - lo) * (width - 1))) if hi > lo else 0

    cells[pos(ref)] = "┊"
    if ci is not None:
        for i in range(pos(ci[0]), pos(ci[1]) + 1):
            cells[i] = "─"
    line = Text(f"{label[:34]:<34} ")
    bar = "".join(cells)
    if value is not None:
        k = pos(value)
        line.append(bar[:k], style="cyan")
        line.append("●", style="bold red")
        line.append(bar[k + 1:], style="cyan")
        line.append(" " + fmt.format(value))
    else:
        line.append(bar, style="dim")
        line.append(" n too small", style="dim")
    line.append(f"  n={n}", style="dim")
    return line


def forest_text(stats: dict[str, Any]) -> Group | None:
    """Win-rate bars (0–100 %, ┊ at 50 %) and a Bradley–Terry forest plot (Elo, ┊ at 1000), with n."""
    lines: list[Text] = []
    rates = stats.get("win_rates") or []
    if rates:
        lines.append(Text("Win rate of system 1 (95% CI; ┊ = 50%)", style="bold"))
        for r in rates:
            w = r["win_rate_1"]
            lines.append(_forest_line(f"{r['judge']}: {r['system_1']} vs {r['system_2']}", w.get("value"), w.get("ci"),
                                      int(w.get("n") or 0), 0.0, 1.0, 0.5))
    leagues = stats.get("bradley_terry") or {}
    rows = [(kind, r) for kind, lg in leagues.items() for r in lg.get("rows", [])]
    if rows:
        vals = [v for _, r in rows for v in [r["elo"].get("value"), *(r["elo"].get("ci") or [])] if v is not None]
        lo, hi = min([*vals, 1000.0]), max([*vals, 1000.0])
        lines.append(Text("Bradley–Terry ratings, Elo (95% CI; ┊ = 1000, the average)", style="bold"))
        for kind, r in rows:
            e = r["elo"]
            lines.append(_forest_line(f"{kind}: {r['system']}", e.get("value"), e.get("ci"), int(r.get("comparisons") or 0),
                                      lo, hi, 1000.0, fmt="{:.0f}"))
    return Group(*lines, Text("")) if lines else None


class ResultsScreen(EngineScreen):
    BINDINGS = [
        Binding("r", "refresh_stats", "Recompute"),
        Binding("s", "next_split", "Split"),
        Binding("l", "lineage", "Lineage of the figure"),
        Binding("m", "report('md')", "Report (md)"),
        Binding("w", "report('html')", "Report (html)"),
        Binding("v", "report('csv')", "Report (csv)"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="results-body"):
            yield Static(Text("What the loop gained: computing…"), id="gains-note")
            yield DataTable(id="gains-table", cursor_type="row", zebra_stripes=True)
            yield Static(Text("Computing statistics…"), id="results")
        yield Footer(compact=True)

    SPLITS = ("val,test", "all", "train", "val", "test")

    def on_mount(self) -> None:
        self.split = self.SPLITS[0]
        self.action_refresh_stats()

    def action_next_split(self) -> None:
        """Switch the selection's split (val,test → all → train → val → test) and recompute."""
        self.split = self.SPLITS[(self.SPLITS.index(self.split) + 1) % len(self.SPLITS)]
        self.notify(f"Split: {self.split}")
        self.action_refresh_stats()

    def action_refresh_stats(self) -> None:
        self.query_one("#results", Static).update(Text("Computing statistics…"))
        self.gains_rows: list[dict[str, Any]] = []
        self.compute()
        self.compute_gains()

    @work(thread=True, exclusive=True, exit_on_error=False, group="gains")
    def compute_gains(self) -> None:
        from preceptor.engine.results import gains as gains_mod

        project = self.open_project()
        try:
            split = self.split if self.split in ("train", "val", "test") else "val"
            self.post_message(GainsReady(gains_mod.compute(project, gains_mod.GainsOptions(split=split))))
        finally:
            project.close()

    @guarded
    def on_gains_ready(self, msg: GainsReady) -> None:
        from preceptor.engine.results import gains as gains_mod

        res = msg.gains
        note = self.query_one("#gains-note", Static)
        table = self.query_one("#gains-table", DataTable)
        table.clear(columns=True)
        self.gains_rows = list(res.get("rows") or [])
        if not self.gains_rows:
            note.update(Text(f"What the loop gained: {res.get('note') or 'nothing to compare'}", style="italic"))
            table.display = False
            return
        table.display = True
        note.update(Text(f"What the loop gained (split {res.get('split')}, vs gold; win rate by {res.get('win_metric')}, "
                         "ties half, 95% CIs) — press l on a row for its lineage", style="bold"))
        head, rows = gains_mod.table_rows(res)
        table.add_columns(*head)
        for r, cells in zip(self.gains_rows, rows, strict=True):
            bad = r["regression"] or r["regressed_metrics"]
            table.add_row(*[Text(c, style="red") if bad else c for c in cells])

    @guarded
    def action_lineage(self) -> None:
        from preceptor.engine.results import gains as gains_mod

        rows = getattr(self, "gains_rows", [])
        if not rows:
            self.notify("No gains figures yet.")
            return
        table = self.query_one("#gains-table", DataTable)
        r = rows[min(max(table.cursor_row, 0), len(rows) - 1)]
        self.app.push_screen(LineageScreen(f"Lineage: {r['child']} vs {r['other']} ({r['relation']})",
                                           gains_mod.lineage_text(r["lineage"])))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "gains-table":
            self.action_lineage()

    @work(thread=True, exclusive=True, exit_on_error=False, group="results")
    def compute(self) -> None:
        from preceptor.engine.results import (
            stats as stats_mod,  # numpy / scipy: loaded when first needed
        )

        project = self.open_project()
        try:
            self.post_message(StatsReady(stats_mod.compute(project, stats_mod.StatsOptions(split=self.split))))
        finally:
            project.close()

    @guarded
    def on_stats_ready(self, msg: StatsReady) -> None:
        parts: list[Any] = []
        stats = msg.stats
        if stats.get("fallback_note"):
            parts.append(Text(str(stats["fallback_note"]).capitalize() + ".", style="italic"))
        if stats.get("note"):
            parts.append(Text(str(stats["note"]).capitalize() + ".", style="italic"))
            if opts_split_hint := stats.get("hint"):
                parts.append(Text(f"{opts_split_hint} — or press s to switch the split here.", style="yellow"))
        opts = stats.get("options") or {}
        parts.append(Text(f"{stats.get('n_votes', 0)} votes on {stats.get('n_pairs', 0)} pairs "
                          f"({stats.get('n_prompts', 0)} prompts); split {opts.get('split', '?')} (s switches), "
                          f"judges {opts.get('judge', '?')}, 95% CIs", style="dim"))
        charts = forest_text(stats)
        if charts is not None:
            parts.append(charts)
        stop = stats.get("stopping") or {}
        if stop.get("summary") or stop.get("note"):
            parts.append(Text("Stopping signal: " + str(stop.get("summary") or stop.get("note")),
                              style="bold green" if stop.get("settled") else "bold yellow"))
        for key, title in SECTIONS:
            if key not in stats:
                continue
            if key == "win_rates":
                parts.append(win_rate_table(stats[key]))
            elif key == "bradley_terry":
                parts.extend(bt_tables(stats[key]))
            else:
                parts.append(render_any(title, stats[key]))
            parts.append(Text(""))
        for key, value in msg.stats.items():
            if key not in dict(SECTIONS) and key not in ("options", "note", "n_votes", "n_repeat_votes", "n_pairs", "n_prompts", "judges", "stopping"):
                parts.append(render_any(key.replace("_", " ").capitalize(), value))
        self.query_one("#results", Static).update(Group(*parts) if parts else Text("No figures yet."))

    def worker_failed(self, worker: Any) -> None:
        if worker.group == "gains":
            self.query_one("#gains-note", Static).update(Text(f"Gains unavailable: {worker.error}", style="italic"))
        if worker.group == "results":
            self.query_one("#results", Static).update(Text(f"Statistics unavailable: {worker.error}", style="italic"))

    def action_report(self, fmt: str) -> None:
        self.notify(f"Writing the {fmt} report…")
        self.write_report(fmt)

    @work(thread=True, exclusive=True, exit_on_error=False, group="report")
    def write_report(self, fmt: str) -> None:
        from preceptor.engine.results import report

        project = self.open_project()
        try:
            path = report.build_report(project, fmt=fmt)
        finally:
            project.close()
        self.post_message(ReportWritten(str(path)))

    def on_report_written(self, msg: ReportWritten) -> None:
        self.notify(f"Report written: {msg.path}", timeout=10)
