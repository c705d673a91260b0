"""Blind pairwise judging by experts: the queue, votes, undo, history and bad items.

The TUI and ``preceptor judge next/record`` both drive an :class:`ExpertSession`:

* ``next()`` reserves a pair for this expert (a reservation lapses after
  ``[judge] reservation_minutes``, or at once when its process on this host is gone), so
  two experts never get the same pair at once. Which pair comes next is
  ``engine.judging.queue`` (``[judge] queue``: active, random or sequential).
* Sides are randomised per expert and per pair, deterministically from ``[judge] seed``,
  so a pair served again (after undo, or from the CLI) shows the same sides. The labels
  ``A``/``B`` are the sides as shown; the engine maps them to output ids.
* The overlap share of pairs (``overlap_share``) needs ``overlap_k`` experts; a repeat
  share (``repeat_share``) is shown to the same expert again, sides swapped, after
  ``repeat_gap`` more votes. Repeats are tagged and never supersede or count as votes.
* Every write is one ``BEGIN IMMEDIATE`` transaction, committed before the call returns.
  A write that meets another process's write lock waits with backoff until it commits
  (the store retries; ``on_wait`` is told "waiting for the database…"); an SQLite failure
  reaches the face as a titled :class:`PreceptorError`, never a raw ``sqlite3`` error.
  Nothing is overwritten: a changed vote is a new row that supersedes the old one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import getpass
import hashlib
import os
import secrets
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from preceptor.db import judging as q
from preceptor.db import user_error
from preceptor.engine.judging.diff import word_diff
from preceptor.engine.judging.pairs import PairFilter, resolve_filter, unit_hash
from preceptor.engine.judging.queue import ExpertQueue
from preceptor.engine.judging.settings import JudgeSettings
from preceptor.errors import PreceptorError
from preceptor.processes import alive
from preceptor.text import identity

if TYPE_CHECKING:
    from preceptor.project import Project

__all__ = [
    "Expert", "Side", "ServedPair", "ExpertSession", "TooSoon", "add_expert", "list_experts", "get_expert", "clear_bad_item",
    "issue_token", "expert_for_token", "has_expert_tokens", "EXPERT_VERDICTS", "SERVED_SESSION_ENV",
]

SERVED_SESSION_ENV = "PRECEPTOR_SERVED_SESSION"  # set by ``preceptor serve`` for the app process of one web session

EXPERT_VERDICTS = ("A", "B", "tie", "both_bad")


# --- experts -------------------------------------------------------------------------

@dataclass(frozen=True)
class Expert:
    id: int
    name: str


def _check_name(name: str) -> str:
    clean = " ".join((name or "").split())
    if not clean:
        raise PreceptorError("Invalid name", "an expert's name cannot be empty", "Give a name, e.g. `preceptor experts add \"Dr Ada\"`.")
    if len(clean) > 80 or any(not c.isprintable() for c in clean):
        raise PreceptorError("Invalid name", f"expert name {clean[:40]!r}… is too long or has control characters",
                             "Use a short printable name (at most 80 characters).")
    return clean


def add_expert(store: Any, name: str) -> Expert:
    """Register an expert; a name that differs only in case is the same expert."""
    eid, registered, _ = q.add_expert(store, _check_name(name))
    return Expert(eid, registered)


def list_experts(store: Any) -> list[Expert]:
    return [Expert(i, n) for i, n in q.list_experts(store)]


def get_expert(store: Any, name: str) -> Expert:
    """The registered expert of that name (any case); nobody is created. An unknown name is
    refused with the closest registered names."""
    found = q.get_expert(store, _check_name(name))
    if found is None:
        names = [e.name for e in list_experts(store)]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5) or difflib.get_close_matches(
            name.casefold(), [n.casefold() for n in names], n=3, cutoff=0.5)
        close = [n for n in names if n.casefold() in {c.casefold() for c in close}]
        mean = f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        known = ", ".join(names) or "none yet"
        raise PreceptorError("Unknown expert", f"no expert named {name!r} in this project (experts: {known})",
                             f"{mean}Add a new expert with `preceptor experts add {name!r}`.")
    return Expert(*found)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(store: Any, name: str) -> str:
    """A new personal access token for an existing expert (only its hash is stored; a new
    token replaces the old one)."""
    expert = get_expert(store, name)
    token = secrets.token_urlsafe(24)
    with store.tx():
        q.set_expert_token(store, expert.id, _hash_token(token))
    return token


def expert_for_token(store: Any, token: str) -> Expert | None:
    found = q.expert_by_token(store, _hash_token(token)) if token else None
    return Expert(*found) if found else None


def has_expert_tokens(store: Any) -> bool:
    return q.count_expert_tokens(store) > 0


class TooSoon(PreceptorError):
    """A key arrived before the pair had been on screen for ``[judge] min_seconds``: it is discarded."""

    def __init__(self, waited: float, needed: float) -> None:
        super().__init__("Key ignored", f"the pair was on screen for {waited:.2f} s, less than [judge] min_seconds = {needed:g} s",
                         "Read both answers, then press the key again.")
        self.waited = waited
        self.needed = needed


def clear_bad_item(store: Any, prompt_id: int) -> None:
    if not q.set_bad_item(store, prompt_id, None):
        raise PreceptorError("Unknown prompt", f"no prompt with id {prompt_id}", "Use an id from `preceptor judge flags`.")


# --- serving -------------------------------------------------------------------------

@dataclass(frozen=True)
class Side:
    label: str  # "A" (left) | "B" (right)
    output_id: int
    text: str


@dataclass(frozen=True)
class ServedPair:
    pair_id: int
    prompt_id: int
    prompt: str
    reference: str | None
    left: Side
    right: Side
    repeat: bool
    done: int
    total: int
    mine: dict[str, int] | None = None  # this expert's own figures (judged, left, repeats), counted in the worker
    diff: Any = None  # word_diff(A, B), computed in the preload worker (None: not computed yet)

    def side(self, label: str) -> Side:
        return self.left if label == "A" else self.right

    def to_dict(self) -> dict[str, Any]:
        """What ``judge next --json`` prints: sides as shown, no system names, no output ids."""
        return {"pair_id": self.pair_id, "prompt_id": self.prompt_id, "prompt": self.prompt, "reference": self.reference,
                "A": self.left.text, "B": self.right.text, "repeat": self.repeat, "done": self.done, "total": self.total}


F = TypeVar("F", bound=Callable[..., Any])


def _writes(fn: F) -> F:
    """A session call that writes: waits tell ``on_wait``; SQLite failures become titled errors."""
    @functools.wraps(fn)
    def wrapper(self: ExpertSession, *args: Any, **kwargs: Any) -> Any:
        try:
            with self.store.on_wait(self.on_wait):
                return fn(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise user_error(exc, self.store.path) from exc
    return wrapper  # type: ignore[return-value]


def _cut_words(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters at a word boundary (with an ellipsis)."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut and not text[width - 1].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"




class ExpertSession:
    """One expert judging (thread-safe; one per TUI screen or CLI call)."""

    PROGRESS_TTL = 10.0  # counting every pair of a large project is slow: refreshed in preload(), not per vote

    def __init__(self, project: Project, expert: str, flt: PairFilter = PairFilter(), *, create: bool = False,
                 detached: bool = False, on_wait: Callable[[str], None] | None = None) -> None:
        """``detached``: reservations outlive this process (lapse by time only), for scripted
        ``judge next`` / ``judge record`` calls made by separate processes. ``on_wait(text)`` is
        called when a write waits for another process's write (the app shows a notice)."""
        self.project = project
        self.on_wait = on_wait
        self.store = project.store
        self.settings: JudgeSettings = project.section("judge", JudgeSettings)
        self.expert = add_expert(self.store, expert) if create else get_expert(self.store, expert)
        self.filter = flt
        self.query = resolve_filter(self.store, flt)
        self.hostname = socket.gethostname()
        self.host = f"{self.hostname}/{uuid.uuid4().hex[:12]}"  # this session, for its reservations
        self.pid = os.getpid()
        self.detached = detached
        self._lock = threading.RLock()
        self._current: ServedPair | None = None
        self._preloaded: ServedPair | None = None
        self._count = q.expert_action_count(self.store, self.expert.name)
        self._progress: tuple[float, tuple[int, int]] | None = None
        self._served_at: dict[int, float] = {}
        self.queue = ExpertQueue(self.settings)  # the next-pair choice (order: [judge] queue; judge next --order)
        self._shown_at: dict[int, float] = {}  # pair id -> when the app drew it (monotonic)
        self._mine: dict[str, int] | None = None
        self._mine_at: float | None = None
        try:
            self.os_user: str | None = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry for this uid
            self.os_user = None
        self.served_session = os.environ.get(SERVED_SESSION_ENV) or None

    # -- helpers -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.expert.name

    def _ttl(self) -> float:
        return self.settings.reservation_minutes * 60.0

    def default_left(self, pair_id: int, output_a: int, output_b: int) -> int:
        """The output shown on the left to this expert: a fair coin per expert and pair."""
        u = unit_hash(self.settings.seed, "side", identity(self.expert.name), pair_id)
        return output_a if u < 0.5 else output_b

    def _build(self, pair_id: int, left_output_id: int, repeat: bool, row: dict[str, Any] | None = None) -> ServedPair:
        row = row or q.get_pair(self.store, pair_id)
        if row is None:
            raise PreceptorError("Unknown pair", f"no pair with id {pair_id}", "Use the pair id that `judge next` printed.")
        texts = {row["output_a"]: row["text_a"] or "", row["output_b"]: row["text_b"] or ""}
        if left_output_id not in texts:
            left_output_id = self.default_left(pair_id, row["output_a"], row["output_b"])
        right = row["output_b"] if left_output_id == row["output_a"] else row["output_a"]
        done, total = self._progress[1] if self._progress is not None else self.progress()
        return ServedPair(pair_id, row["prompt_id"], row["prompt"], row["reference"],
                          Side("A", left_output_id, texts[left_output_id]), Side("B", right, texts[right]),
                          repeat, done, total, dict(self._mine) if self._mine is not None else None)

    def _clean_reservations(self, t: float) -> None:
        q.drop_expired_reservations(self.store, t)
        for r in q.reservations_of_others(self.store, self.expert.id, t, self.host):
            host = (r["host"] or "").rsplit("/", 1)[0]
            if host == self.hostname and r["pid"] and r["pid"] != self.pid and not alive(r["pid"]):
                q.drop_reservation(self.store, r["pair_id"], r["expert_id"])

    def choose_next(self, t: float, exclude: tuple[int, ...]) -> tuple[str, Any] | None:
        """The one place that decides which pair comes next for this expert (call inside a
        transaction): ``("repeat", row)`` or ``("pair", pair_id)``, or None.

        Order: a repeat that is due; an open pair this expert has not judged or skipped; any
        pending repeat; then the pairs this expert skipped, oldest skip first (skipped pairs
        come back at the end of their queue).
        """
        rep = q.due_repeat(self.store, self.expert.id, self.query, self._count, t, exclude, self.host)
        if rep is not None:
            return "repeat", rep
        # which open pair: the queue's order ([judge] queue, `judge next --order`), atomic per session
        pid = self.queue.next_pair(self.store, self.query, self.expert.id, self.expert.name, t, exclude, self.host)
        if pid is not None:
            return "pair", pid
        rep = q.due_repeat(self.store, self.expert.id, self.query, None, t, exclude, self.host)
        if rep is not None:
            return "repeat", rep
        pid = q.skipped_open_pair(self.store, self.query, self.expert.id, self.expert.name, t, exclude, self.host)
        return ("pair", pid) if pid is not None else None

    def _pick(self, t: float, exclude: tuple[int, ...]) -> tuple[int, int, bool] | None:
        """(pair id, left output id, repeat) of the next pair; call inside a transaction."""
        choice = self.choose_next(t, exclude)
        if choice is None:
            return None
        kind, value = choice
        if kind == "pair":
            pair = q.get_pair(self.store, value)
            assert pair is not None
            return value, self.default_left(value, pair["output_a"], pair["output_b"]), False
        rep = value
        pair = q.get_pair(self.store, rep["pair_id"])
        assert pair is not None
        swapped = pair["output_b"] if rep["left_output_id"] == pair["output_a"] else pair["output_a"]
        return rep["pair_id"], swapped, True

    def _reserve(self, pair_id: int, left: int, repeat: bool, t: float) -> None:
        q.reserve(self.store, pair_id, self.expert.id, t + self._ttl(), repeat=repeat, left_output_id=left,
                  host=self.host, pid=None if self.detached else self.pid, served_at=t)
        self._served_at[pair_id] = time.monotonic()

    # -- the contract ------------------------------------------------------------------
    @_writes
    def next(self) -> ServedPair | None:
        """Reserve and return the next pair for this expert (None when nothing is left)."""
        with self._lock:
            t = time.time()
            pre, self._preloaded = self._preloaded, None
            with self.store.tx():
                self._clean_reservations(t)
                keep = (pre.pair_id,) if pre else ()
                q.drop_reservations_of(self.store, self.expert.id, host=self.host, pid=self.pid, keep=keep)
                picked: tuple[int, int, bool] | None = None
                if pre is not None and (pre.repeat or q.still_servable(self.store, pre.pair_id, self.expert.id, self.expert.name, t, self.host)):
                    picked = (pre.pair_id, pre.left.output_id, pre.repeat)
                else:
                    if pre is not None:
                        q.drop_reservation(self.store, pre.pair_id, self.expert.id)
                    picked = self._pick(t, ())
                if picked is None:
                    self._current = None
                    return None
                self._reserve(*picked, t)
            self._current = self._build(*picked)
            return self._current

    @_writes
    def preload(self) -> ServedPair | None:
        """Reserve the pair after the current one, so the next ``next()`` returns at once.

        Call it from a worker thread while the expert reads the current pair.
        """
        with self._lock:
            if self._preloaded is not None:
                return self._preloaded
            t = time.time()
            exclude = (self._current.pair_id,) if self._current else ()
            with self.store.tx():
                picked = self._pick(t, exclude)
                if picked is None:
                    return None
                self._reserve(*picked, t)
            built = self._build(*picked)
            self._preloaded = dataclasses.replace(built, diff=word_diff(built.left.text, built.right.text))
            preloaded = self._preloaded
            stale = self._progress is None or time.monotonic() - self._progress[0] > self.PROGRESS_TTL
            mine_stale = self._mine_at is None or time.monotonic() - self._mine_at > self.PROGRESS_TTL
        if stale:  # count others' votes too: in the worker, without holding the lock a vote needs
            self._count_progress()
        if mine_stale:  # this session's own votes adjust it at once (_adjust_mine)
            self.count_mine()
        return preloaded

    def count_mine(self) -> dict[str, int]:
        """This expert's own figures (judged, left for them, repeats to come, pairs others hold);
        counted in the preload worker, never on a key's path."""
        t = time.monotonic()
        value = q.expert_counts(self.store, self.query, self.expert.id, self.expert.name, time.time())
        with self._lock:
            self._mine, self._mine_at = value, t
        return value

    def mine(self) -> dict[str, int] | None:
        """The figures of the last :meth:`count_mine` (None before the first count)."""
        return dict(self._mine) if self._mine is not None else None

    def empty_reason(self) -> str:
        """Why nothing is served to this expert, and what to do about it."""
        total = q.count_pairs(self.store, self.query)
        if total == 0:
            if q.count_all_pairs(self.store) == 0:
                return ("No pairs to judge yet: make some first, e.g. "
                        "`preceptor pairs make --systems base,ft` (after generating both systems' answers).")
            return ("No pairs match the current selection (systems, split, task, collection). "
                    "Widen the selection or make pairs for it with `preceptor pairs make …`.")
        mine = self.count_mine()
        held = mine["held_by_others"]
        others = f"; {held} pair{'s' if held != 1 else ''} are being judged by other experts right now" if held else ""
        return (f"All done for you: you judged {mine['judged']} of the {total} pairs here{others}. "
                "Thank you! New pairs appear after `preceptor pairs make …`.")

    def shown(self, pair: ServedPair) -> None:
        """The app drew this pair now: dwell time and latency count from here."""
        self._shown_at[pair.pair_id] = time.monotonic()

    def served(self, pair_id: int) -> ServedPair:
        """The pair as served to this expert; refused unless it was served to them (a live
        reservation, e.g. from `judge next`) — scripted votes name a pair they were shown."""
        with self._lock:
            if pair_id not in self._served_at and q.get_reservation(self.store, pair_id, self.expert.id) is None:
                if q.get_pair(self.store, pair_id) is None:
                    raise PreceptorError("Unknown pair", f"no pair with id {pair_id}", "Use the pair id that `judge next` printed.")
                raise PreceptorError("Pair not served to you", f"pair {pair_id} is not currently served to {self.expert.name}",
                                     f"Get a pair with `preceptor judge next --as {self.expert.name!r}` and record that pair id "
                                     f"(a served pair stays yours for [judge] reservation_minutes = {self.settings.reservation_minutes:g}).")
            return self.pair(pair_id)

    def pair(self, pair_id: int) -> ServedPair:
        """The pair as it is (or would be) served to this expert: its reserved sides, else the default ones."""
        with self._lock:
            res = q.get_reservation(self.store, pair_id, self.expert.id)
            if res is not None:
                return self._build(pair_id, res["left_output_id"], bool(res["repeat"]))
            row = q.get_pair(self.store, pair_id)
            if row is None:
                raise PreceptorError("Unknown pair", f"no pair with id {pair_id}", "Use the pair id that `judge next` printed.")
            rep = q.repeat_of(self.store, self.expert.id, pair_id)
            if rep is not None and rep["due_after"] <= self._count:  # served as a repeat, reservation lapsed since
                swapped = row["output_b"] if rep["left_output_id"] == row["output_a"] else row["output_a"]
                return self._build(pair_id, swapped, True, row)
            return self._build(pair_id, self.default_left(pair_id, row["output_a"], row["output_b"]), False, row)

    def _verdict_fields(self, pair: dict[str, Any], left: int, verdict: str, unsafe: tuple[str, ...] | list[str] | str) -> dict[str, Any]:
        if verdict not in EXPERT_VERDICTS:
            raise PreceptorError("Invalid verdict", f"verdict {verdict!r} is not one of A, B, tie, both_bad",
                                 "A = the left answer is better, B = the right one; tie; both_bad = neither is acceptable.")
        if isinstance(unsafe, str):
            unsafe = (unsafe,)
        labels: set[str] = set()
        for u in unsafe or ():
            u = str(u).strip()
            if u == "both":
                labels |= {"A", "B"}
            elif u in ("A", "B"):
                labels.add(u)
            else:
                raise PreceptorError("Invalid unsafe flag", f"unsafe {u!r} is not A, B or both", "Flag the side as shown: A, B or both.")
        if left not in (pair["output_a"], pair["output_b"]):
            raise PreceptorError("Invalid sides", f"output {left} is not part of pair {pair['id']}", "Serve the pair with `judge next` first.")
        right = pair["output_b"] if left == pair["output_a"] else pair["output_a"]
        by_label = {"A": left, "B": right}
        unsafe_ids = {by_label[x] for x in labels}
        fields: dict[str, Any] = {"left_output_id": left, "unsafe_a": pair["output_a"] in unsafe_ids,
                                  "unsafe_b": pair["output_b"] in unsafe_ids}
        if verdict in ("A", "B"):
            fields.update(verdict="win", winner_output_id=by_label[verdict])
        else:
            fields.update(verdict=verdict, winner_output_id=None)
        return fields

    def check_dwell(self, pair: ServedPair) -> None:
        """Raise :class:`TooSoon` unless the pair was drawn (:meth:`shown`) at least
        ``[judge] min_seconds`` ago: a key counts only for a pair the expert has seen."""
        shown = self._shown_at.get(pair.pair_id)
        waited = 0.0 if shown is None else time.monotonic() - shown
        if shown is None or waited < self.settings.min_seconds:
            raise TooSoon(waited, self.settings.min_seconds)

    @_writes
    def record(self, pair: ServedPair, verdict: str, *, unsafe: tuple[str, ...] = (), note: str | None = None,
               latency_ms: float | None = None, interactive: bool = False) -> int:
        """Store the verdict (A/B as shown); committed before this returns. Returns the judgment id.

        ``interactive`` (the app): the pair must have been drawn ``[judge] min_seconds`` ago
        (else :class:`TooSoon`, nothing stored); the latency is from the moment it was drawn.
        """
        with self._lock:
            if interactive:
                self.check_dwell(pair)
            if latency_ms is None and pair.pair_id in self._shown_at:
                latency_ms = (time.monotonic() - self._shown_at[pair.pair_id]) * 1000.0
            row = q.get_pair(self.store, pair.pair_id)
            if row is None:
                raise PreceptorError("Unknown pair", f"no pair with id {pair.pair_id}", "Use the pair id that `judge next` printed.")
            fields = self._verdict_fields(row, pair.left.output_id, verdict, unsafe)
            if latency_ms is None and pair.pair_id in self._served_at:
                latency_ms = (time.monotonic() - self._served_at[pair.pair_id]) * 1000.0
            elif latency_ms is None:  # served by another process (scripted next/record): its reservation's time
                res = q.get_reservation(self.store, pair.pair_id, self.expert.id)
                if res is not None and res["served_at"]:
                    latency_ms = max(0.0, (time.time() - res["served_at"]) * 1000.0)
            with self.store.tx():
                supersedes = None
                first_vote = False
                if not pair.repeat:
                    cur = q.current_expert_judgment(self.store, self.expert.name, pair.pair_id)
                    supersedes = cur["id"] if cur else None
                    first_vote = cur is None or bool((cur.get("meta") or {}).get("undo"))
                jid = q.insert_judgment(
                    self.store, pair_id=pair.pair_id, judge_kind="expert", judge_id=self.expert.name,
                    confidence=1.0, rationale=note or None, latency_ms=latency_ms, repeat=pair.repeat,
                    supersedes=supersedes, **self._who(), **fields)
                if pair.repeat:
                    q.drop_repeat(self.store, self.expert.id, pair.pair_id)
                    self._adjust_mine(repeats=-1)
                else:
                    if first_vote:
                        self._adjust_mine(judged=1, left=-1)
                    before = self._complete(pair.pair_id)
                    q.recount_expert_votes(self.store, pair.pair_id)
                    self._adjust_done(before, self._complete(pair.pair_id))
                    if first_vote and unit_hash(self.settings.seed, "repeat", identity(self.expert.name), pair.pair_id) < self.settings.repeat_share:
                        q.add_repeat(self.store, self.expert.id, pair.pair_id, self._count + 1 + self.settings.repeat_gap,
                                     fields["left_output_id"])
                q.drop_reservation(self.store, pair.pair_id, self.expert.id)
            self._count += 1
            self._served_at.pop(pair.pair_id, None)
            self._shown_at.pop(pair.pair_id, None)
            return jid

    def _who(self) -> dict[str, Any]:
        return {"os_user": self.os_user, "served_session": self.served_session}

    @_writes
    def skip(self, pair: ServedPair, *, interactive: bool = False) -> None:
        """Pass on this pair (recorded; others still get it; it comes back at the end of this
        expert's queue). ``interactive``: the same dwell rule as :meth:`record`."""
        with self._lock:
            if interactive:
                self.check_dwell(pair)
            self._shown_at.pop(pair.pair_id, None)
            with self.store.tx():
                cur = None if pair.repeat else q.current_expert_judgment(self.store, self.expert.name, pair.pair_id)
                q.insert_judgment(self.store, pair_id=pair.pair_id, judge_kind="expert", judge_id=self.expert.name,
                                  left_output_id=pair.left.output_id, verdict="skip", repeat=pair.repeat,
                                  supersedes=cur["id"] if cur else None, **self._who())
                if pair.repeat:
                    q.drop_repeat(self.store, self.expert.id, pair.pair_id)
                else:
                    q.recount_expert_votes(self.store, pair.pair_id)
                q.drop_reservation(self.store, pair.pair_id, self.expert.id)
            self._count += 1

    @_writes
    def undo(self) -> ServedPair | None:
        """Take back this expert's last vote (or skip) and serve that pair again, same sides."""
        with self._lock:
            last = q.last_action(self.store, self.expert.name)
            if last is None:
                return None
            t = time.time()
            with self.store.tx():
                q.insert_judgment(self.store, pair_id=last["pair_id"], judge_kind="expert", judge_id=self.expert.name,
                                  left_output_id=last["left_output_id"], verdict="skip", repeat=bool(last["repeat"]),
                                  supersedes=last["id"], meta={"undo": True}, **self._who())
                pair = q.get_pair(self.store, last["pair_id"])
                assert pair is not None
                if last["repeat"]:
                    original = pair["output_b"] if last["left_output_id"] == pair["output_a"] else pair["output_a"]
                    q.add_repeat(self.store, self.expert.id, last["pair_id"], 0, original)
                    self._adjust_mine(repeats=1)
                else:
                    if last["verdict"] in ("win", "tie", "both_bad"):
                        self._adjust_mine(judged=-1, left=1)
                    before = self._complete(last["pair_id"])
                    q.recount_expert_votes(self.store, last["pair_id"])
                    self._adjust_done(before, self._complete(last["pair_id"]))
                    q.drop_repeat(self.store, self.expert.id, last["pair_id"])
                if self._preloaded is not None:
                    q.drop_reservation(self.store, self._preloaded.pair_id, self.expert.id)
                    self._preloaded = None
                self._reserve(last["pair_id"], last["left_output_id"], bool(last["repeat"]), t)
            self._current = self._build(last["pair_id"], last["left_output_id"], bool(last["repeat"]), pair)
            return self._current

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        """This expert's current votes and skips, newest first, labelled as they were shown."""
        out = []
        for r in q.expert_history(self.store, self.expert.name, limit):
            left = r["left_output_id"]
            if r["verdict"] == "win":
                verdict = "A" if r["winner_output_id"] == left else "B"
            else:
                verdict = r["verdict"]
            unsafe = []
            for out_id, flag in ((r["output_a"], r["unsafe_a"]), (r["output_b"], r["unsafe_b"])):
                if flag:
                    unsafe.append("A" if out_id == left else "B")
            prompt = " ".join((r["prompt"] or "").split())
            out.append({"judgment_id": r["id"], "pair_id": r["pair_id"], "prompt_id": r["prompt_id"],
                        "prompt": _cut_words(prompt, 80), "verdict": verdict,
                        "unsafe": sorted(unsafe), "note": r["rationale"], "repeat": bool(r["repeat"]),
                        "time": r["created_at"], "latency_ms": r["latency_ms"]})
        return out

    def as_voted(self, judgment_id: int) -> tuple[ServedPair, dict[str, Any]]:
        """One of this expert's votes with its pair exactly as it was shown (same sides), and
        the vote (verdict as shown, unsafe, note, repeat): what history shows before a change."""
        with self._lock:
            old = q.get_judgment(self.store, judgment_id)
            if old is None or old["judge_kind"] != "expert" or old["judge_id"] != self.expert.name:
                raise PreceptorError("Unknown vote", f"judgment {judgment_id} is not a vote of {self.expert.name}",
                                     "Pick a vote from your history.")
            row = q.get_pair(self.store, old["pair_id"])
            assert row is not None
            pair = self._build(old["pair_id"], old["left_output_id"], bool(old["repeat"]), row)
        left = pair.left.output_id
        verdict = ("A" if old["winner_output_id"] == left else "B") if old["verdict"] == "win" else old["verdict"]
        unsafe = sorted(("A" if out == left else "B") for out, flag in ((row["output_a"], old["unsafe_a"]),
                                                                         (row["output_b"], old["unsafe_b"])) if flag)
        return pair, {"judgment_id": judgment_id, "verdict": verdict, "unsafe": unsafe, "note": old.get("rationale"),
                      "repeat": bool(old["repeat"]), "time": old["created_at"]}


    @_writes
    def change(self, judgment_id: int, verdict: str, *, unsafe: tuple[str, ...] = (), note: str | None = None) -> int:
        """Replace one of this expert's votes (A/B as it was shown) with a new, superseding judgment."""
        with self._lock:
            old = q.get_judgment(self.store, judgment_id)
            if old is None or old["judge_kind"] != "expert" or old["judge_id"] != self.expert.name:
                raise PreceptorError("Unknown vote", f"judgment {judgment_id} is not a vote of {self.expert.name}",
                                     "Pick a vote from your history.")
            if (old.get("meta") or {}).get("undo"):
                raise PreceptorError("Unknown vote", f"judgment {judgment_id} is an undo, not a vote", "Pick a vote from your history.")
            row = q.get_pair(self.store, old["pair_id"])
            assert row is not None
            fields = self._verdict_fields(row, old["left_output_id"], verdict, unsafe)
            with self.store.tx():
                if not q.is_current(self.store, judgment_id):
                    raise PreceptorError("Vote already changed", f"judgment {judgment_id} was superseded by a later one",
                                         "Change the newest vote for that pair (see your history).")
                jid = q.insert_judgment(self.store, pair_id=old["pair_id"], judge_kind="expert", judge_id=self.expert.name,
                                        confidence=1.0, rationale=note if note is not None else old.get("rationale"),
                                        repeat=bool(old["repeat"]), supersedes=judgment_id,
                                        meta={"changed_from": judgment_id}, **self._who(), **fields)
                if not old["repeat"]:
                    before = self._complete(old["pair_id"])
                    q.recount_expert_votes(self.store, old["pair_id"])
                    self._adjust_done(before, self._complete(old["pair_id"]))
            return jid

    @_writes
    def flag_bad_item(self, prompt_id: int, reason: str) -> None:
        """Take a prompt out of statistics, exports and the queue until the flag is cleared."""
        reason = " ".join((reason or "").split())
        if not reason:
            raise PreceptorError("Reason needed", "flagging a bad item needs a reason", "Say what is wrong, e.g. 'wrong reference'.")
        if not q.set_bad_item(self.store, prompt_id, f"{reason} (flagged by {self.expert.name})"):
            raise PreceptorError("Unknown prompt", f"no prompt with id {prompt_id}", "Flag the prompt of a served pair.")
        self._progress = None

    def llm_verdict(self, pair: ServedPair) -> dict[str, Any] | None:
        """The LLM judge's verdict in this expert's side labels (None if hidden by the setting or absent)."""
        mode = self.settings.show_llm_rationale
        if mode == "never":
            return None
        if mode == "after_vote":
            cur = q.current_expert_judgment(self.store, self.expert.name, pair.pair_id, repeat=pair.repeat)
            if cur is None or cur["verdict"] not in ("win", "tie", "both_bad"):
                return None
        j = q.latest_judgment_of_kind(self.store, pair.pair_id, "llm")
        if j is None:
            return None
        if j["verdict"] == "win":
            winner = "A" if j["winner_output_id"] == pair.left.output_id else "B"
        else:
            winner = j["verdict"]
        return {"winner": winner, "rationale": j.get("rationale") or "", "confidence": j.get("confidence"),
                "judge": j["judge_id"], "criteria": (j.get("meta") or {}).get("criteria")}

    def _complete(self, pair_id: int) -> bool:
        return q.pair_complete(self.store, pair_id)

    def _adjust_mine(self, **delta: int) -> None:
        """This session's own writes update its figures at once (the worker recounts them)."""
        if self._mine is not None:
            for k, d in delta.items():
                self._mine[k] = max(0, self._mine[k] + d)

    def _adjust_done(self, before: bool, after: bool) -> None:
        if self._progress is not None and before != after:
            t, (done, total) = self._progress
            self._progress = (t, (done + (1 if after else -1), total))

    def progress(self, refresh: bool = False) -> tuple[int, int]:
        """(pairs with all the votes they need, pairs) under this session's filter.

        Counted at most every ``PROGRESS_TTL`` seconds (this session's own votes update it at
        once); ``refresh=True`` counts now.
        """
        t = time.monotonic()
        if not refresh and self._progress is not None and t - self._progress[0] < self.PROGRESS_TTL:
            return self._progress[1]
        return self._count_progress()

    def _count_progress(self) -> tuple[int, int]:
        t = time.monotonic()
        value = (q.count_pairs(self.store, self.query, complete_only=True), q.count_pairs(self.store, self.query))
        with self._lock:
            self._progress = (t, value)
        return value

    @_writes
    def release(self) -> None:
        """Give back this session's reservations (closing the screen)."""
        with self._lock:
            with self.store.tx():
                q.drop_reservations_of(self.store, self.expert.id, host=self.host, pid=self.pid)
            self._preloaded = None
            self._current = None

    close = release

    def __enter__(self) -> ExpertSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
