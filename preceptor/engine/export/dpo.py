"""``preceptor export dpo``: DPO preference data that trains as-is in TRL.

Which pairs become training rows (each excluded pair is counted under the first rule it
fails, and an export that would be empty is an error listing those counts):

1. ``bad_item`` — the prompt was flagged as a bad item.
2. ``missing_output`` — one of the two answers has no text (a failed generation).
3. ``no_votes`` — no effective vote from the chosen source (superseded votes, skips and
   self-consistency repeats never count; each judge counts once per pair, its newest vote).
4. The verdict. Judges are ranked in tiers, **human (expert and imported labels) > llm >
   metric**; the highest tier holding a real verdict decides, by majority of its decisive
   votes. Within that tier, tie / both-bad votes abstain when there are decisive votes;
   if the tier holds only tie or both-bad votes the pair is excluded as ``tie`` /
   ``both_bad`` (a human's "neither" is not overruled by a machine). ``unparsed`` and
   ``inconsistent`` verdicts are not judgments: the next tier decides, and a pair with
   nothing else is excluded under that name. An even split of decisive votes is ``conflict``.
   With ``source="agreed"``, the human tier and the LLM tier must both decide and agree
   (``no_human_vote``, ``no_llm_vote``, ``disagreement``).
5. ``low_confidence`` — the mean confidence of the votes that carried the decision is below
   ``min_confidence``. A human vote without a confidence counts as 1.0, an LLM or metric
   vote without one as 0.0 (unknown).
6. ``unsafe_chosen`` — any effective vote of any judge kind (expert, imported, LLM, metric),
   on this pair or another one holding the same answer, flagged the winning answer unsafe:
   an unsafe answer is never ``chosen``, whatever ``source`` (it may well be ``rejected``).
   The manifest counts these exclusions by the kinds that flagged them.
7. ``identical`` — chosen and rejected have the same text.
8. ``duplicate`` — the same (prompt, chosen, rejected) was already exported.

The prompt is always the **student's** rendered prompt
(:func:`preceptor.prompts.templates.student_messages`), never the grounded teacher's prompt
with reference facts. Splits follow the prompt's split (default ``train``), so a val or
test prompt never enters training data.

**Against the reference** (``against_reference = SYSTEM``, ``--against-reference``): no
votes; each prompt's gold reference is ``chosen`` and SYSTEM's newest answer is ``rejected``
(self-play fine-tuning data, SPIN: the student learns to prefer the reference over what it
says now). Rules: ``bad_item``, ``no_reference``, ``missing_output``, ``identical``,
``duplicate``; ``source`` in the rows is ``reference``.

Formats (TRL): ``standard`` rows are ``{"prompt": str, "chosen": str, "rejected": str}``
(the prompt text is the system turn, a blank line, then the user turn(s)); ``conversational``
rows are ``{"prompt": [system, user messages], "chosen": [assistant message],
"rejected": [assistant message]}``. Metadata columns follow (pair and prompt ids, split,
task, systems, deciding source, judges, agreement, confidence, template hash).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import exports as q
from preceptor.db import prompts as q_prompts
from preceptor.db.prompts import Prompt, PromptFilter
from preceptor.db.store import now
from preceptor.engine.events import Done, EventStream, Log, Progress, check_cancel
from preceptor.engine.export.files import (
    check_out,
    manifest_path,
    preceptor_version,
    sha256_file,
    sha256_folder,
    write_jsonl,
)
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

SCHEMA = "preceptor.dpo-export/1"
SOURCES = ("expert", "llm", "metric", "agreed", "all")
STYLES = ("standard", "conversational")
FORMATS = ("jsonl", "parquet", "hf")
SPLIT_CHOICES = ("train", "val", "test", "all")
TIERS = (("human", ("expert", "imported")), ("llm", ("llm",)), ("metric", ("metric",)))
_TIER_OF = {k: name for name, kinds in TIERS for k in kinds}
_SOURCE_TIER = {"expert": "human", "llm": "llm", "metric": "metric"}
REFERENCE_RULES = ("bad_item", "no_reference", "missing_output", "identical", "duplicate")
RULES = ("bad_item", "missing_output", "no_votes", "no_human_vote", "no_llm_vote", "tie", "both_bad", "unparsed",
         "inconsistent", "conflict", "disagreement", "low_confidence", "unsafe_chosen", "identical", "duplicate")
META_COLUMNS = ("pair_id", "prompt_id", "split", "task", "collection", "chosen_system", "rejected_system",
                "chosen_output_id", "rejected_output_id", "source", "judges", "n_votes", "agreement", "confidence",
                "template_hash")


@dataclass(frozen=True)
class DPOExportOptions:
    split: str = "train"
    source: str = "all"
    min_confidence: float = 0.0
    collection: str | None = None
    style: str = "conversational"
    systems: tuple[str, str] | None = None
    student: str | None = None  # the system (name or role) the rows will train: its system prompt is the prompt's
    against_reference: str | None = None  # reference (chosen) vs this system's answers (rejected), no votes (SPIN)

    def __post_init__(self) -> None:
        if self.against_reference is not None and (self.source != "all" or self.systems or self.min_confidence):
            raise PreceptorError("Invalid option", "--against-reference pairs need no votes: --source, --systems and "
                                 "--min-confidence do not apply", "Drop those options, or drop --against-reference.")
        if self.split not in SPLIT_CHOICES:
            raise PreceptorError("Invalid option", f"--split {self.split!r} is not one of {', '.join(SPLIT_CHOICES)}",
                                 "DPO training data is the train split (the default).")
        if self.source not in SOURCES:
            raise PreceptorError("Invalid option", f"--source {self.source!r} is not one of {', '.join(SOURCES)}",
                                 "Use expert, llm, metric, agreed or all.")
        if self.style not in STYLES:
            raise PreceptorError("Invalid option", f"--style {self.style!r} is not one of {', '.join(STYLES)}",
                                 "Use standard or conversational.")
        if not 0.0 <= float(self.min_confidence) <= 1.0:
            raise PreceptorError("Invalid option", f"--min-confidence {self.min_confidence} is not in [0, 1]",
                                 "Use e.g. 0.7.")
        if self.systems is not None and len(self.systems) != 2:
            raise PreceptorError("Invalid option", f"systems {self.systems!r} must name two systems", "Give two names.")


# ----------------------------------------------------------------------------------------------
# deciding a pair
# ----------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _V:
    kind: str
    judge: str
    label: str  # a | b | tie | both_bad | unparsed | inconsistent
    confidence: float | None
    unsafe_a: bool
    unsafe_b: bool


def _conf(v: _V) -> float:
    if v.confidence is not None:
        return float(v.confidence)
    return 1.0 if v.kind in ("expert", "imported") else 0.0


def _decide_tier(votes: list[_V]) -> tuple[str, list[_V]]:
    """("a"|"b", carrying votes) or (exclusion reason, []) for the votes of one tier."""
    a = [v for v in votes if v.label == "a"]
    b = [v for v in votes if v.label == "b"]
    if a or b:
        if len(a) == len(b):
            return "conflict", []
        return ("a", a) if len(a) > len(b) else ("b", b)
    ties = sum(v.label == "tie" for v in votes)
    bad = sum(v.label == "both_bad" for v in votes)
    if ties or bad:
        return ("tie" if ties > bad else "both_bad"), []
    return ("inconsistent" if any(v.label == "inconsistent" for v in votes) else "unparsed"), []


def decide(votes: list[_V], source: str) -> tuple[str, list[_V], str | None]:
    """(outcome, votes that carried it, deciding tier): outcome "a"/"b" or an exclusion reason."""
    if len(votes) == 1 and source != "agreed":  # the common case, decided without building tiers
        v = votes[0]  # type: ignore[index]
        tier = _TIER_OF[v.kind]
        if source != "all" and _SOURCE_TIER[source] != tier:
            return "no_votes", [], None
        if v.label == "a" or v.label == "b":
            return v.label, [v], tier
        return v.label, [], (tier if v.label in ("tie", "both_bad") else None)
    tiers: dict[str, list[_V]] = defaultdict(list)
    kind_tier = _TIER_OF
    for v in votes:
        tiers[kind_tier[v.kind]].append(v)
    if source == "agreed":
        if not tiers["human"]:
            return "no_human_vote", [], None
        if not tiers["llm"]:
            return "no_llm_vote", [], None
        h, hv = _decide_tier(tiers["human"])
        if h not in ("a", "b"):
            return h, [], "human"
        m, mv = _decide_tier(tiers["llm"])
        if m not in ("a", "b"):
            return m, [], "llm"
        if h != m:
            return "disagreement", [], None
        return h, hv + mv, "agreed"
    wanted = {"expert": ("human",), "llm": ("llm",), "metric": ("metric",), "all": ("human", "llm", "metric")}[source]
    fallback: str | None = None
    for name in wanted:
        if not tiers[name]:
            continue
        outcome, carried = _decide_tier(tiers[name])
        if outcome in ("unparsed", "inconsistent"):
            fallback = fallback or outcome
            continue
        return outcome, carried, name
    return (fallback or "no_votes"), [], None


# ----------------------------------------------------------------------------------------------
# the student's prompt
# ----------------------------------------------------------------------------------------------

class _StudentPrompts:
    """The student's rendered prompt per prompt (``student_messages``), with its template hash.

    ``student_messages`` renders one fixed template around the prompt text; calling it
    100,000 times is most of an export's time, so the template is rendered once around a
    placeholder and filled per prompt. The shortcut is checked against the real call on
    the first prompt and every 500th after; any difference turns it off for good.
    """

    MARK = "\x00preceptor-prompt\x00"
    CHECK_EVERY = 500

    def __init__(self, store: Any = None, system_prompt: str | None = None) -> None:
        self.store = store
        self.system_prompt = system_prompt
        try:
            from preceptor.prompts.templates import student_messages
        except ImportError:  # the templates module is not installed yet in this tree
            student_messages = None  # type: ignore[assignment]
        self.fn = student_messages
        self.hashes: set[str] = set()
        self.shape: tuple[list[dict[str, str]], str] | None = None
        self.fast = student_messages is not None
        self.calls = 0

    def _real(self, prompt_id: int, text: str) -> tuple[list[dict[str, str]], str | None]:
        prompt = q_prompts.get(self.store, prompt_id) if self.store is not None and prompt_id else None
        if prompt is None:
            prompt = Prompt(prompt_id, text, None, "train", None, "", "", {}, None, None)
        msgs, h = self.fn(prompt, self.system_prompt)  # type: ignore[misc]
        return [{"role": m["role"], "content": m["content"]} for m in msgs if m["role"] in ("system", "user")], h

    def _filled(self, text: str) -> tuple[list[dict[str, str]], str] | None:
        if self.shape is None:
            try:
                self.shape = self._real(0, self.MARK)  # type: ignore[assignment]
            except Exception:  # noqa: BLE001 - the template rejects the placeholder: no shortcut
                self.fast = False
                return None
        msgs, h = self.shape
        return [{"role": m["role"], "content": m["content"].replace(self.MARK, text).strip()} for m in msgs], h

    def __call__(self, pid: int, text: str) -> tuple[list[dict[str, str]], str | None]:
        if self.fn is None:
            out: tuple[list[dict[str, str]], str | None] = ([{"role": "user", "content": text}], None)
        elif self.fast:
            filled = self._filled(text)
            if filled is not None and self.calls % self.CHECK_EVERY == 0:
                real = self._real(pid, text)
                if real != filled:
                    self.fast, filled = False, None
                out = real
            else:
                out = filled if filled is not None else self._real(pid, text)
            self.calls += 1
        else:
            out = self._real(pid, text)
        if out[1] and out[1] not in self.hashes:
            self.hashes.add(out[1])
        return out


def _prompt_text(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(m["content"] for m in messages)


STUDENT_ROLES = ("dpo", "ft", "base")


def student_system(project: Any, name: str | None) -> Any:
    """The system the exported rows will train (its system prompt is part of the prompt).

    ``name`` (a system name or role) when given; else the latest trainable ``ft``, then
    ``base`` system; None when the project has neither (no system prompt then).
    """
    from preceptor.db import systems as q_systems

    if name:
        return q_systems.resolve(project.store, name)
    for role in ("ft", "base"):
        found = q_systems.latest_trainable(project.store, role)
        if found is not None:
            return found
    return None


class _ChatText:
    """``standard`` rows carry the prompt as the student's chat template renders it (with the
    generation prompt), so TRL trains on exactly the text the student was asked; without a
    loadable tokenizer the plain turns are joined (and the manifest says so)."""

    def __init__(self, system: Any) -> None:
        self.tokenizer = None
        self.how = "plain turns (no student tokenizer)"
        model = getattr(system, "model", None) if system is not None else None
        if model and getattr(system, "backend", None) == "hf":
            try:
                from preceptor.engine.models import load_tokenizer

                tok = load_tokenizer(model)
                if getattr(tok, "chat_template", None):
                    self.tokenizer, self.how = tok, f"chat template of {system.name} ({model})"
            except Exception:  # noqa: BLE001 - no tokenizer: plain text, named in the manifest
                self.tokenizer = None

    def __call__(self, messages: list[dict[str, str]]) -> str:
        if self.tokenizer is None:
            return _prompt_text(messages)
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------

def _filter(project: Project, opts: DPOExportOptions) -> PromptFilter:
    if opts.collection and q.collection_kind(project.store, opts.collection) is None:
        names = ", ".join(q.collection_names(project.store)) or "none"
        raise PreceptorError("Unknown collection", f"no collection named {opts.collection!r}", f"Collections: {names}.")
    # the project's own collections, listed (cheaper per row than the filter's sub-query)
    own = [opts.collection] if opts.collection else q.collection_names(project.store, kind="prompts") or None
    return PromptFilter(split=None if opts.split == "all" else opts.split, collections=own, include_bad=True)


_SOURCE_KINDS: dict[str, tuple[str, ...] | None] = {
    "expert": ("expert", "imported"), "llm": ("llm",), "metric": ("metric",), "agreed": ("expert", "imported", "llm"),
    "all": None}


def _effective(pair: tuple[Any, ...], rows: list[tuple[Any, ...]]) -> list[_V]:
    """One vote per judge (its newest; rows come oldest first), repeats left out."""
    a, b = pair[q.P_OUTPUT_A], pair[q.P_OUTPUT_B]
    if len(rows) == 1:  # the common case
        r = rows[0]
        if r[q.V_REPEAT]:
            return []
        return [_vote(r, a, b)]
    latest: dict[tuple[str, str], _V] = {}
    for r in rows:
        if not r[q.V_REPEAT]:
            latest[(r[q.V_KIND], str(r[q.V_JUDGE]))] = _vote(r, a, b)
    return list(latest.values())


def _vote(r: tuple[Any, ...], a: int, b: int) -> _V:
    verdict = r[q.V_VERDICT]
    if verdict == "win":
        w = r[q.V_WINNER]
        label = "a" if w == a else "b" if w == b else "unparsed"
    else:
        label = verdict
    return _V(r[q.V_KIND], str(r[q.V_JUDGE]), label, r[q.V_CONFIDENCE], bool(r[q.V_UNSAFE_A]), bool(r[q.V_UNSAFE_B]))


def _student_systems(project: Any) -> list[Any]:
    """Systems whose answers come from the student prompt (hf students, not imported)."""
    from preceptor.db import systems as q_systems

    return [s for s in q_systems.all_systems(project.store)
            if s.role in STUDENT_ROLES and s.backend == "hf" and not s.imported]


def iter_reference_records(project: Project, opts: DPOExportOptions, stats: dict[str, Any],
                           cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    """Rows of ``against_reference``: the prompt's reference is chosen, the system's answer rejected."""
    from preceptor.db import systems as q_systems

    flt = _filter(project, opts)
    rejected_system = q_systems.resolve(project.store, str(opts.against_reference))
    target = student_system(project, opts.student) if opts.student else rejected_system
    system_prompt = ((target.params or {}).get("system_prompt") if target is not None else None) or None
    student = _StudentPrompts(project.store, system_prompt)
    is_student = rejected_system.id in {s.id for s in _student_systems(project)}
    conversational = opts.style == "conversational"
    chat_text = None if conversational else _ChatText(target)
    excluded = {r: 0 for r in REFERENCE_RULES}
    stats.update(excluded=excluded, considered=0, exported=0, sources={}, prompt_template_hashes=[],
                 student_prompt="student_messages" if student.fn else "plain user turn (templates module missing)",
                 student_system=target.name if target is not None else None, system_prompt=bool(system_prompt),
                 unsafe_flagged_by={})
    seen: set[bytes] = set()
    mismatched: list[int] = []
    considered = exported = 0
    for i, row in enumerate(q.reference_rows(project.store, flt, rejected_system.id)):
        if i % 1000 == 0:
            check_cancel(cancel)
        (prompt_id, prompt_text, reference, split, task, collection, bad_item, output_id, text, out_hash) = row
        considered += 1
        if bad_item is not None:
            excluded["bad_item"] += 1
            continue
        if reference is None or not reference.strip():
            excluded["no_reference"] += 1
            continue
        if text is None or not text.strip():
            excluded["missing_output"] += 1
            continue
        if reference.strip() == text.strip():
            excluded["identical"] += 1
            continue
        messages, thash = student(prompt_id, prompt_text)
        if is_student and out_hash and thash and out_hash != thash:
            mismatched.append(output_id)
        turns = "\x1f".join(f"{m['role']}\x1e{m['content']}" for m in messages)
        key = hashlib.blake2b(f"{turns}\x1d{reference}\x1f{text}".encode(), digest_size=20).digest()
        if key in seen:
            excluded["duplicate"] += 1
            continue
        seen.add(key)
        if conversational:
            rec: dict[str, Any] = {"prompt": messages, "chosen": [{"role": "assistant", "content": reference}],
                                   "rejected": [{"role": "assistant", "content": text}]}
        else:
            rec = {"prompt": chat_text(messages) if chat_text else _prompt_text(messages), "chosen": reference,
                   "rejected": text}
        rec.update(pair_id=None, prompt_id=prompt_id, split=split, task=task, collection=collection,
                   chosen_system="reference", rejected_system=rejected_system.name, chosen_output_id=None,
                   rejected_output_id=output_id, source="reference", judges="", n_votes=0, agreement=None,
                   confidence=None, template_hash=thash)
        exported += 1
        stats["considered"], stats["exported"] = considered, exported
        yield rec
    stats["considered"], stats["exported"] = considered, exported
    if exported:
        stats["sources"]["reference"] = exported
    if mismatched:
        shown = ", ".join(str(o) for o in mismatched[:10]) + (" …" if len(mismatched) > 10 else "")
        raise PreceptorError(
            "Prompt mismatch",
            f"{len(mismatched)} answers of {rejected_system.name} were generated from another prompt than "
            f"{target.name if target is not None else 'the student'}'s (template hash differs; output ids {shown})",
            f"Regenerate them (`preceptor generate --system {rejected_system.name}`), or name the student they were "
            "generated for with --student.")
    if chat_text is not None:
        stats["student_prompt"] = chat_text.how
    stats["prompt_template_hashes"] = sorted(student.hashes)
    stats["out_of_split"] = 0


def iter_dpo_records(project: Project, opts: DPOExportOptions, stats: dict[str, Any],
                     cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    """Yield export rows one by one; ``stats`` ({"excluded", "considered", ...}) is complete
    once the generator is exhausted."""
    if opts.against_reference is not None:
        yield from iter_reference_records(project, opts, stats, cancel)
        return
    flt = _filter(project, opts)
    target = student_system(project, opts.student)
    system_prompt = ((target.params or {}).get("system_prompt") if target is not None else None) or None
    student = _StudentPrompts(project.store, system_prompt)
    student_ids = {s.id for s in _student_systems(project)}
    mismatched: list[int] = []
    excluded = {r: 0 for r in RULES}
    sources: dict[str, int] = {}
    stats.update(excluded=excluded, considered=0, exported=0, sources=sources, prompt_template_hashes=[],
                 student_prompt="student_messages" if student.fn else "plain user turn (templates module missing)")
    seen: set[bytes] = set()
    want = set(opts.systems) if opts.systems else None
    conversational = opts.style == "conversational"
    chat_text = None if conversational else _ChatText(target)
    stats["student_system"] = target.name if target is not None else None
    stats["system_prompt"] = bool(system_prompt)
    min_conf = float(opts.min_confidence)
    considered = exported = 0
    names = q.system_names(project.store)
    unsafe = q.unsafe_outputs(project.store)  # flags from every judge kind, whatever the source
    flagged_by: dict[str, int] = {}
    stats["unsafe_flagged_by"] = flagged_by
    for i, (row, vote_rows) in enumerate(q.pairs_with_votes(project.store, flt, kinds=_SOURCE_KINDS[opts.source])):
        if i % 1000 == 0:
            check_cancel(cancel)
        sys_a, sys_b = names.get(row[q.P_SYSTEM_A]), names.get(row[q.P_SYSTEM_B])
        if want is not None and {sys_a, sys_b} != want:
            continue
        considered += 1
        if row[q.P_BAD_ITEM] is not None:
            excluded["bad_item"] += 1
            continue
        ta, tb = row[q.P_TEXT_A], row[q.P_TEXT_B]
        if ta is None or tb is None or not ta.strip() or not tb.strip():
            excluded["missing_output"] += 1
            continue
        pv = _effective(row, vote_rows)
        if not pv:
            excluded["no_votes"] += 1
            continue
        outcome, carried, tier = decide(pv, opts.source)
        if outcome != "a" and outcome != "b":
            excluded[outcome] += 1
            continue
        single = len(pv) == 1  # one vote decided it: the common case, without the generic bookkeeping
        confidence = _conf(carried[0]) if single else sum(_conf(v) for v in carried) / len(carried)
        if min_conf > 0 and confidence < min_conf:
            excluded["low_confidence"] += 1
            continue
        chosen_out = row[q.P_OUTPUT_A] if outcome == "a" else row[q.P_OUTPUT_B]
        if chosen_out in unsafe:
            excluded["unsafe_chosen"] += 1
            for kind in unsafe[chosen_out]:
                flagged_by[kind] = flagged_by.get(kind, 0) + 1
            continue
        if outcome == "a":
            chosen, rejected = ta, tb
            chosen_system, rejected_system = sys_a, sys_b
            chosen_id, rejected_id = row[q.P_OUTPUT_A], row[q.P_OUTPUT_B]
        else:
            chosen, rejected = tb, ta
            chosen_system, rejected_system = sys_b, sys_a
            chosen_id, rejected_id = row[q.P_OUTPUT_B], row[q.P_OUTPUT_A]
        if chosen.strip() == rejected.strip():
            excluded["identical"] += 1
            continue
        prompt_id = row[q.P_PROMPT_ID]
        messages, thash = student(prompt_id, row[q.P_PROMPT_TEXT])
        # the students' answers in this pair were generated from exactly this prompt, or the row lies
        for sid, h in ((row[q.P_SYSTEM_A], row[q.P_HASH_A]), (row[q.P_SYSTEM_B], row[q.P_HASH_B])):
            if sid in student_ids and h and thash and h != thash:
                mismatched.append(row[q.P_PAIR_ID])
                break
        turns = "\x1f".join(f"{m['role']}\x1e{m['content']}" for m in messages)
        key = hashlib.blake2b(f"{turns}\x1d{chosen}\x1f{rejected}".encode(), digest_size=20).digest()
        if key in seen:
            excluded["duplicate"] += 1
            continue
        seen.add(key)
        n_decisive = 1 if single else sum(1 for v in pv if (v.label == "a" or v.label == "b")
                                          and (tier == "agreed" or _TIER_OF[v.kind] == tier))
        if conversational:
            rec: dict[str, Any] = {"prompt": messages, "chosen": [{"role": "assistant", "content": chosen}],
                                   "rejected": [{"role": "assistant", "content": rejected}]}
        else:
            rec = {"prompt": chat_text(messages) if chat_text else _prompt_text(messages), "chosen": chosen,
                   "rejected": rejected}
        rec["pair_id"] = row[q.P_PAIR_ID]
        rec["prompt_id"] = prompt_id
        rec["split"] = row[q.P_SPLIT]
        rec["task"] = row[q.P_TASK]
        rec["collection"] = row[q.P_COLLECTION]
        rec["chosen_system"] = chosen_system
        rec["rejected_system"] = rejected_system
        rec["chosen_output_id"] = chosen_id
        rec["rejected_output_id"] = rejected_id
        rec["source"] = tier
        rec["judges"] = ",".join(sorted(f"{v.kind}:{v.judge}" for v in carried)) if len(carried) > 1 \
            else f"{carried[0].kind}:{carried[0].judge}"
        rec["n_votes"] = len(pv)
        rec["agreement"] = len(carried) / n_decisive if n_decisive else 1.0
        rec["confidence"] = confidence
        rec["template_hash"] = thash
        exported += 1
        sources[tier] = sources.get(tier, 0) + 1  # type: ignore[index]
        stats["considered"], stats["exported"] = considered, exported
        yield rec
    stats["considered"], stats["exported"] = considered, exported
    if mismatched:
        shown = ", ".join(str(p) for p in mismatched[:10]) + (" …" if len(mismatched) > 10 else "")
        who = target.name if target is not None else "the student"
        raise PreceptorError(
            "Prompt mismatch",
            f"{len(mismatched)} pairs hold student answers generated from another prompt than {who}'s "
            f"(template hash differs; pair ids {shown})",
            "Regenerate those answers with the current system prompt (`preceptor generate`), or name the student "
            "they were generated for with --student.")
    if chat_text is not None:
        stats["student_prompt"] = chat_text.how
    stats["prompt_template_hashes"] = sorted(student.hashes)
    stats["out_of_split"] = q.count_pairs_outside(project.store, flt) if opts.split != "all" else 0


def _empty_error(opts: DPOExportOptions, stats: dict[str, Any]) -> PreceptorError:
    counts = {k: v for k, v in stats["excluded"].items() if v}
    listed = ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
    where = f"split {opts.split}" + (f", collection {opts.collection}" if opts.collection else "")
    if opts.against_reference is not None:
        return PreceptorError("Empty export", f"no prompt gives a pair ({where}, reference vs {opts.against_reference}): "
                              f"{stats['considered']} prompts considered; excluded: {listed}",
                              f"Generate {opts.against_reference}'s answers on the {opts.split} split first "
                              "(`preceptor generate`), and import prompts with references.")
    msg = f"no pair qualifies ({where}, source {opts.source}): {stats['considered']} pairs considered; excluded: {listed}"
    if stats.get("out_of_split"):
        msg += f"; {stats['out_of_split']} judged pairs are in other splits"
    hint = "Judge more pairs"
    if opts.source != "all":
        hint += ", try --source all"
    if opts.min_confidence > 0:
        hint += ", lower --min-confidence"
    if stats.get("out_of_split") and opts.split != "all":
        hint += ", or pick another --split (val/test prompts never enter training data by default)"
    return PreceptorError("Empty export", msg, hint + ".")


def dpo_records(project: Project, opts: DPOExportOptions = DPOExportOptions()) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """TRL rows and the counts ({"excluded": {rule: n}, "considered", ...}); empty → PreceptorError."""
    stats: dict[str, Any] = {}
    rows = list(iter_dpo_records(project, opts, stats))
    if not rows:
        raise _empty_error(opts, stats)
    return rows, stats


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------

def _arrow_schema(style: str):  # -> pyarrow.Schema
    import pyarrow as pa

    msg = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    text = msg if style == "conversational" else pa.string()
    fields = [("prompt", text), ("chosen", msg if style == "conversational" else pa.string()),
              ("rejected", msg if style == "conversational" else pa.string()),
              ("pair_id", pa.int64()), ("prompt_id", pa.int64()), ("split", pa.string()), ("task", pa.string()),
              ("collection", pa.string()), ("chosen_system", pa.string()), ("rejected_system", pa.string()),
              ("chosen_output_id", pa.int64()), ("rejected_output_id", pa.int64()), ("source", pa.string()),
              ("judges", pa.string()), ("n_votes", pa.int64()), ("agreement", pa.float64()),
              ("confidence", pa.float64()), ("template_hash", pa.string())]
    return pa.schema(fields)


def _write_parquet(rows: Iterable[dict[str, Any]], tmp: Path, style: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(style)
    n = 0
    writer = pq.ParquetWriter(tmp, schema)
    try:
        batch: list[dict[str, Any]] = []
        for rec in rows:
            batch.append(rec)
            if len(batch) >= 10_000:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n += len(batch)
                batch.clear()
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
    finally:
        writer.close()
    return n


def _write_hf(rows: list[dict[str, Any]], tmp: Path, style: str) -> int:
    import datasets
    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=_arrow_schema(style))
    datasets.Dataset(table).save_to_disk(str(tmp))
    return len(rows)


def export_dpo(project: Project, out: Path, opts: DPOExportOptions = DPOExportOptions(), fmt: str = "jsonl",
               cancel: threading.Event | None = None) -> EventStream:
    """Write the DPO export (file + manifest + an ``exports`` row); Done({"path","n","sha256","excluded",...})."""
    if fmt not in FORMATS:
        raise PreceptorError("Invalid option", f"--format {fmt!r} is not one of {', '.join(FORMATS)}", "Use jsonl, parquet or hf.")
    out = Path(out).expanduser().resolve()
    check_out(out)
    stats: dict[str, Any] = {}
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    what = f"reference vs {opts.against_reference}" if opts.against_reference is not None else f"source {opts.source}"
    yield Log("info", f"exporting DPO pairs (split {opts.split}, {what}, style {opts.style}) to {out}")
    rows = iter_dpo_records(project, opts, stats, cancel)
    try:
        if fmt == "jsonl":
            n = write_jsonl(rows, tmp)
        elif fmt == "parquet":
            n = _write_parquet(rows, tmp, opts.style)
        else:
            collected = list(rows)
            if not collected:
                raise _empty_error(opts, stats)
            n = _write_hf(collected, tmp, opts.style)
        check_cancel(cancel)
        if n == 0:
            raise _empty_error(opts, stats)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()
    digest = sha256_folder(out) if fmt == "hf" else sha256_file(out)
    manifest = {
        "schema": SCHEMA, "kind": "dpo", "path": str(out), "format": fmt, "style": opts.style, "n": n,
        "sha256": digest, "sha256_of": "the data folder's files" if fmt == "hf" else "the data file",
        "filters": {**asdict(opts), "systems": list(opts.systems) if opts.systems else None},
        "considered": stats["considered"], "excluded": stats["excluded"],
        "out_of_split": stats.get("out_of_split", 0), "sources": stats["sources"],
        "rules": ("the prompt's reference chosen over the system's newest answer (no votes)" if opts.against_reference
                  else "votes: human > llm > metric, majority within the deciding tier") + "; see preceptor.engine.export.dpo",
        "columns": ["prompt", "chosen", "rejected", *META_COLUMNS],
        "student_prompt": stats["student_prompt"], "prompt_template_hashes": stats["prompt_template_hashes"],
        "student_system": stats.get("student_system"), "system_prompt": stats.get("system_prompt"),
        "unsafe_flagged_by": stats.get("unsafe_flagged_by", {}),
        "project": str(project.root), "project_schema_version": project.store.schema_version,
        "preceptor_version": preceptor_version(), "created_at": now(),
    }
    manifest_path(out).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    export_id = q.record_export(project.store, "dpo", str(out), manifest["filters"], n, digest, manifest)
    yield Progress(n, n, f"{n} pairs")
    yield Done({"path": str(out), "manifest": str(manifest_path(out)), "n": n, "sha256": digest,
                "excluded": stats["excluded"], "considered": stats["considered"], "export_id": export_id,
                "format": fmt, "style": opts.style, "out_of_split": stats.get("out_of_split", 0)})
