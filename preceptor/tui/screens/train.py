"""Generate / Train: launch generation and training runs from forms, watch them live.

Training runs go through the runner (``preceptor.engine.train.runner``): each run is
its own process, so closing the app never stops it and reopening shows it still going.
Generation runs in a thread worker of the app (``preceptor.engine.generate``).
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

from preceptor.engine.events import Done, Log, Metric, Progress
from preceptor.errors import Cancelled, PreceptorError
from preceptor.tui.availability import engine_module
from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.widgets.form import SettingsForm

# kind -> (module holding the settings dataclass, class name, title)
FORMS: dict[str, tuple[str, str, str]] = {
    "generate": ("preceptor.engine.generate", "GenerateOptions", "Generate answers"),
    "sft": ("preceptor.engine.train.settings", "SFTSettings", "Supervised fine-tuning (LoRA)"),
    "dpo": ("preceptor.engine.train.settings", "DPOSettings", "DPO on judged pairs"),
    "embed": ("preceptor.engine.embed", "EmbedSettings", "Embedding model curriculum"),
}

LOSS_NAMES = ("loss", "train_loss", "train/loss")


def settings_class(kind: str) -> type:
    module, name, title = FORMS[kind]
    cls = getattr(engine_module(module), name, None)
    if cls is None:
        raise PreceptorError("Not available", f"{title}: {module}.{name} is missing.", "Update preceptor.")
    return cls


def current_settings(project: Any, kind: str) -> Any:
    """What the form starts from: preset, then preceptor.toml (None where there is no table)."""
    cls = settings_class(kind)
    if kind in ("sft", "dpo"):
        return engine_module("preceptor.engine.train.settings").resolve(project, cls)
    if kind == "embed":
        return engine_module("preceptor.engine.embed").load_settings(project)
    return None


def build_job(project: Any, kind: str, changes: dict[str, Any]) -> Any:
    """Validate the form's changes the way the CLI validates flags; return what to launch.

    sft/dpo: the runner config; embed: TrainEmbedOptions; generate: GenerateOptions.
    """
    from preceptor import config as cfg

    cls = settings_class(kind)
    where = f"{FORMS[kind][2]} form"
    if kind in ("sft", "dpo"):
        tsettings = engine_module("preceptor.engine.train.settings")
        changes = dict(changes)
        preset = changes.pop("preset", None)
        settings = tsettings.resolve(project, cls, preset=preset, **changes)
        return {"settings": tsettings.to_dict(settings)}
    if kind == "embed":
        embed = engine_module("preceptor.engine.embed")
        settings = cfg.override(embed.load_settings(project), where, **changes)
        return embed.TrainEmbedOptions(
            base=getattr(settings, "base", None), stages=tuple(getattr(settings, "stages", ()) or ()) or None,
            max_steps=getattr(settings, "max_steps", None), batch_size=getattr(settings, "batch_size", None),
            learning_rate=getattr(settings, "learning_rate", None), epochs=getattr(settings, "epochs", None),
            loss=getattr(settings, "loss", None), threads=getattr(settings, "threads", None))
    from preceptor.db import systems as q_systems

    opts = cfg.section(cls, {k: v for k, v in changes.items() if v is not None}, where)
    q_systems.resolve(project.store, opts.system)  # an unknown system is refused here, naming the known ones
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
            yield Label(Text(FORMS[self.kind][2], style="bold"))
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
            self.app.show_error(exc)  # type: ignore[attr-defined]
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

    def __init__(self) -> None:
        super().__init__()
        self.watching: int | None = None
        self.watch_key = ""
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.generation_worker: Any = None
        self.runs: list[Any] = []

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
        table.add_columns("id", "kind", "status", "created", "system / note")
        self.query_one("#run-log", RichLog).border_title = "Log"
        self._draw_plot()
        self.action_list_runs()

    def on_screen_resume(self) -> None:
        self.action_list_runs()

    # -- runs list ---------------------------------------------------------------------------
    def action_list_runs(self) -> None:
        self.list_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-list")
    def list_runs(self) -> None:
        from preceptor.db import runs as q_runs

        project = self.papp.open_project()
        try:
            self.post_message(RunsListed(q_runs.list_runs(project.store, limit=200)))
        finally:
            project.close()

    @guarded
    def on_runs_listed(self, msg: RunsListed) -> None:
        self.runs = msg.runs
        table = self.query_one("#runs-table", DataTable)
        cursor = table.cursor_row
        table.clear()
        for r in msg.runs:
            note = (r.error or r.warning or "")[:60]
            table.add_row(str(r.id), r.kind, r.status, r.created_at[:16].replace("T", " "), note, key=str(r.id))
        ids = [r.id for r in msg.runs]
        if self.watching in ids:
            table.move_cursor(row=ids.index(self.watching))
        elif msg.runs and 0 <= cursor < len(msg.runs):
            table.move_cursor(row=cursor)
        target = self.papp.watch_run
        if target is not None and self.watching is None:
            self.papp.watch_run = None
            self.follow(target)
        elif self.watching is None and msg.runs and not self.watch_key:
            # reopening the app: follow the run still going, else show the latest one
            active = [r for r in msg.runs if r.status in ("queued", "running")]
            self.follow((active or msg.runs)[0].id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.follow(int(event.row_key.value))

    def selected_run(self) -> Any:
        """The run under the cursor (the cursor follows the run being watched)."""
        table = self.query_one("#runs-table", DataTable)
        if self.runs and 0 <= table.cursor_row < len(self.runs):
            return self.runs[table.cursor_row]
        return next((r for r in self.runs if r.id == self.watching), None)

    # -- watching ------------------------------------------------------------------------------
    def follow(self, run_id: int) -> None:
        run = next((r for r in self.runs if r.id == run_id), None)
        self.watching = run_id
        self.watch_key = f"run:{run_id}"
        ids = [r.id for r in self.runs]
        if run_id in ids:
            self.query_one("#runs-table", DataTable).move_cursor(row=ids.index(run_id))
        self.series = {}
        self.query_one("#run-log", RichLog).clear()
        bar = self.query_one("#run-progress", ProgressBar)
        bar.update(total=None, progress=0)
        kind = run.kind if run else "run"
        self._head(f"Run {run_id} ({kind}): {run.status if run else 'loading'}")
        self._draw_plot()
        self.follow_events(run_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-watch")
    def follow_events(self, run_id: int) -> None:
        runner = engine_module("preceptor.engine.train.runner")
        worker = get_current_worker()
        project = self.papp.open_project()
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
                self.list_runs()
        if plot_dirty:
            self._draw_plot()

    def _title(self) -> str:
        if self.watch_key.startswith("run:"):
            run = next((r for r in self.runs if r.id == self.watching), None)
            return f"Run {self.watching} ({run.kind if run else 'run'})"
        kind = self.watch_key.split(":", 1)[0]
        return FORMS[kind][2] if kind in FORMS else "Job"

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
                self.run_inline(kind, job)
            elif kind == "embed":
                self.run_inline(kind, job)
            else:
                self.launch(kind, job)

        choices = None
        if kind == "generate":
            from preceptor.db import systems as q_systems

            choices = {"system": [s.name for s in q_systems.all_systems(self.project.store)],
                       "split": ["all", "train", "val", "test", "val,test"]}
        self.app.push_screen(RunForm(kind, cls, current, validate, choices), launched)

    def _generate_defaults(self, cls: type) -> Any:
        from preceptor.db import systems as q_systems

        systems = q_systems.all_systems(self.project.store)
        name = next((s.name for s in systems if s.role == "base"), systems[0].name if systems else "base")
        try:
            return cls(system=name)
        except (TypeError, ValueError, PreceptorError):
            return None

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-launch")
    def launch(self, kind: str, config: dict[str, Any]) -> None:
        runner = engine_module("preceptor.engine.train.runner")
        project = self.papp.open_project()
        try:
            run = runner.start(project, kind, config)
        finally:
            project.close()
        self.post_message(RunLaunched(run.id))

    def on_run_launched(self, msg: RunLaunched) -> None:
        self.notify(f"Run {msg.run_id} started; it keeps going if you close the app.")
        self.papp.watch_run = msg.run_id
        self.watching = None
        self.list_runs()

    def run_inline(self, kind: str, opts: Any) -> None:
        """Generation and the embedding curriculum run as event streams in a thread worker."""
        self.watching = None
        self.watch_key = f"{kind}:{time.monotonic()}"
        self.series = {}
        self.query_one("#run-log", RichLog).clear()
        self.query_one("#run-progress", ProgressBar).update(total=None, progress=0)
        self._head(f"{FORMS[kind][2]}: starting…")
        self._draw_plot()
        self.generation_worker = self.inline_events(kind, opts, self.watch_key)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-inline")
    def inline_events(self, kind: str, opts: Any, key: str) -> None:
        worker = get_current_worker()
        project = self.papp.open_project()
        try:
            if kind == "generate":
                events = engine_module("preceptor.engine.generate").generate(project, opts, cancel=worker.cancelled_event)
            else:
                events = engine_module("preceptor.engine.embed").train_embed(project, opts, cancel=worker.cancelled_event)
            self._pump(events, key)
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
        if run is None or run.status not in ("queued", "running"):
            self.notify("No running run selected.", severity="warning")
            return
        self.cancel_run(run.id)

    @work(thread=True, exclusive=False, exit_on_error=False, group="train-cancel")
    def cancel_run(self, run_id: int) -> None:
        runner = engine_module("preceptor.engine.train.runner")
        project = self.papp.open_project()
        try:
            runner.cancel(project, run_id)
        finally:
            project.close()
        self.app.call_from_thread(self.notify, f"Cancelling run {run_id} (it saves a checkpoint first)…")

    @guarded
    def action_resume_run(self) -> None:
        run = self.selected_run()
        if run is None or run.status not in ("interrupted", "cancelled", "failed"):
            self.notify("Select an interrupted, cancelled or failed run to resume.", severity="warning")
            return
        self.resume_run(run.id)

    @work(thread=True, exclusive=False, exit_on_error=False, group="train-resume")
    def resume_run(self, run_id: int) -> None:
        runner = engine_module("preceptor.engine.train.runner")
        project = self.papp.open_project()
        try:
            run = runner.resume(project, run_id)
        finally:
            project.close()
        self.post_message(RunLaunched(run.id))
