"""Import external human pairwise labels into their own collection.

``preceptor import-judgments FILE --format llmbar|pandalm|generic [--collection NAME]``

Each item (a prompt, two answers — an empty answer is kept: humans judged it — and its labels) becomes a prompt (split
``test``) in a collection of kind ``judgments``, two outputs of placeholder systems named
``COLLECTION:LABEL`` (backend ``imported``), a pair and one vote per human label
(``judge_kind = 'imported'``, ``judge_id = COLLECTION/ANNOTATOR``). The collection is
left out of the project's own generation, statistics and exports unless named, so
agreement with real humans can be measured without mixing their prompts in.

Formats:

* ``llmbar`` — a JSON array of ``{input, output_1, output_2, label}`` (label 1 or 2);
* ``pandalm`` — a JSON array of ``{instruction, input, response1, response2, cmp_key,
  annotator1..3}`` (0 = tie, 1, 2); the upstream file holds bare ``NaN`` values, read as
  missing (a missing input is no input; a missing label is no vote);
* ``generic`` — CSV, TSV, JSONL, JSON or Parquet with ``prompt``, ``answer_a``,
  ``answer_b``, ``winner`` (A, B, tie, both_bad, or 1, 2, 0) and optional ``judge``,
  ``system_a``, ``system_b``, ``reference`` columns; one row per vote.

The import is one transaction; re-importing the same file adds nothing.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import judging as q
from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.db.store import now
from preceptor.engine.events import Done, EventStream, Log, Progress, bulk_writes, check_cancel
from preceptor.engine.ingest.splits import text_hash
from preceptor.engine.judging.pairs import int_hash, same_text
from preceptor.errors import PreceptorError

TX_ROWS = 200  # prompts per short transaction
TX_ITEMS = 100  # judged items (outputs, a pair, its votes) per short transaction

if TYPE_CHECKING:
    from preceptor.project import Project

FORMATS = ("llmbar", "pandalm", "generic")


@dataclass
class Item:
    where: str
    prompt: str
    reference: str | None
    answers: tuple[tuple[str, str], tuple[str, str]]  # ((system label, text), (system label, text))
    votes: list[tuple[str, str]]  # (annotator, "1" | "2" | "tie" | "both_bad")
    meta: dict[str, Any] = field(default_factory=dict)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _text(v: Any, where: str, name: str, *, required: bool = True) -> str | None:
    if _missing(v):
        if required:
            raise PreceptorError("Missing field", f"{where}: field {name!r} is empty or missing",
                                 "Fill it in or remove the item.")
        return None
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def _load_json_array(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PreceptorError("File not found", f"{path} does not exist", "Check the path.")
    except UnicodeDecodeError as exc:
        raise PreceptorError("Wrong encoding", f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})", "Save the file as UTF-8.")
    try:
        data = json.loads(text)  # Python's json reads the bare NaN of the PandaLM file as a float NaN
    except json.JSONDecodeError as exc:
        raise PreceptorError("Broken JSON", f"{path}:{exc.lineno}:{exc.colno}: {exc.msg}", "Fix the JSON at that line.")
    if not isinstance(data, list):
        raise PreceptorError("Unexpected JSON", f"{path}: expected an array of items, found {type(data).__name__}",
                             "The file must be a JSON array ([{...}, {...}]).")
    return data


def _label(v: Any, where: str, name: str, *, allow_tie: bool) -> str | None:
    """"1" / "2" / "tie" / "both_bad" from 1, 2, 0, "A", "B", "tie", ...; None when missing."""
    if _missing(v):
        return None
    s = str(v).strip().lower()
    if isinstance(v, float) and v.is_integer():
        s = str(int(v))
    mapping = {"1": "1", "a": "1", "2": "2", "b": "2"}
    if allow_tie:
        mapping.update({"0": "tie", "tie": "tie", "both_bad": "both_bad", "both bad": "both_bad"})
    if s not in mapping:
        allowed = "1, 2" + (", 0 (tie), A, B, tie, both_bad" if allow_tie else "")
        raise PreceptorError("Invalid label", f"{where}: {name} = {v!r} is not one of {allowed}", "Correct the label.")
    return mapping[s]


def read_llmbar(path: Path) -> list[Item]:
    items = []
    for i, rec in enumerate(_load_json_array(path)):
        where = f"{path}: item {i}"
        if not isinstance(rec, dict):
            raise PreceptorError("Unexpected JSON", f"{where} is not an object", "Each item must be {input, output_1, output_2, label}.")
        label = _label(rec.get("label"), where, "label", allow_tie=False)
        if label is None:
            raise PreceptorError("Missing field", f"{where}: field 'label' is empty or missing", "LLMBar labels are 1 or 2.")
        items.append(Item(where, _text(rec.get("input"), where, "input") or "", None,
                          (("output_1", _text(rec.get("output_1"), where, "output_1", required=False) or ""),
                           ("output_2", _text(rec.get("output_2"), where, "output_2", required=False) or "")),
                          [("label", label)], {"item": i}))
    return items


def read_pandalm(path: Path) -> list[Item]:
    items = []
    for i, rec in enumerate(_load_json_array(path)):
        where = f"{path}: item {i}"
        if not isinstance(rec, dict):
            raise PreceptorError("Unexpected JSON", f"{where} is not an object", "Each item must be a PandaLM test record.")
        instruction = _text(rec.get("instruction"), where, "instruction", required=False)
        extra = _text(rec.get("input"), where, "input", required=False)
        prompt = "\n\n".join(t for t in (instruction, extra) if t)
        if not prompt:
            raise PreceptorError("Missing field", f"{where}: fields 'instruction' and 'input' are both empty",
                                 "Fill in the instruction or remove the item.")
        key = rec.get("cmp_key")
        names = str(key).split("_", 1) if isinstance(key, str) and key.count("_") == 1 else ["response1", "response2"]
        if names[0] == names[1]:
            names = [names[0] + "-1", names[1] + "-2"]
        votes = []
        for n in (1, 2, 3):
            lab = _label(rec.get(f"annotator{n}"), where, f"annotator{n}", allow_tie=True)
            if lab is not None:
                votes.append((f"annotator{n}", lab))
        items.append(Item(where, prompt, None,
                          ((names[0], _text(rec.get("response1"), where, "response1", required=False) or ""),
                           (names[1], _text(rec.get("response2"), where, "response2", required=False) or "")),
                          votes, {"item": i, "idx": rec.get("idx"), "cmp_key": key,
                                  "missing_labels": 3 - len(votes)}))
    return items


GENERIC_COLUMNS = {
    "prompt": ("prompt", "question", "instruction", "input"),
    "answer_a": ("answer_a", "response_a", "output_1", "response1", "output_a"),
    "answer_b": ("answer_b", "response_b", "output_2", "response2", "output_b"),
    "winner": ("winner", "label", "verdict", "preference"),
    "judge": ("judge", "annotator", "rater"),
    "system_a": ("system_a", "model_a"),
    "system_b": ("system_b", "model_b"),
    "reference": ("reference",),
}


def read_generic(path: Path) -> list[Item]:
    from preceptor.engine.ingest.readers import read_records

    items: list[Item] = []
    cols: dict[str, str | None] | None = None
    for line, rec in read_records(path):
        where = f"{path}:{line}"
        if cols is None:
            lower = {k.lower(): k for k in rec}
            cols = {name: next((lower[c] for c in cands if c in lower), None) for name, cands in GENERIC_COLUMNS.items()}
            for need in ("prompt", "answer_a", "answer_b", "winner"):
                if cols[need] is None:
                    raise PreceptorError("Missing column", f"{where}: no {need!r} column (columns: {', '.join(rec)})",
                                         f"Name it one of: {', '.join(GENERIC_COLUMNS[need])}.")
        assert cols is not None

        def get(name: str, rec: dict[str, Any] = rec, cols: dict[str, str | None] = cols) -> Any:
            c = cols[name]
            return rec.get(c) if c else None

        lab = _label(get("winner"), where, cols["winner"] or "winner", allow_tie=True)
        judge = _text(get("judge"), where, "judge", required=False) or "human"
        items.append(Item(where, _text(get("prompt"), where, cols["prompt"] or "prompt") or "",
                          _text(get("reference"), where, "reference", required=False),
                          ((_text(get("system_a"), where, "system_a", required=False) or "a",
                            _text(get("answer_a"), where, "answer_a", required=False) or ""),
                           (_text(get("system_b"), where, "system_b", required=False) or "b",
                            _text(get("answer_b"), where, "answer_b", required=False) or "")),
                          [(judge, lab)] if lab is not None else [], {"line": line}))
    return items


READERS = {"llmbar": read_llmbar, "pandalm": read_pandalm, "generic": read_generic}


@dataclass(frozen=True)
class ImportJudgmentsOptions:
    format: str = "generic"
    collection: str | None = None

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise PreceptorError("Unknown format", f"--format {self.format!r} is not one of {', '.join(FORMATS)}",
                                 "Use llmbar, pandalm or generic.")


@bulk_writes
def import_judgments(project: Project, file: Path | str, opts: ImportJudgmentsOptions = ImportJudgmentsOptions(),
                     cancel: threading.Event | None = None) -> EventStream:
    path = Path(file)
    if not path.exists():
        raise PreceptorError("File not found", f"{path} does not exist", "Check the path.")
    collection = opts.collection or path.stem
    store = project.store
    limit = project.settings.max_field_chars
    yield Log("info", f"reading {path} as {opts.format}")
    items = READERS[opts.format](path)
    if not items:
        raise PreceptorError("Empty file", f"{path} has no items", "Nothing to import.")
    for it in items:
        for name, value in [("prompt", it.prompt), *[(f"answer {lab}", t) for lab, t in it.answers]]:
            if len(value) > limit:
                raise PreceptorError("Field too long", f"{it.where}: {name} has {len(value):,} characters (limit {limit:,})",
                                     "Shorten it, or raise [project] max_field_chars in preceptor.toml.")
    row = store.one("SELECT kind FROM collections WHERE name = ?", (collection,))
    if row is not None and row[0] != "judgments":
        raise PreceptorError("Collection holds prompts", f"collection {collection!r} holds the project's own prompts",
                             "Import judgments into their own collection: pass --collection NAME with a new name.")
    summary: dict[str, Any] = {"file": str(path), "format": opts.format, "collection": collection, "items": len(items),
                               "prompts": 0, "outputs": 0, "pairs": 0, "votes": 0, "existing_votes": 0, "duplicate_votes": 0,
                               "identical": 0, "missing_labels": 0, "verdicts": {"win": 0, "tie": 0, "both_bad": 0}}
    total = len(items)
    yield Progress(0, total, "importing")
    ts = now()
    # Staged: every row is written in short transactions (TX_ITEMS items each) under an import id
    # that keeps it out of sight; one quick statement publishes the lot, a failure or a kill drops it.
    q_prompts.drop_stale_imports(store)
    import_id = q_prompts.begin_import(store, "judgments", str(path))
    systems: dict[str, int] = {}
    try:
        hashes: dict[str, str] = {}
        new_rows = []
        existing = q_prompts.hashes_in_collection(store, collection)
        for it in items:
            h = text_hash(it.prompt)
            hashes[it.where] = h
            if h not in existing:
                existing.add(h)
                new_rows.append((it.prompt, h, it.reference, "test", None, "text:" + h[:16], collection,
                                 json.dumps({"format": opts.format}, ensure_ascii=False), it.where, ts))
        for k in range(0, len(new_rows), TX_ROWS):
            with store.tx():
                q_prompts.insert_many(store, new_rows[k:k + TX_ROWS], import_id)
        summary["prompts"] = len(new_rows)
        ids = q_prompts.ids_by_hash(store, collection, sorted(set(hashes.values())))
        check_cancel(cancel)
        # systems and outputs: one output per (prompt, system); a different text for the same
        # (prompt, system label) goes to a variant system LABEL#2, #3, ...

        def system_id(label: str) -> int:
            name = f"{collection}:{label}"
            if name not in systems:
                s = q_systems.by_name(store, name) or q_systems.upsert(
                    store, name, role="custom", backend="imported", imported=True,
                    meta={"collection": collection, "note": f"answers imported from {path.name}", "import_id": import_id})
                systems[name] = s.id
            return systems[name]

        known: dict[tuple[int, int], tuple[int, str]] = {}  # (prompt id, system id) -> (output id, text)

        def output_for(prompt_id: int, label: str, text: str) -> int:
            n = 1
            while True:
                sid = system_id(label if n == 1 else f"{label}#{n}")
                key = (prompt_id, sid)
                if key not in known:
                    got = q.output_ids(store, [prompt_id], sid).get(prompt_id)
                    if got is not None:
                        known[key] = (got[0], got[1] or "")
                if key in known:
                    if known[key][1] == text:
                        return known[key][0]
                    n += 1
                    continue
                q_outputs.record_many(store, [dict(prompt_id=prompt_id, system_id=sid, text=text)], import_id)
                oid = q.output_ids(store, [prompt_id], sid)[prompt_id][0]
                known[key] = (oid, text)
                summary["outputs"] += 1
                return oid

        seen: set[tuple[int, str]] = set()
        votes = 0
        for start in range(0, total, TX_ITEMS):
            check_cancel(cancel)
            yield Progress(start, total, "importing")
            judgments = []
            with store.tx():  # one short transaction per batch: votes get the lock in between
                for it in items[start:start + TX_ITEMS]:
                    summary["missing_labels"] += int(it.meta.get("missing_labels", 0))
                    pid = ids[hashes[it.where]]
                    (la, ta), (lb, tb) = it.answers
                    if same_text(ta, tb):
                        summary["identical"] += 1
                        continue
                    o1 = output_for(pid, la, ta)
                    o2 = output_for(pid, lb, tb)
                    if o1 == o2:  # pragma: no cover - same text under one label
                        summary["identical"] += 1
                        continue
                    oa, ob = sorted((o1, o2))
                    pair_id = q.pair_id_for(store, oa, ob)
                    if pair_id is None:
                        q.insert_pairs(store, [(pid, oa, ob, "test", 0.0, system_id_of(store, oa), system_id_of(store, ob), 1,
                                                int_hash("import", collection, oa, ob))], import_id)
                        pair_id = q.pair_id_for(store, oa, ob)
                        summary["pairs"] += 1
                    for annotator, lab in it.votes:
                        judge_id = f"{collection}/{annotator}"
                        meta = {"source": it.where, **{k2: v for k2, v in it.meta.items() if k2 != "missing_labels"}}
                        if (pair_id, judge_id) in seen:
                            summary["duplicate_votes"] += 1
                            continue
                        seen.add((pair_id, judge_id))
                        if q.has_judgment(store, pair_id, "imported", judge_id):
                            summary["existing_votes"] += 1
                            continue
                        if lab in ("1", "2"):
                            winner = o1 if lab == "1" else o2
                            fields = {"verdict": "win", "winner_output_id": winner}
                        else:
                            fields = {"verdict": lab, "winner_output_id": None}
                        summary["verdicts"][fields["verdict"]] += 1
                        judgments.append(dict(pair_id=pair_id, judge_kind="imported", judge_id=judge_id, left_output_id=o1,
                                              confidence=1.0, meta=meta, import_id=import_id, **fields))
                votes += q.insert_judgments(store, judgments)
        summary["votes"] = votes
        check_cancel(cancel)
        q_prompts.publish_import(store, import_id, collection, "judgments", str(path))  # all rows visible at once
    except BaseException:
        q_prompts.drop_import(store, import_id)
        raise
    q_prompts.settle_import(store, import_id)
    summary["systems"] = sorted(systems)
    if summary["identical"]:
        yield Log("info", f"{summary['identical']} items have two identical answers: no pair made")
    if summary["missing_labels"]:
        yield Log("info", f"{summary['missing_labels']} missing labels (NaN or empty): no vote recorded for them")
    yield Progress(total, total, f"{summary['votes']} votes")
    yield Done(summary)


def system_id_of(store: Any, output_id: int) -> int:
    from preceptor.db import outputs as q_out

    o = q_out.get(store, output_id)
    assert o is not None
    return o.system_id

