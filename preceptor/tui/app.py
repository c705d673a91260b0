"""The preceptor terminal app.

``PreceptorApp(project)`` opens on the dashboard (or straight on the Judge screen for
``preceptor judge expert``). Screens are modes created on first use, so start-up only
builds the screen that is shown. Every engine failure ends up in :meth:`show_error`.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from preceptor.errors import PreceptorError
from preceptor.project import Project
from preceptor.tui.context import ShowError, UiContext

log = logging.getLogger("preceptor.tui")

# (mode, title, key, what it is for)
SCREENS: list[tuple[str, str, str, str]] = [
    ("dashboard", "Dashboard", "f1", "Prompts, systems, runs, judging progress and latest figures"),
    ("judge", "Judge", "f2", "Compare answers A and B, blind"),
    ("data", "Data", "f3", "Browse and search prompts and outputs"),
    ("train", "Generate / Train", "f4", "Launch generation and training runs, watch them"),
    ("results", "Results", "f5", "Win rates, Bradley-Terry, agreement, bias; export a report"),
    ("export", "Export", "f6", "DPO export with a live preview of counts"),
    ("review", "Review", "f7", "Team lead: who voted what, LLM and metric verdicts, disagreements first"),
]


def _dashboard() -> Screen:
    from preceptor.tui.screens.dashboard import DashboardScreen

    return DashboardScreen()


def _judge() -> Screen:
    from preceptor.tui.screens.judge import JudgeScreen

    return JudgeScreen()


def _data() -> Screen:
    from preceptor.tui.screens.data import DataScreen

    return DataScreen()


def _train() -> Screen:
    from preceptor.tui.screens.train import TrainScreen

    return TrainScreen()


def _results() -> Screen:
    from preceptor.tui.screens.results import ResultsScreen

    return ResultsScreen()


def _review() -> Screen:
    from preceptor.tui.screens.review import ReviewScreen

    return ReviewScreen()


def _export() -> Screen:
    from preceptor.tui.screens.export import ExportScreen

    return ExportScreen()


class PreceptorApp(App[None]):
    """The terminal app over one project."""

    CSS_PATH = "app.tcss"
    TITLE = "preceptor"
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    MODES = {
        "dashboard": _dashboard,
        "judge": _judge,
        "data": _data,
        "train": _train,
        "results": _results,
        "export": _export,
        "review": _review,
    }
    BINDINGS = [
        *[Binding(key, f"app.switch_mode('{mode}')", title, show=True, priority=True) for mode, title, key, _ in SCREENS],
        Binding("question_mark", "app.screen_keys", "Keys", key_display="?", show=False),  # screens may show their own
        Binding("ctrl+t", "app.toggle_theme", "Light/dark", show=False),
        Binding("ctrl+q", "app.quit", "Quit", show=True, priority=True),
    ]

    def __init__(self, project: Project, *, start: str = "dashboard", expert: str | None = None,
                 watch_run: int | None = None, judge_only: bool = False) -> None:
        """``judge_only`` (served with an expert's personal token): only the Judge screen, as
        ``expert``, who cannot be switched."""
        super().__init__()
        self.ctx = UiContext(project, expert=expert, watch_run=watch_run, expert_locked=judge_only and bool(expert))
        self.judge_only = judge_only
        self.start_mode = "judge" if judge_only else start
        self.errors: list[BaseException] = []
        self.sub_title = str(getattr(project.settings, "name", "") or project.root.name)

    @property
    def project(self) -> Project:
        return self.ctx.project

    # -- lifecycle ----------------------------------------------------------------------
    def on_mount(self) -> None:
        self.switch_mode(self.start_mode if self.start_mode in self.MODES else "dashboard")

    def switch_mode(self, mode: str) -> Any:
        if self.judge_only and mode != "judge":
            self.notify("This session judges only: other screens are for the team lead.", severity="warning")
            return None
        return super().switch_mode(mode)

    # -- errors: the one place --------------------------------------------------------
    def on_show_error(self, msg: ShowError) -> None:
        self.show_error(msg.error)

    def show_error(self, exc: BaseException) -> None:
        """Show any failure as a titled modal with the hint; the app keeps running."""
        self.errors.append(exc)
        if isinstance(exc, PreceptorError):
            title, message, hint = exc.title, exc.message, exc.hint
        else:
            title = "Unexpected error"
            message = f"{type(exc).__name__}: {exc}"
            where = self._log_traceback(exc)
            hint = f"This is a bug in preceptor. The traceback is in {where}." if where else "This is a bug in preceptor."
        from preceptor.tui.widgets.dialogs import ErrorModal

        self.push_screen(ErrorModal(title, message, hint))

    def _log_traceback(self, exc: BaseException) -> Path | None:
        try:
            path = Path(self.project.root) / "logs" / "tui-errors.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + "\n")
            return path
        except OSError:
            return None

    # -- actions ------------------------------------------------------------------------
    def action_screen_keys(self) -> None:
        """``?`` on any screen: the keys of the screen shown, then the app's own."""
        from preceptor.tui.widgets.dialogs import TextModal

        screen = self.screen
        rows = ["| key | what it does |", "|---|---|"]
        for binding in [*getattr(screen, "BINDINGS", []), *self.BINDINGS]:
            if isinstance(binding, Binding) and binding.description:
                key = binding.key_display or binding.key
                rows.append(f"| `{key}` | {binding.description} |")
        rows.append("| `ctrl+p` | command palette: every action by name |")
        self.push_screen(TextModal(f"Keys: {getattr(screen, 'TITLE', None) or type(screen).__name__}", "\n".join(rows)))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for mode, title, key, helptext in SCREENS:
            if self.judge_only and mode != "judge":
                continue
            yield SystemCommand(f"Go to {title}", f"{helptext} ({key.upper()})", self._switcher(mode))
        yield SystemCommand("Toggle light / dark theme", "Switch between the light and dark themes (Ctrl+T)",
                            self.action_toggle_theme)
        # the current screen's own actions (vote, undo, launch, export ...)
        for binding in getattr(screen, "BINDINGS", []):
            if not isinstance(binding, Binding) or not binding.description:
                continue
            yield SystemCommand(binding.description, f"key: {binding.key}", self._runner(screen, binding.action))
        yield from super().get_system_commands(screen)

    def _switcher(self, mode: str) -> Callable[[], None]:
        return lambda: self.switch_mode(mode)

    def _runner(self, screen: Screen, action: str) -> Callable[[], Any]:
        async def run() -> None:
            await screen.run_action(action)

        return run


def run_app(project: Project, **kwargs: Any) -> None:
    PreceptorApp(project, **kwargs).run()
