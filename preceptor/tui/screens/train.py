"""Generate / Train: launch generation and training runs from forms, watch them live.

Training runs are launched exactly as ``preceptor train`` launches them
(``preceptor.engine.train.plan``: plan, then start): each run is its own process, so closing
the app never stops it (an embedding curriculum included: each stage starts the next) and
reopening shows it still going. Generation runs in a thread worker of the app.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Footer, Header, Label, ProgressBar, RichLog, Static
from textual.worker import get_current_worker

from preceptor import config as cfg
from preceptor.engine import views
from preceptor.engine.embed.settings import EmbedSettings, load_settings
from preceptor.engine.events import Done, Log, Metric, Progress
from preceptor.engine.generation.generate import GenerateOptions
from preceptor.engine.train import settings as tsettings
from preceptor.engine.train.settings import DPOSettings, SFTSettings
from preceptor.errors import Cancelled, PreceptorError
from preceptor.tui.context import ShowError
from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.widgets.dialogs import ConfirmModal
from preceptor.tui.widgets.form import SettingsForm

# kind -> (settings dataclass, title)
FORMS: dict[str, tuple[type, str]] = {
    "generate": (GenerateOptions, "Generate answers"),
    "sft": (SFTSettings, "Supervised fine-tuning (LoRA)"),
    "dpo": (DPOSettings, "DPO on judged pairs"),
    "embed": (EmbedSettings, "Embedding model curriculum"),
}
TRAINING = ("sft", "dpo", "embed")

LOSS_NAMES = ("loss", "train_loss", "train/loss")


def settings_class(kind: str) -> type:
    return FORMS[kind][0]


def current_settings(project: Any, kind: str) -> Any:
    """What the form starts from: preset, then preceptor.toml (None where there is no table)."""
    if kind in ("sft", "dpo"):
        return tsettings.resolve(project, settings_class(kind))
    if kind == "embed":
        return load_settings(project)
    return None


def build_job(project: Any, kind: str, changes: dict[str, Any]) -> Any:
    """Validate the form's changes the way the CLI validates flags (fast: settings only).

    Training kinds return the overrides for :func:`preceptor.engine.train.plan.plan`, which the
    launch worker calls (data pre-flight, launcher, command) exactly as the CLI does;
    generate returns the GenerateOptions.
    """
    where = f"{FORMS[kind][1]} form"
    if kind in ("sft", "dpo"):
        changes = dict(changes)
        preset = changes.pop("preset", None)
        tsettings.resolve(project, settings_class(kind), preset=preset, **changes)  # refuses bad values here
        return {"preset": preset, **changes}
    if kind == "embed":
        cfg.override(load_settings(project), where, **changes)
        return dict(changes)
    opts = cfg.section(GenerateOptions, {k: v for k, v in changes.items() if v is not None}, where)
    views.check_system(project, opts.system)  # an unknown system is refused here, naming the known ones
    return opts


class RunEvents(Message):
    """A batch of engine events for the run (or generation) being watched."""

    def __init__(self, key: str, events: list[Any]) -> None:
        super().__init__()
        self.key = key
        self.events = events


class RunLaunched(Message):
    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class RunsListed(Message):
    def __init__(self, runs: list[Any]) -> None:
        super().__init__()
        self.runs = runs


class RunForm(ModalScreen[Any]):
    """A form pre-filled from presets and preceptor.toml; returns what to launch, validated."""

    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "launch", "Launch")]

    def __init__(self, kind: str, cls: type, current: Any, validate: Any, choices: dict[str, list[str]] | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.choices = choices
        self.kind = kind
        self.cls = cls
        self.current = current
        self.validate = validate

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="form-dialog"):
            yield Label(Text(FORMS[self.kind][1], style="bold"))
            with VerticalScroll(id="form-body"):
                yield SettingsForm(self.cls, self.current, choices=self.choices, id="form")
            with Horizontal(classes="buttons"):
                yield Button("Launch (ctrl+s)", variant="primary", id="launch")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "launch":
            self.action_launch()
        else:
            self.action_cancel()

    def action_launch(self) -> None:
        try:
            form = self.query_one("#form", SettingsForm)
            job = self.validate(form.raw_values(changed_only=self.kind != "generate"))
        except PreceptorError as exc:
            self.app.post_message(ShowError(exc))
            return
        self.dismiss(job)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TrainScreen(EngineScreen):
    BINDINGS = [
        Binding("g", "new('generate')", "Generate"),
        Binding("n", "new('sft')", "New SFT"),
        Binding("d", "new('dpo')", "New DPO"),
        Binding("e", "new('embed')", "New embed"),
        Binding("c", "cancel_run", "Cancel run"),
        Binding("r", "resume_run", "Resume"),
        Binding("l", "list_runs", "Reload", show=False),
    ]
    REFRESH_S = 2.0  # the runs table is re-read this often while a run is active

    def __init__(self) -> None:
        super().__init__()
        self.watching: int | None = None
        self.watch_key = ""
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.generation_worker: Any = None
        self.runs: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        from textual_plotext import PlotextPlot

        yield Header()
        yield DataTable(id="runs-table", cursor_type="row")
        with Vertical(id="run-view"):
            yield Static(Text("No run selected: pick one above, or start one (g, n, d, e)."), id="run-head")
            yield ProgressBar(id="run-progress", show_eta=True)
            yield PlotextPlot(id="run-plot")
            yield RichLog(id="run-log", max_lines=2000, wrap=True, markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        table.add_columns("id", "kind", "status", "step", "created", "system / note")
        self.query_one("#run-log", RichLog).border_title = "Log"
        self._draw_plot()
        self.action_list_runs()
        self.set_interval(self.REFRESH_S, self._refresh_if_active)

    def on_screen_resume(self) -> None:
        self.action_list_runs()

    # -- runs list ---------------------------------------------------------------------------
    def action_list_runs(self) -> None:
        self.list_runs()

    def _refresh_if_active(self) -> None:
        if any(r["status"] in views.ACTIVE_SHOWN for r in self.runs):
            self.list_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-list")
    def list_runs(self) -> None:
        project = self.open_project()
        try:
            self.post_message(RunsListed(views.runs_overview(project)))
        finally:
            project.close()

    @guarded
    def on_runs_listed(self, msg: RunsListed) -> None:
        self.runs = msg.runs
        table = self.query_one("#runs-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for r in msg.runs:
            what = r["system"] or r["note"] or (f"stage {r['stage']}" if r["stage"] else "")
            table.add_row(str(r["id"]), r["kind"], r["status"], "" if r["step"] is None else str(r["step"]),
                          r["created_at"][:16].replace("T", " "), what[:60], key=str(r["id"]))
        ids = [r["id"] for r in msg.runs]
        if self.watching in ids:
            table.move_cursor(row=ids.index(self.watching))
        elif msg.runs and 0 <= cursor < len(msg.runs):
            table.move_cursor(row=cursor)
        target = self.ctx.watch_run
        if target is not None and self.watching is None:
            self.ctx.watch_run = None
            self.follow(target)
        elif self.watching is None and msg.runs and not self.watch_key:
            # reopening the app: follow the run still going, else show the latest one
            active = [r for r in msg.runs if r["status"] in views.ACTIVE_SHOWN]
            self.follow((active or msg.runs)[0]["id"])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.follow(int(event.row_key.value))

    def selected_run(self) -> dict[str, Any] | None:
        """The run under the cursor (the cursor follows the run being watched)."""
        table = self.query_one("#runs-table", DataTable)
        if self.runs and 0 <= table.cursor_row < len(self.runs):
            return self.runs[table.cursor_row]
        return next((r for r in self.runs if r["id"] == self.watching), None)

    # -- watching ------------------------------------------------------------------------------
    def follow(self, run_id: int) -> None:
        run = next((r for r in self.runs if r["id"] == run_id), None)
        self.watching = run_id
        self.watch_key = f"run:{run_id}"
        ids = [r["id"] for r in self.runs]
        if run_id in ids:
            self.query_one("#runs-table", DataTable).move_cursor(row=ids.index(run_id))
        self.series = {}
        self.query_one("#run-log", RichLog).clear()
        bar = self.query_one("#run-progress", ProgressBar)
        bar.update(total=None, progress=0)
        kind = run["kind"] if run else "run"
        self._head(f"Run {run_id} ({kind}): {run['status'] if run else 'loading'}")
        self._draw_plot()
        self.follow_events(run_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-watch")
    def follow_events(self, run_id: int) -> None:
        from preceptor.engine.train import runner

        worker = get_current_worker()
        project = self.open_project()
        key = f"run:{run_id}"
        try:
            self._pump(runner.watch(project, run_id, cancel=worker.cancelled_event), key)
        except Cancelled:
            pass  # stopped watching (another run was selected); the run itself goes on
        finally:
            project.close()

    def _pump(self, events: Any, key: str) -> None:
        """Forward events in batches (at most ~8 messages a second)."""
        batch: list[Any] = []
        last = time.monotonic()
        for ev in events:
            batch.append(ev)
            now = time.monotonic()
            if isinstance(ev, Done) or now - last > 0.12:
                self.post_message(RunEvents(key, batch))
                batch, last = [], now
        if batch:
            self.post_message(RunEvents(key, batch))

    @guarded
    def on_run_events(self, msg: RunEvents) -> None:
        if msg.key != self.watch_key:
            return
        log = self.query_one("#run-log", RichLog)
        bar = self.query_one("#run-progress", ProgressBar)
        plot_dirty = False
        next_run: int | None = None
        for ev in msg.events:
            if isinstance(ev, Progress):
                bar.update(total=ev.total, progress=ev.done)
                if ev.note:
                    self._head(f"{self._title()}: {ev.note}")
            elif isinstance(ev, Metric):
                xs, ys = self.series.setdefault(ev.name, ([], []))
                xs.append(float(ev.step))
                ys.append(float(ev.value))
                plot_dirty = True
            elif isinstance(ev, Log):
                style = {"warning": "yellow", "error": "red"}.get(ev.level, "")
                log.write(Text(ev.text, style=style))
            elif isinstance(ev, Done):
                s = ev.summary
                status = s.get("status", "done")
                system = s.get("system")
                self._head(f"{self._title()}: {status}" + (f", registered system {system}" if system else ""))
                log.write(Text(f"finished: {status}" + (f" (system {system})" if system else ""), style="bold"))
                if s.get("error"):
                    log.write(Text(str(s["error"]), style="red"))
                if bar.total is not None and status == "succeeded":
                    bar.update(progress=bar.total)
                if s.get("next_run") and status == "succeeded":  # a curriculum's next stage
                    next_run = int(s["next_run"])
                    log.write(Text(f"next stage: run {next_run}", style="bold"))
                self.list_runs()
        if plot_dirty:
            self._draw_plot()
        if next_run is not None:
            self.ctx.watch_run = next_run
            self.watching = None
            self.list_runs()

    def _title(self) -> str:
        if self.watch_key.startswith("run:"):
            run = next((r for r in self.runs if r["id"] == self.watching), None)
            return f"Run {self.watching} ({run['kind'] if run else 'run'})"
        kind = self.watch_key.split(":", 1)[0]
        return FORMS[kind][1] if kind in FORMS else "Job"

    def _head(self, text: str) -> None:
        self.query_one("#run-head", Static).update(Text(text))

    def _draw_plot(self) -> None:
        from textual_plotext import PlotextPlot

        plot = self.query_one("#run-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        names = [n for n in self.series if n in LOSS_NAMES or "loss" in n] or list(self.series)[:1]
        for name in names[:3]:
            xs, ys = self.series[name]
            plt.plot(xs, ys, label=name, marker="braille")
        plt.title("loss" if names else "loss (no points yet)")
        plt.xlabel("step")
        plot.refresh()

    # -- launching -----------------------------------------------------------------------------
    @guarded
    def action_new(self, kind: str) -> None:
        cls = settings_class(kind)
        current = current_settings(self.project, kind)
        if current is None and kind == "generate":
            current = self._generate_defaults(cls)

        def validate(changes: dict[str, Any]) -> Any:
            return build_job(self.project, kind, changes)

        def launched(job: Any) -> None:
            if job is None:
                return
            if kind == "generate":
                self.run_generation(job)
            else:
                self.launch(kind, job)

        choices = None
        if kind == "generate":
            choices = {"system": views.system_names(self.project), "split": ["all", "train", "val", "test", "val,test"]}
        self.app.push_screen(RunForm(kind, cls, current, validate, choices), launched)

    def _generate_defaults(self, cls: type) -> Any:
        name = views.default_generate_system(self.project) or "base"
        try:
            return cls(system=name)
        except (TypeError, ValueError, PreceptorError):
            return None

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-launch")
    def launch(self, kind: str, overrides: dict[str, Any]) -> None:
        """The same launch path as ``preceptor train``: plan (settings, data pre-flight, launcher), then start."""
        from preceptor.engine.train.plan import plan, start

        project = self.open_project()
        try:
            run = start(project, plan(project, kind, overrides))
        finally:
            project.close()
        self.post_message(RunLaunched(run.id))

    def on_run_launched(self, msg: RunLaunched) -> None:
        self.notify(f"Run {msg.run_id} started; it keeps going if you close the app.")
        self.ctx.watch_run = msg.run_id
        self.watching = None
        self.list_runs()

    def run_generation(self, opts: Any) -> None:
        """Generation runs as an event stream in a thread worker of the app."""
        self.watching = None
        self.watch_key = f"generate:{time.monotonic()}"
        self.series = {}
        self.query_one("#run-log", RichLog).clear()
        self.query_one("#run-progress", ProgressBar).update(total=None, progress=0)
        self._head(f"{FORMS['generate'][1]}: starting…")
        self._draw_plot()
        self.generation_worker = self.generation_events(opts, self.watch_key)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-inline")
    def generation_events(self, opts: Any, key: str) -> None:
        from preceptor.engine.generation.generate import generate

        worker = get_current_worker()
        project = self.open_project()
        try:
            self._pump(generate(project, opts, cancel=worker.cancelled_event), key)
        except Cancelled:
            self.post_message(RunEvents(key, [Log("warning", "cancelled; finished work is kept")]))
        finally:
            project.close()

    @guarded
    def action_cancel_run(self) -> None:
        if self.generation_worker is not None and self.generation_worker.is_running and not self.watch_key.startswith("run:"):
            self.generation_worker.cancel()
            self.notify("Stopping after the current step…")
            return
        run = self.selected_run()
        if run is None or run["status"] not in views.ACTIVE_SHOWN:
            self.notify("No running run selected.", severity="warning")
            return
        run_id = run["id"]

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.cancel_run(run_id)

        self.app.push_screen(ConfirmModal(f"Cancel run {run_id} ({run['kind']})? It saves a checkpoint first; "
                                          "`r` resumes it later. (y / n)"), confirmed)

    @work(thread=True, exclusive=False, exit_on_error=False, group="train-cancel")
    def cancel_run(self, run_id: int) -> None:
        from preceptor.engine.train import runner

        project = self.open_project()
        try:
            runner.cancel(project, run_id)
        finally:
            project.close()
        self.app.call_from_thread(self.notify, f"Cancelling run {run_id} (it saves a checkpoint first)…")

    @guarded
    def action_resume_run(self) -> None:
        run = self.selected_run()
        if run is None or run["status"] not in ("interrupted", "cancelled", "failed"):
            self.notify("Select an interrupted, cancelled or failed run to resume.", severity="warning")
            return
        self.resume_run(run["id"])

    @work(thread=True, exclusive=False, exit_on_error=False, group="train-resume")
    def resume_run(self, run_id: int) -> None:
        from preceptor.engine.train import runner

        project = self.open_project()
        try:
            run = runner.resume(project, run_id)
        finally:
            project.close()
        self.post_message(RunLaunched(run.id))
