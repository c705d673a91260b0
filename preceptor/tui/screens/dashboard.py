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
from preceptor.tui.screens.tables import render_any, rows_table


class DashboardData(Message):
    def __init__(self, status: dict[str, Any], experts: list[dict[str, Any]] | None, stats: dict[str, Any] | None,
                 stats_note: str) -> None:
        super().__init__()
        self.status = status
        self.experts = experts
        self.stats = stats
        self.stats_note = stats_note


def gather(project: Any, with_stats: bool = True) -> DashboardData:
    """Engine calls only: project status, per-expert progress, a stats summary."""
    from preceptor.engine.status import project_status

    status = project_status(project)
    experts = None
    try:
        from preceptor.engine import judge

        fn = getattr(judge, "expert_progress", None)
        if fn is not None:
            experts = fn(project)
    except ImportError:
        pass
    stats, note = None, ""
    if with_stats and status.get("judgments"):
        try:
            from preceptor.engine import stats as stats_mod

            stats = stats_mod.compute(project, stats_mod.StatsOptions(n_boot=200))
        except ImportError:
            note = "Statistics are not available in this installation yet."
        except PreceptorError as exc:
            note = f"{exc.title}: {exc.message}"
    elif with_stats:
        note = "No judgments yet: figures appear once pairs are judged."
    return DashboardData(status, experts, stats, note)


class DashboardScreen(EngineScreen):
    BINDINGS = [Binding("r", "refresh_data", "Refresh")]

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="dash-body"):
            with Container(id="dash-grid"):
                yield Static(Text("Loading…"), id="dash-prompts", classes="panel")
                yield Static("", id="dash-systems", classes="panel")
                yield Static("", id="dash-runs", classes="panel")
                yield Static("", id="dash-judging", classes="panel")
            yield Static("", id="dash-figures", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh_data()

    def on_screen_resume(self) -> None:
        self.action_refresh_data()

    def action_refresh_data(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="dashboard")
    def load(self) -> None:
        project = self.papp.open_project()
        try:
            self.post_message(gather(project))
        finally:
            project.close()

    @guarded
    def on_dashboard_data(self, msg: DashboardData) -> None:
        st = msg.status
        p = st["prompts"]
        self.query_one("#dash-prompts", Static).update(Group(
            Text(f"Project {st['name']}", style="bold"),
            Text(str(st["project"]), style="dim"),
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
        if msg.experts:
            parts.append(render_any("Experts", msg.experts))
        self.query_one("#dash-judging", Static).update(Group(*parts))
        figures: list[Any] = []
        if msg.stats:
            for key, title in (("win_rates", "Win rates"), ("bradley_terry", "Bradley–Terry")):
                if key in msg.stats:
                    figures.append(render_any(title, msg.stats[key]))
        if msg.stats_note:
            figures.append(Text(msg.stats_note, style="italic"))
        self.query_one("#dash-figures", Static).update(Group(*figures) if figures else Text(""))
