"""Judge: answers A and B side by side, blind, one key per verdict.

All judging logic lives in ``preceptor.engine.judging.experts.ExpertSession``; this screen only
calls it. One session per screen, with its own project connection; calls into it are
serialised by a lock because the next pair is preloaded in a thread worker while the
expert reads the current one, so a keystroke's path (record the vote, show the next
pair) touches only SQLite.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Static

from preceptor.engine.judging import experts as judge
from preceptor.engine.judging.diff import word_diff
from preceptor.engine.judging.pairs import PairFilter
from preceptor.engine.judging.settings import JudgeSettings, load_rubric
from preceptor.errors import PreceptorError
from preceptor.terminal import clean
from preceptor.tui.screens.base import EngineScreen, guarded
from preceptor.tui.widgets.answer import AnswerPane
from preceptor.tui.widgets.dialogs import ChoiceModal, TextModal, TextPrompt

VERDICT_LABELS = {"A": "A better", "B": "B better", "tie": "tie", "both_bad": "both bad"}

HELP = """\
| key | what it does |
|---|---|
| `1` or `←` | answer **A** is better |
| `2` or `→` | answer **B** is better |
| `t` | tie: equally good |
| `x` | both bad |
| `f` then `1`/`2` | flag answer A / B as unsafe (toggle; recorded with your vote) |
| `n` | add a note (rationale) to your vote |
| `?` | these keys |
| `u` | undo your last vote (the pair comes back) |
| `s` | skip this pair |
| `b` | report the item as bad (with a reason); it leaves the pool |
| `h` | history of your votes: open one to change it |
| `g` | judging guidelines |
| `r` | show / hide the item's reference answer, when it has one |
| `d` | highlight the words that differ between A and B (toggle) |
| `p` | give the prompt (and reference) more room, or collapse it to a few lines |
| `↑`/`↓`, `shift+↑`/`shift+↓` | scroll answer A / answer B |
| `PgUp`/`PgDn` | scroll both answers by a page |
| `F1`…`F6` | other screens; `ctrl+p` command palette; `ctrl+q` quit |

