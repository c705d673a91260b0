"""Dashboard: prompts per split, systems, runs, judging progress, latest figures."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static

from preceptor.errors import PreceptorError
from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.screens.tables import bt_tables, rows_table, win_rate_table


class DashboardData(Message):
    def __init__(self, status: dict[str, Any], experts: list[dict[str, Any]] | None, stats: dict[str, Any] | None,
                 stats_note: str, pairs: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.pairs = pairs or []
        self.status = status
        self.experts = experts
        self.stats = stats
        self.stats_note = stats_note


class DashboardStats(Message):
    def __init__(self, stats: dict[str, Any] | None, note: str) -> None:
        super().__init__()
        self.stats = stats
        self.note = note


def gather(project: Any) -> DashboardData:
    """Counts (fast): project status, judging progress per expert and per system pair."""
    from preceptor.engine.views import judging_progress, project_status

    progress = judging_progress(project)
    return DashboardData(project_status(project), progress["experts"], None, "", progress["pairs"])


def latest_figures(project: Any, status: dict[str, Any]) -> DashboardStats:
    """Win rates and the Bradley-Terry league (slower: bootstrap CIs)."""
    if not status.get("judgments"):
        return DashboardStats(None, "No judgments yet: figures appear once pairs are judged.")
    from preceptor.engine.results import (
        stats as stats_mod,  # numpy / scipy: loaded when first needed
    )

    try:
        return DashboardStats(stats_mod.compute(project, stats_mod.StatsOptions(n_boot=200)), "")
    except PreceptorError as exc:
        return DashboardStats(None, f"{exc.title}: {exc.message}")


class DashboardScreen(EngineScreen):
    BINDINGS = [Binding("r", "refresh_data", "Refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="dash-body"):
            yield Static("", id="dash-path", classes="dim")
            with Container(id="dash-grid"):
                yield Static(Text("Loading…"), id="dash-prompts", classes="panel")
                yield Static("", id="dash-systems", classes="panel")
                yield Static("", id="dash-runs", classes="panel")
                yield Static("", id="dash-judging", classes="panel")
            yield Static("", id="dash-figures", classes="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.action_refresh_data()

    def on_screen_resume(self) -> None:
        self.action_refresh_data()

    def action_refresh_data(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="dashboard")
    def load(self) -> None:
        project = self.open_project()
        try:
            data = gather(project)
            self.post_message(data)
            self.post_message(latest_figures(project, data.status))
        finally:
            project.close()

    @guarded
    def on_dashboard_data(self, msg: DashboardData) -> None:
        st = msg.status
        p = st["prompts"]
        self.query_one("#dash-path", Static).update(Text(f"Project {st['name']}: {st['project']}"))
        self.query_one("#dash-prompts", Static).update(Group(
            rows_table("Prompts", [{"split": s, "prompts": p[s]} for s in ("train", "val", "test")]
                       + [{"split": "total", "prompts": p["total"]}]),
        ))
        systems = [{"system": s["name"], "role": s["role"], "backend": s["backend"], "outputs": s["outputs"],
                    "failed": s["failed"]} for s in st["systems"]]
        self.query_one("#dash-systems", Static).update(
            rows_table("Systems", systems) if systems else Text("Systems: none yet", style="italic"))
        runs = st.get("runs") or {}
        self.query_one("#dash-runs", Static).update(
            rows_table("Runs", [{"status": k, "runs": v} for k, v in runs.items()]) if runs
            else Text("Runs: none yet", style="italic"))
        judged = st.get("judgments") or {}
        parts: list[Any] = [rows_table("Judging", [{"pairs": st.get("pairs", 0), **{f"{k} votes": v for k, v in judged.items()}}])]
        if msg.pairs:
            rows = [{"systems": f"{p.get('system_a')} vs {p.get('system_b')}", "split": p.get("split"),
                     "done": f"{p.get('complete') or 0} of {p.get('pairs')}"} for p in msg.pairs]
            if len(rows) > 1:
                done = sum(p.get("complete") or 0 for p in msg.pairs)
                rows.append({"systems": "all", "split": "", "done": f"{done} of {sum(p.get('pairs') or 0 for p in msg.pairs)}"})
            parts.append(rows_table("Pairs judged by experts", rows))
        if msg.experts:
            parts.append(rows_table("Experts", msg.experts))
        self.query_one("#dash-judging", Static).update(Group(*parts))
        self.query_one("#dash-figures", Static).update(Text("Latest figures: computing…", style="italic"))

    @guarded
    def on_dashboard_stats(self, msg: DashboardStats) -> None:
        figures: list[Any] = []
        if msg.stats:
            figures.append(win_rate_table(msg.stats.get("win_rates") or []))
            figures.extend(bt_tables(msg.stats.get("bradley_terry") or {}))
        if msg.note:
            figures.append(Text(msg.note, style="italic"))
        self.query_one("#dash-figures", Static).update(Group(*figures) if figures else Text(""))
