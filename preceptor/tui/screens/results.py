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


class ResultsScreen(EngineScreen):
    BINDINGS = [
        Binding("r", "refresh_stats", "Recompute"),
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

    def on_mount(self) -> None:
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
            self.post_message(GainsReady(gains_mod.compute(project, gains_mod.GainsOptions(split="val"))))
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
            self.post_message(StatsReady(stats_mod.compute(project, stats_mod.StatsOptions())))
        finally:
            project.close()

    @guarded
    def on_stats_ready(self, msg: StatsReady) -> None:
        parts: list[Any] = []
        stats = msg.stats
        if stats.get("note"):
            parts.append(Text(str(stats["note"]), style="italic"))
        opts = stats.get("options") or {}
        parts.append(Text(f"{stats.get('n_votes', 0)} votes on {stats.get('n_pairs', 0)} pairs "
                          f"({stats.get('n_prompts', 0)} prompts); split {opts.get('split', '?')}, "
                          f"judges {opts.get('judge', '?')}, 95% CIs", style="dim"))
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