Which side is A and which is B is random per pair; systems are never named.
"""


def rubric_text(project: Any) -> str:
    """The judging guidelines named by ``[judge] rubric`` (the domain pack's rubric by default)."""
    settings = project.section("judge", JudgeSettings)
    return load_rubric(settings.rubric)


class SessionReady(Message):
    def __init__(self, session: Any, expert: str, pair: Any, empty: str | None = None) -> None:
        super().__init__()
        self.session = session
        self.expert = expert
        self.pair = pair
        self.empty = empty  # why nothing is served (computed in the worker)


class Preloaded(Message):
    """The engine reserved the pair after the current one (computed in a worker)."""

    def __init__(self, pair: Any, after: int | None) -> None:
        super().__init__()
        self.pair = pair
        self.after = after


class Confirmed(Message):
    """``session.next()`` returned: the pair the engine serves now (normally the one shown)."""

    def __init__(self, pair: Any, shown_id: int) -> None:
        super().__init__()
        self.pair = pair
        self.shown_id = shown_id


class LlmVerdict(Message):
    def __init__(self, verdict: str, llm: dict[str, Any]) -> None:
        super().__init__()
        self.verdict = verdict
        self.llm = llm


class JudgeScreen(EngineScreen):
    """Blind pairwise judging for one expert."""

    BINDINGS = [
        Binding("1,left", "vote('A')", "A better", key_display="1/←"),
        Binding("2,right", "vote('B')", "B better", key_display="2/→"),
        Binding("t", "vote('tie')", "Tie"),
        Binding("x", "vote('both_bad')", "Both bad"),
        Binding("question_mark", "help", "Keys", key_display="?"),  # early: kept in the footer at 80 columns
        Binding("u", "undo", "Undo"),
        Binding("s", "skip", "Skip"),
        Binding("f", "flag", "Unsafe…"),
        Binding("n", "note", "Note"),
        Binding("b", "bad_item", "Bad item"),
        Binding("h", "history", "History"),
        Binding("g", "guidelines", "Guidelines"),
        Binding("r", "reference", "Reference"),
        Binding("p", "toggle_prompt", "Prompt size"),
        Binding("d", "diff", "Differences"),
        Binding("escape", "cancel_flag", "Cancel flag", show=False),
        Binding("up", "scroll('a', -1)", "Scroll A up", show=False),
        Binding("down", "scroll('a', 1)", "Scroll A down", show=False),
        Binding("shift+up", "scroll('b', -1)", "Scroll B up", show=False),
        Binding("shift+down", "scroll('b', 1)", "Scroll B down", show=False),
        Binding("pageup", "page(-1)", "Page both up", show=False),
        Binding("pagedown", "page(1)", "Page both down", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.session: Any = None
        self.expert: str | None = None
        self.current: Any = None
        self.shown_at = 0.0
        self.unsafe: set[str] = set()
        self.note: str | None = None
        self.flag_mode = False
        self.ignored = ""  # the notice of keys discarded for the pair shown
        self.show_reference = False
        self.show_diff = False
        self.preloaded: Any = None  # the engine's preloaded pair, shown at once on the next vote
        # instrumentation (benchmarks, tests): called with the seconds from a key's action
        # to the end of the refresh that drew the next pair / once the first pair is drawn
        self.latency_hook: Callable[[float], None] | None = None
        self.ready_hook: Callable[[], None] | None = None

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="prompt-box", classes="collapsed", can_focus=False):
            yield Static(Text("Loading…"), id="prompt")
        with Container(id="answers"):
            yield AnswerPane("A", id="pane-a", classes="answer")
            yield AnswerPane("B", id="pane-b", classes="answer")
        yield Static("", id="judge-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#prompt-box").border_title = "Prompt"
        name = self.ctx.expert
        if name:
            self.start_session(name)
        else:
            self.ask_name()

    def on_unmount(self) -> None:
        if self.session is not None:
            try:
                self.session.release()
            except Exception:  # the app is closing; reservations lapse on their own
                pass

    # -- who is judging ---------------------------------------------------------------------
    @guarded
    def ask_name(self) -> None:
        try:
            experts = judge.list_experts(self.project.store)
        except PreceptorError as exc:
            self._status(f"{exc.title}: {exc.message}")
            self.show_error(exc)
            return
        if not experts:
            self.app.push_screen(TextPrompt("Who is judging? Type your name.", "your name"), self._named)
            return
        options = [(e.name, e.name) for e in experts] + [("", "+ Add yourself…")]
        self.app.push_screen(ChoiceModal("Who is judging?", options, "Pick your name, or add yourself."), self._picked)

    def _picked(self, name: str | None) -> None:
        if name is None:
            self._status("Pick your name to start judging (press F2 or `ctrl+p` → Judge as…).")
            return
        if name == "":
            self.app.push_screen(TextPrompt("Your name:", "your name"), self._named)
        else:
            self.start_session(name)

    def _named(self, name: str | None) -> None:
        if name:
            self.start_session(name, create=True)
        else:
            self._status("No name given: judging needs to know who you are.")

    def action_ask_name(self) -> None:
        if self.ctx.expert_locked:
            self.notify(f"This session judges as {self.ctx.expert} only.", severity="warning")
            return
        self.ask_name()

    def _database_wait(self, text: str) -> None:
        """A vote waits for another program's write: say so (the vote is kept and goes in when it can)."""
        try:
            self.app.call_from_thread(self.notify, text, timeout=5)
        except RuntimeError:  # already on the app's thread
            self.notify(text, timeout=5)

    @work(thread=True, exclusive=True, exit_on_error=False, group="judge-session")
    def start_session(self, name: str, create: bool = False) -> None:
        """``create``: the name was typed into the app's "add yourself" form; a name given
        with ``--as`` or picked from the list must be a registered expert."""
        project = self.open_project()
        flt = self.ctx.pair_filter or PairFilter()
        session = judge.ExpertSession(project, name, flt, create=create, on_wait=self._database_wait)
        session.count_mine()
        first = session.next()
        if first is None:
            self.post_message(SessionReady(session, session.name, None, session.empty_reason()))
            return
        self.post_message(SessionReady(session, session.name, first))

    @guarded
    def on_session_ready(self, msg: SessionReady) -> None:
        if self.session is not None and self.session is not msg.session:
            self.session.release()
        self.session = msg.session
        self.expert = msg.expert
        self.ctx.expert = msg.expert
        self.sub_title = f"judging as {msg.expert}"
        self._show(msg.pair, None, empty=msg.empty)
        hook = self.ready_hook or self.ctx.judge_ready_hook
        if hook is not None:
            self.call_after_refresh(hook)
        if msg.pair is not None:
            self.background(None, None, confirm=None)

    # -- showing pairs ------------------------------------------------------------------------
    def _show(self, pair: Any, t0: float | None, empty: str | None = None) -> None:
        self.current = pair
        self.ignored = ""
        self.unsafe = set()
        self.note = None
        self.flag_mode = False
        prompt = self.query_one("#prompt", Static)
        pane_a = self.query_one("#pane-a", AnswerPane)
        pane_b = self.query_one("#pane-b", AnswerPane)
        for pane in (pane_a, pane_b):
            if pane.has_class("unsafe"):
                pane.remove_class("unsafe")
        if pair is None:
            if empty is None and self.session is not None:
                empty = self.session.empty_reason()  # rare: the queue ran out
            prompt.update(Text(empty or "Nothing left to judge.", style="bold"))
            pane_a.show("", markdown=False)
            pane_b.show("", markdown=False)
            self._status("All done." if self.session is not None else "")
        else:
            prompt.update(self._prompt_text(pair))
            box = self.query_one("#prompt-box", VerticalScroll)
            if box.scroll_y:
                box.scroll_home(animate=False)
            self._answers(pair)
            self._progress()
            # keys count for this pair only once it is on screen (and [judge] min_seconds later)
            self.call_after_refresh(self.session.shown, pair)
        self.shown_at = time.perf_counter()
        if t0 is not None and self.latency_hook is not None:
            hook = self.latency_hook
            self.call_after_refresh(lambda: hook(time.perf_counter() - t0))

    def _prompt_text(self, pair: Any) -> Text:
        text = Text(clean(pair.prompt))
        if self.show_reference:
            text.append("\n\nReference: ", style="bold")
            text.append(clean(pair.reference) if pair.reference else "(this item has no reference answer)", style="italic")
        return text

    def action_reference(self) -> None:
        if self.current is None:
            return
        self.show_reference = not self.show_reference
        self.query_one("#prompt", Static).update(self._prompt_text(self.current))

    def _progress(self, extra: str = "") -> None:
        pair = self.current
        if pair is None:
            return
        flags = ""
        if self.unsafe:
            flags = "  unsafe: " + "+".join(sorted(self.unsafe))
        if self.note:
            flags += "  note ✓"
        if self.ignored:
            extra = f"{self.ignored}  {extra}".strip()
        self._status(f"{self._mine_text(pair)}{flags}{('  ' + extra) if extra else ''}")

    def _mine_text(self, pair: Any) -> str:
        """The expert's own progress (counted by the engine in the preload worker)."""
        mine = (self.session.mine() if self.session is not None else None) or pair.mine
        if not mine:
            return "you: counting…"
        reps = mine["repeats"]
        more = f" · {reps} repeat{'s' if reps != 1 else ''} to come" if reps else ""
        return f"you: {mine['judged']} judged · {mine['left']} left for you{more}"

    def _too_soon(self, exc: Any) -> None:
        """Keys before the pair was seen are discarded; the notice stays until the next pair."""
        self.ignored = f"key ignored: on screen {exc.waited:.1f}s < {exc.needed:g}s"
        self._progress()

    def _status(self, text: str) -> None:
        self.query_one("#judge-status", Static).update(Text(text))

    def _next(self, t0: float | None, voted: Any = None, verdict: str | None = None) -> None:
        """Show the next pair.

        The pair the engine preloaded in the background (``session.preload()``, already
        reserved for this expert) is drawn at once; ``session.next()``, which moves the
        session on and re-checks the pair, runs in the worker afterwards. Without a
        preloaded pair ``next()`` is called here.
        """
        pair, self.preloaded = self.preloaded, None
        if pair is not None:
            self._show(pair, t0)
            # the background work starts once the new pair is on screen
            self.call_after_refresh(self.background, voted, verdict, pair.pair_id)
            return
        pair = self.session.next()
        self._show(pair, t0)
        if pair is not None or voted is not None:
            self.call_after_refresh(self.background, voted, verdict, None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="judge-preload")
    def background(self, voted: Any, verdict: str | None, confirm: int | None) -> None:
        """After a vote: confirm the shown pair (id ``confirm``) with the engine, reveal the
        LLM verdict, preload the next pair."""
        session = self.session
        current = None
        if confirm is not None:
            current = session.next()
            self.post_message(Confirmed(current, confirm))
        if voted is not None and verdict is not None:
            llm = session.llm_verdict(voted)
            if llm:
                self.post_message(LlmVerdict(verdict, llm))
        if current is not None or (confirm is None and self.current is not None):
            after = current.pair_id if current is not None else self.current.pair_id
            self.post_message(Preloaded(session.preload(), after))

    def on_confirmed(self, msg: Confirmed) -> None:
        pair = msg.pair
        if self.current is None or self.current.pair_id != msg.shown_id:
            return  # stale: the expert has moved on already
        if pair is not None and pair.pair_id == self.current.pair_id:
            self.current = pair  # same pair, fresh progress figures
            self._progress()
        else:
            self._show(pair, None)  # the preloaded pair was taken meanwhile: show what the engine serves

    def on_preloaded(self, msg: Preloaded) -> None:
        if self.current is not None and msg.after == self.current.pair_id:
            self.preloaded = msg.pair

    @guarded
    def on_llm_verdict(self, msg: LlmVerdict) -> None:
        llm = msg.llm
        winner = llm.get("winner")
        label = VERDICT_LABELS.get(str(winner), str(winner))
        conf = llm.get("confidence")
        conf_text = f" ({conf:.0%} sure)" if isinstance(conf, (int, float)) else ""
        agree = "agrees" if winner == msg.verdict else "differs"
        rationale = " ".join((llm.get("rationale") or "").split())
        self.notify(f"You: {VERDICT_LABELS.get(msg.verdict, msg.verdict)}. LLM judge: {label}{conf_text}, {agree}."
                    + (f"\n{rationale[:300]}" if rationale else ""), title="LLM judge on the last pair", timeout=8)

    # -- actions ---------------------------------------------------------------------------
    @guarded
    def action_vote(self, verdict: str) -> None:
        t0 = time.perf_counter()
        if self.flag_mode and verdict in ("A", "B"):
            self.flag_mode = False
            self.unsafe.symmetric_difference_update({verdict})
            pane = self.query_one("#pane-a" if verdict == "A" else "#pane-b", AnswerPane)
            pane.set_class(verdict in self.unsafe, "unsafe")
            self._progress(f"answer {verdict} {'flagged unsafe' if verdict in self.unsafe else 'unflagged'}")
            return
        if self.current is None or self.session is None:
            return
        pair = self.current
        try:
            self.session.record(pair, verdict, unsafe=tuple(sorted(self.unsafe)), note=self.note, interactive=True)
        except judge.TooSoon as exc:  # a key before the pair was seen: discarded, never applied to the next pair
            self._too_soon(exc)
            return
        self._next(t0, pair, verdict)

    @guarded
    def action_undo(self) -> None:
        if self.session is None:
            return
        t0 = time.perf_counter()
        pair = self.session.undo()
        if pair is None:
            self.notify("Nothing to undo.", severity="warning")
            return
        self.preloaded = None  # undo gives the engine's preloaded pair back
        self._show(pair, t0)
        self._progress("vote undone: vote again")
        self.background(None, None, confirm=None)

    @guarded
    def action_skip(self) -> None:
        if self.current is None or self.session is None:
            return
        t0 = time.perf_counter()
        try:
            self.session.skip(self.current, interactive=True)
        except judge.TooSoon as exc:
            self._too_soon(exc)
            return
        self._next(t0)

    def action_flag(self) -> None:
        if self.current is None:
            return
        self.flag_mode = True
        self._progress("unsafe: press 1 for A or 2 for B (Esc cancels)")

    def action_cancel_flag(self) -> None:
        if self.flag_mode:
            self.flag_mode = False
            self._progress()

    def action_note(self) -> None:
        if self.current is None:
            return

        def done(text: str | None) -> None:
            if text is not None:
                self.note = text or None
                self._progress("note saved with your vote")

        self.app.push_screen(TextPrompt("Note (rationale) for this vote:", "why", self.note or "", required=False), done)

    def action_bad_item(self) -> None:
        if self.current is None or self.session is None:
            return
        pair = self.current

        @guarded
        def done(_self: Any, reason: str | None) -> None:
            if not reason or self.current is not pair:
                return
            self.session.flag_bad_item(pair.prompt_id, reason)
            self.session.skip(pair)
            self.notify("Item reported as bad; it leaves the pool.")
            self._next(time.perf_counter())

        self.app.push_screen(TextPrompt("What is wrong with this item?", "e.g. the question is ambiguous"), lambda r: done(self, r))

    @guarded
    def action_history(self) -> None:
        if self.session is None:
            return
        rows = [r for r in self.session.history() if r["verdict"] in VERDICT_LABELS]
        if not rows:
            self.notify("No votes yet.")
            return
        options = []
        for r in rows:
            when = str(r.get("time", ""))[5:16].replace("T", " ")
            marks = (" unsafe:" + "+".join(r["unsafe"]) if r.get("unsafe") else "") + (" [repeat]" if r["repeat"] else "")
            marks += " [note]" if r.get("note") else ""
            options.append((r["judgment_id"], f"{VERDICT_LABELS[r['verdict']]:<9} {when}{marks}  {clean(r['prompt'])[:40]}"))
        self.app.push_screen(ChoiceModal("Your votes (newest first): open one to see it and change it", options), self._change)

    def _change(self, judgment_id: int | None) -> None:
        """Show the past pair as it was shown (same sides, note, repeat mark), then ask."""
        if judgment_id is None:
            return
        try:
            past, vote = self.session.as_voted(judgment_id)
        except PreceptorError as exc:
            self.show_error(exc)
            return
        self._draw_past(past, vote)

        @guarded
        def chosen(_self: Any, verdict: str | None) -> None:
            self._redraw_current()
            if verdict is None:
                return
            self.session.change(judgment_id, verdict)
            self.notify(f"Vote changed to {VERDICT_LABELS[verdict]}.")

        title = f"Your vote on the pair shown: {VERDICT_LABELS[vote['verdict']]}. Change it to:"
        self.app.push_screen(ChoiceModal(title, list(VERDICT_LABELS.items()), "Esc keeps it."), lambda v: chosen(self, v))

    def _draw_past(self, past: Any, vote: dict[str, Any]) -> None:
        head = Text(f"Past vote: {VERDICT_LABELS[vote['verdict']]}", style="bold reverse")
        if vote["unsafe"]:
            head.append(f"  unsafe: {'+'.join(vote['unsafe'])}")
        if vote["repeat"]:
            head.append("  [repeat]")
        if vote["note"]:
            head.append(f"  note: {vote['note']}")
        head.append("\n")
        head.append(past.prompt)
        self.query_one("#prompt", Static).update(head)
        self.query_one("#pane-a", AnswerPane).show(past.left.text)
        self.query_one("#pane-b", AnswerPane).show(past.right.text)

    def _redraw_current(self) -> None:
        pair = self.current
        if pair is None:
            return
        self.query_one("#prompt", Static).update(self._prompt_text(pair))
        self.query_one("#pane-a", AnswerPane).show(pair.left.text)
        self.query_one("#pane-b", AnswerPane).show(pair.right.text)
        self.session.shown(pair)  # seen anew: the dwell time starts again

    @guarded
    def action_guidelines(self) -> None:
        self.app.push_screen(TextModal("Judging guidelines", rubric_text(self.project)))

    def action_help(self) -> None:
        self.app.push_screen(TextModal("Judging keys", HELP))

    def _answers(self, pair: Any) -> None:
        pane_a = self.query_one("#pane-a", AnswerPane)
        pane_b = self.query_one("#pane-b", AnswerPane)
        if not self.show_diff:
            pane_a.show(pair.left.text)
            pane_b.show(pair.right.text)
            return
        diff = pair.diff if pair.diff is not None else word_diff(pair.left.text, pair.right.text)
        for pane, spans in ((pane_a, diff[0]), (pane_b, diff[1])):
            text = Text()
            for chunk, differs in spans:
                text.append(chunk, style="bold reverse" if differs else "")
            pane.update_text(text, subtitle="differences")

    def action_diff(self) -> None:
        if self.current is None:
            return
        self.show_diff = not self.show_diff
        self._answers(self.current)

    def action_toggle_prompt(self) -> None:
        """Collapse the prompt (and reference) to a few lines, or give it more room."""
        box = self.query_one("#prompt-box", VerticalScroll)
        expanded = box.has_class("collapsed")
        box.set_class(not expanded, "collapsed")
        box.set_class(expanded, "expanded")

    def action_page(self, direction: int) -> None:
        for pane in ("a", "b"):
            target = self.query_one(f"#pane-{pane}", AnswerPane)
            if direction < 0:
                target.scroll_page_up(animate=False)
            else:
                target.scroll_page_down(animate=False)

    def action_scroll(self, pane: str, direction: int) -> None:
        target = self.query_one(f"#pane-{pane}", AnswerPane)
        if direction < 0:
            target.scroll_up(animate=False)
        else:
            target.scroll_down(animate=False)
