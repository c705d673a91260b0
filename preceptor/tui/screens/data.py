"""Data: browse and search prompts; open one to see every system's answer, metrics, votes."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markdown import Markdown as RichMarkdown
from rich.rule import Rule
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static
from textual.worker import get_current_worker

from preceptor.terminal import clean
from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.screens.tables import rows_table

PAGE = 500


from preceptor.engine.views import item_details, search_prompts  # noqa: E402  (light: db queries only)


class Found(Message):
    def __init__(self, rows: list[Any], total: int) -> None:
        super().__init__()
        self.rows = rows
        self.total = total


class ItemLoaded(Message):
    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__()
        self.details = details


class ItemScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__(classes="dialog-screen")
        self.details = details

    def compose(self) -> ComposeResult:
        d = self.details
        p = d["prompt"]
        parts: list[Any] = [
            Text(f"Prompt {p.id} · {p.split} · {p.task or 'no task'} · {p.collection}", style="bold"),
            Text(clean(p.text)),
        ]
        if p.bad_item:
            parts.append(Text(f"Reported as bad: {clean(p.bad_item)}", style="red"))
        if p.reference:
            parts += [Rule("reference"), RichMarkdown(clean(p.reference))]
        for name, o in d["outputs"]:
            parts.append(Rule(name))
            if o.error:
                parts.append(Text(f"error: {clean(o.error)}", style="red"))
            else:
                parts.append(RichMarkdown(clean(o.text or "")))
            m = d["metrics"].get(o.id) if isinstance(d["metrics"], dict) else None
            if m:
                parts.append(Text("  ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, (int, float))), style="dim"))
        if d["votes"]:
            parts += [Rule("votes"), rows_table("", d["votes"])]
        with Vertical(classes="dialog wide"):
            yield Label(Text("Item", style="bold"))
            with VerticalScroll(id="item-body"):
                yield Static(Group(*parts))
            yield Static("Escape to close.", classes="dim")

    def action_close(self) -> None:
        self.dismiss(None)


class DataScreen(EngineScreen):
    BINDINGS = [Binding("slash", "focus_search", "Search", key_display="/"),
                Binding("enter", "open_item", "Open", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="search prompts and references (Enter)…", id="data-search")
        yield DataTable(id="data-table", cursor_type="row")
        yield Static("", id="data-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#data-table", DataTable)
        table.add_columns("id", "split", "task", "prompt")
        table.focus()
        self.search("")

    def action_focus_search(self) -> None:
        self.query_one("#data-search", Input).focus()

    @on(Input.Submitted, "#data-search")
    def _submitted(self, event: Input.Submitted) -> None:
        self.search(event.value)
        self.query_one("#data-table", DataTable).focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-search")
    def search(self, query: str) -> None:
        project = self.open_project()
        try:
            rows, total = search_prompts(project, query)
        finally:
            project.close()
        if not get_current_worker().is_cancelled:
            self.post_message(Found(rows, total))

    @guarded
    def on_found(self, msg: Found) -> None:
        table = self.query_one("#data-table", DataTable)
        table.clear()
        for p in msg.rows:
            table.add_row(str(p.id), p.split, clean(p.task or ""), clean(" ".join(p.text.split())[:100]), key=str(p.id))
        shown = f"{len(msg.rows)} of {msg.total}" if msg.total > len(msg.rows) else str(msg.total)
        self.query_one("#data-status", Static).update(Text(f"{shown} prompts. Enter opens one.", style="dim"))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.load_item(int(event.row_key.value))

    def action_open_item(self) -> None:
        table = self.query_one("#data-table", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            if key is not None:
                self.load_item(int(key))

    @work(thread=True, exclusive=True, exit_on_error=False, group="data-item")
    def load_item(self, prompt_id: int) -> None:
        project = self.open_project()
        try:
            details = item_details(project, prompt_id)
        finally:
            project.close()
        self.post_message(ItemLoaded(details))

    @guarded
    def on_item_loaded(self, msg: ItemLoaded) -> None:
        if msg.details["prompt"] is not None:
            self.app.push_screen(ItemScreen(msg.details))
