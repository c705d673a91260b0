"""Export: DPO export filters with a live preview of the counts, then write the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Footer, Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from preceptor.engine.events import Done
from preceptor.errors import PreceptorError
from preceptor.terminal import clean
from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.screens.tables import kv_table, rows_table

SPLITS = ["train", "val", "test", "all"]
SOURCES = ["all", "expert", "llm", "metric", "agreed"]
STYLES = ["standard", "conversational"]
FORMATS = ["jsonl", "parquet", "hf"]


class Preview(Message):
    def __init__(self, n: int, info: dict[str, Any], sample: list[dict[str, Any]], error: PreceptorError | None) -> None:
        super().__init__()
        self.n = n
        self.info = info
        self.sample = sample
        self.error = error


class Written(Message):
    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__()
        self.summary = summary


class ExportScreen(EngineScreen):
    BINDINGS = [Binding("ctrl+w", "write", "Write file"), Binding("ctrl+r", "preview", "Preview")]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="export-form"):
            with Horizontal(classes="form-row"):
                yield Label("split")
                yield Select([(s, s) for s in SPLITS], value="train", allow_blank=False, id="x-split", compact=True)
                yield Label("source")
                yield Select([(s, s) for s in SOURCES], value="all", allow_blank=False, id="x-source", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("min confidence")
                yield Input("0.0", id="x-min-confidence", compact=True)
                yield Label("style")
                yield Select([(s, s) for s in STYLES], value="conversational", allow_blank=False, id="x-style", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("collection")
                yield Input("", placeholder="(all)", id="x-collection", compact=True)
                yield Label("format")
                yield Select([(s, s) for s in FORMATS], value="jsonl", allow_blank=False, id="x-format", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("file")
                yield Input("", placeholder="(default: exports/dpo-<time>.jsonl)", id="x-out", compact=True)
        yield Static(Text("Preview loading…"), id="export-preview")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-preview", Static).border_title = "Preview"
        self.action_preview()

    @on(Select.Changed)
    @on(Input.Changed, "#x-min-confidence, #x-collection")
    def _changed(self) -> None:
        self.action_preview()

    def export_options(self) -> Any:
        from preceptor.engine.export import dpo as export

        text = self.query_one("#x-min-confidence", Input).value.strip() or "0"
        try:
            conf = float(text)
        except ValueError:
            raise PreceptorError("Invalid filter", f"min confidence = {text!r} is not a number", "Type a number between 0 and 1.")
        coll = self.query_one("#x-collection", Input).value.strip() or None
        try:
            return export.DPOExportOptions(
                split=str(self.query_one("#x-split", Select).value),
                source=str(self.query_one("#x-source", Select).value),
                min_confidence=conf,
                collection=coll,
                style=str(self.query_one("#x-style", Select).value),
            )
        except (ValueError, TypeError) as exc:
            raise PreceptorError("Invalid filter", str(exc), "Adjust the filters.")

    @guarded
    def action_preview(self) -> None:
        try:
            opts = self.export_options()
        except PreceptorError as exc:
            self.query_one("#export-preview", Static).update(Text(f"{exc.title}: {exc.message}\n{exc.hint}", style="yellow"))
            return
        self.preview(opts)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export-preview")
    def preview(self, opts: Any) -> None:
        from preceptor.engine.export import dpo as export

        project = self.open_project()
        try:
            try:
                rows, info = export.dpo_records(project, opts)
            except PreceptorError as exc:
                self.post_message(Preview(0, {}, [], exc))
                return
            if not get_current_worker().is_cancelled:
                self.post_message(Preview(len(rows), info, rows[:3], None))
        finally:
            project.close()

    @guarded
    def on_preview(self, msg: Preview) -> None:
        self.last_count = msg.n
        box = self.query_one("#export-preview", Static)
        if msg.error is not None:
            box.update(Text(f"No pairs to export. {msg.error.message}\n{msg.error.hint}", style="yellow"))
            return
        parts: list[Any] = [Text(f"{msg.n} preference pairs would be written.", style="bold")]
        excluded = {k: v for k, v in (msg.info.get("excluded") or {}).items() if v}
        if excluded:
            parts.append(rows_table("Excluded", [{"reason": k, "pairs": v} for k, v in excluded.items()]))
        other = {k: v for k, v in msg.info.items() if k != "excluded" and not isinstance(v, (list, dict))}
        if other:
            parts.append(kv_table("Details", other))
        if msg.sample:
            first = msg.sample[0]
            prompt = first.get("prompt")
            prompt_text = prompt if isinstance(prompt, str) else str(prompt)[:300]
            parts.append(Text(f"\nFirst pair — prompt: {clean(prompt_text[:200])}", style="dim"))
        box.update(Group(*parts))

    @guarded
    def action_write(self) -> None:
        try:
            opts = self.export_options()
        except PreceptorError as exc:
            self.show_error(exc)
            return
        fmt = str(self.query_one("#x-format", Select).value)
        out_text = self.query_one("#x-out", Input).value.strip()
        if out_text:
            out = Path(out_text).expanduser()
            if not out.is_absolute():
                out = self.project.root / out
        else:
            import time

            out = self.project.exports_dir() / f"dpo-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
        self.notify(f"Writing {out}…")
        self.write_file(out, opts, fmt)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export-write")
    def write_file(self, out: Path, opts: Any, fmt: str) -> None:
        from preceptor.engine.export import dpo as export

        project = self.open_project()
        summary: dict[str, Any] = {}
        try:
            for ev in export.export_dpo(project, out, opts, fmt=fmt, cancel=get_current_worker().cancelled_event):
                if isinstance(ev, Done):
                    summary = ev.summary
        finally:
            project.close()
        self.post_message(Written(summary))

    @guarded
    def on_written(self, msg: Written) -> None:
        s = msg.summary
        self.notify(f"Wrote {s.get('n', '?')} pairs to {s.get('path', '?')}", title="Export done", timeout=10)
        self.query_one("#export-preview", Static).update(Group(
            Text(f"Wrote {s.get('n', '?')} pairs.", style="bold"),
            kv_table("Export", {k: v for k, v in s.items() if not isinstance(v, (dict, list))}),
        ))
