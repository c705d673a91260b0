"""Results: win rates with CIs, Bradley–Terry league, agreement, judge bias; report export."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static

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


class ReportWritten(Message):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


class ResultsScreen(EngineScreen):
    BINDINGS = [
        Binding("r", "refresh_stats", "Recompute"),
        Binding("m", "report('md')", "Report (md)"),
        Binding("w", "report('html')", "Report (html)"),
        Binding("v", "report('csv')", "Report (csv)"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="results-body"):
            yield Static(Text("Computing statistics…"), id="results")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_refresh_stats()

    def action_refresh_stats(self) -> None:
        self.query_one("#results", Static).update(Text("Computing statistics…"))
        self.compute()

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
