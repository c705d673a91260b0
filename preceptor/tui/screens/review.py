"""Review (team lead): per pair, who voted what, the LLM and metric judges' verdicts,
disagreements first; filter by expert, system pair, split; Enter opens the item whole.

Not for experts while judging: it names systems and shows everyone's votes (a session
served with an expert's token cannot open it)."""

from __future__ import annotations

import shlex
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static

from preceptor.engine.judging.review import review
from preceptor.engine.views import item_details
from preceptor.errors import PreceptorError
from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.screens.data import ItemLoaded, ItemScreen

FILTER_HELP = "filter: expert=NAME systems=A,B split=val (Enter)"


def parse_filter(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in shlex.split(text or ""):
        key, sep, value = part.partition("=")
        if not sep or key not in ("expert", "systems", "split") or not value:
            raise PreceptorError("Invalid filter", f"{part!r} is not expert=NAME, systems=A,B or split=NAME",
                                 f"Write the filter as {FILTER_HELP.split(': ', 1)[1]}.")
        if key == "systems":
            names = [v.strip() for v in value.split(",") if v.strip()]
            if len(names) != 2:
                raise PreceptorError("Invalid filter", f"systems={value!r} needs two systems", "e.g. systems=base,ft")
            out["systems"] = (names[0], names[1])
        else:
            out[key] = value
    return out


class Reviewed(Message):
    def __init__(self, rows: list[Any]) -> None:
        super().__init__()
        self.rows = rows


class ReviewScreen(EngineScreen):
    TITLE = "Review"
    BINDINGS = [Binding("slash", "focus_filter", "Filter", key_display="/"),
                Binding("enter", "open_pair", "Open", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder=FILTER_HELP, id="review-filter")
        yield DataTable(id="review-table", cursor_type="row")
        yield Static("", id="review-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#review-table", DataTable)
        table.add_columns("pair", "split", "systems", "experts", "judges", "")
        table.focus()
        self.load({})

    def action_focus_filter(self) -> None:
        self.query_one("#review-filter", Input).focus()

    @on(Input.Submitted, "#review-filter")
    @guarded
    def _submitted(self, event: Input.Submitted) -> None:
        self.load(parse_filter(event.value))
        self.query_one("#review-table", DataTable).focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="review")
    def load(self, flt: dict[str, Any]) -> None:
        project = self.open_project()
        try:
            rows = review(project, **flt)
        finally:
            project.close()
        self.post_message(Reviewed(rows))

    @guarded
    def on_reviewed(self, msg: Reviewed) -> None:
        table = self.query_one("#review-table", DataTable)
        table.clear()
        for r in msg.rows:
            experts = "; ".join(f"{k}: {v}" for k, v in r.experts.items())
            judges = "; ".join(f"{k}: {v}" for k, v in r.judges.items())
            table.add_row(str(r.pair_id), r.split, " vs ".join(r.systems), experts, judges,
                          Text("disagree", style="bold red") if r.disagreement else "", key=f"{r.prompt_id}:{r.pair_id}")
        n = sum(r.disagreement for r in msg.rows)
        self.query_one("#review-status", Static).update(
            Text(f"{len(msg.rows)} pairs with verdicts, {n} with disagreements (listed first). Enter opens one.", style="dim"))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open_item(int(str(event.row_key.value).split(":")[0]))

    def action_open_pair(self) -> None:
        table = self.query_one("#review-table", DataTable)
        if table.row_count:
            key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            if key is not None:
                self.open_item(int(str(key).split(":")[0]))

    @work(thread=True, exclusive=True, exit_on_error=False, group="review-item")
    def open_item(self, prompt_id: int) -> None:
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
