"""Import prompts from a file (``preceptor import``), split them without leakage, skip duplicates.

The import is one transaction: either every accepted row lands, or (on any bad input) the
database is unchanged and a :class:`PreceptorError` names the file, line and field.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.db.store import now
from preceptor.engine.events import Done, EventStream, Log, Progress, bulk_writes, check_cancel
from preceptor.engine.ingest.readers import read_records
from preceptor.engine.ingest.splits import (
    check_ratios,
    group_columns,
    group_note,
    hash_split,
    text_hash,
)
from preceptor.errors import PreceptorError
from preceptor.text import normalise

if TYPE_CHECKING:
    from preceptor.project import Project

PROMPT_COLUMNS = ("prompt",)
REFERENCE_COLUMNS = ("reference", "response_teacher", "output", "answer", "response", "chosen")
STUDENT_COLUMN = "response_student"
TEACHER_COLUMN = "response_teacher"
IMPORTED_BASE = "imported-base"
IMPORTED_TEACHER = "imported-teacher"
BATCH = 2_000  # rows between progress events / cancel checks
TX_ROWS = 200  # rows per write transaction: each holds the write lock for a few ms, so a vote barely waits


@dataclass(frozen=True)
class ImportOptions:
    prompt_col: str | None = None
    reference_col: str | None = None
    group_col: str | None = None
    task_col: str | None = None
    val_ratio: float = 0.1
    test_ratio: float = 0.0
    seed: int = 42
    task: str | None = None
    collection: str | None = None
    domain: str | None = None  # the domain pack whose [import] group_columns are tried too (default pharma)

    def __post_init__(self) -> None:
        check_ratios(self.val_ratio, self.test_ratio)


@dataclass
class ImportSummary:
    file: str
    collection: str
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})
    split_from_file: int = 0
    groups_kept_split: int = 0
    group_split_conflicts: int = 0
    student_outputs: int = 0
    teacher_outputs: int = 0
    columns: dict[str, str | None] = field(default_factory=dict)
    grouping: str = ""  # which column keeps a group in one split (detected, named, or none)


@dataclass(frozen=True)
class Columns:
    prompt: str | None
    instruction: str | None
    input: str | None
    reference: str | None
    group: str | None
    task: str | None
    split: str | None
    student: str | None
    teacher: str | None

    def used(self) -> set[str]:
        return {c for c in (self.prompt, self.instruction, self.input, self.reference, self.group, self.task,
                            self.split, self.student, self.teacher) if c}


def detect_columns(path: Path, line: int, record: dict[str, Any], opts: ImportOptions) -> Columns:
    keys = list(record)
    lower = {k.lower(): k for k in keys}

    def pick(explicit: str | None, candidates: tuple[str, ...], what: str) -> str | None:
        if explicit:
            if explicit not in record:
                raise PreceptorError(
                    "Missing column",
                    f"{path}:{line}: the {what} column {explicit!r} is not in the file",
                    f"Columns found: {', '.join(keys)}.",
                )
            return explicit
        for c in candidates:
            if c in lower:
                return lower[c]
        return None

    prompt = pick(opts.prompt_col, PROMPT_COLUMNS, "prompt")
    instruction = input_col = None
    if prompt is None:
        if "instruction" in lower:
            instruction = lower["instruction"]
            input_col = lower.get("input")
        elif "question" in lower:
            prompt = lower["question"]
        else:
            raise PreceptorError(
                "Missing prompt column",
                f"{path}:{line}: no 'prompt', 'instruction' or 'question' column (columns: {', '.join(keys)})",
                "Rename the column holding the prompts, or pass --prompt-col NAME.",
            )
    reference = pick(opts.reference_col, REFERENCE_COLUMNS, "reference")
    group = pick(opts.group_col, group_columns(opts.domain), "group")
    task = pick(opts.task_col, ("task",), "task")
    return Columns(
        prompt=prompt, instruction=instruction, input=input_col, reference=reference, group=group, task=task,
        split=lower.get("split"), student=lower.get(STUDENT_COLUMN), teacher=lower.get(TEACHER_COLUMN),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


@bulk_writes
def import_prompts(project: Project, file: Path | str, opts: ImportOptions = ImportOptions(),
                   cancel: threading.Event | None = None) -> EventStream:
    """Import a prompt file into ``project`` (a :class:`preceptor.project.Project`); yields events."""
    path = Path(file)
    store = project.store
    limit = project.settings.max_field_chars
    collection = opts.collection or path.stem
    summary = ImportSummary(file=str(path), collection=collection)
    records = read_records(path)
    try:
        first = next(records)
    except StopIteration:
        raise PreceptorError("Empty file", f"{path} has no rows", "Add at least one row under the header.")
    cols = detect_columns(path, first[0], first[1], opts)
    summary.columns = {"prompt": cols.prompt or f"{cols.instruction}+{cols.input}", "reference": cols.reference,
                       "group": cols.group, "task": cols.task, "split": cols.split}
    yield Log("info", f"columns: prompt={summary.columns['prompt']} reference={cols.reference} group={cols.group} task={cols.task}")
    summary.grouping = group_note(cols.group, opts.group_col, "prompt text")
    yield Log("info", summary.grouping)

    def all_records() -> Iterator[tuple[int, dict[str, Any]]]:
        yield first
        yield from records

    q_prompts.drop_stale_imports(store)
    import_id = q_prompts.begin_import(store, "prompts", str(path))
    try:
        existing_hashes = q_prompts.hashes_in_collection(store, collection)
        group_split: dict[str, str | None] = {}
        pending: list[tuple[Any, ...]] = []
        side: list[tuple[str, str | None, str | None]] = []  # (hash, student, teacher)
        created = now()

        def flush() -> None:
            if not pending:
                return
            with store.tx():  # one short transaction per batch: votes get the lock in between
                q_prompts.insert_many(store, pending, import_id)
                if cols.student or cols.teacher:
                    _import_outputs(project, collection, side, summary)
            pending.clear()
            side.clear()

        for line, rec in all_records():
            summary.rows += 1
            if summary.rows % BATCH == 0:
                check_cancel(cancel)
                yield Progress(summary.rows, None, f"{summary.imported} imported")
            where = f"{path}:{line}"
            if cols.prompt:
                text = _text(rec.get(cols.prompt))
            else:
                instr = _text(rec.get(cols.instruction)) or ""
                extra = _text(rec.get(cols.input)) if cols.input else None
                text = f"{instr}\n\n{extra}" if extra and extra.strip() else instr
            if text is None or not text.strip():
                raise PreceptorError("Empty prompt", f"{where}: field {cols.prompt or cols.instruction!r} is empty",
                                     "Fill in the prompt or delete the row.")
            reference = _text(rec.get(cols.reference)) if cols.reference else None
            for name, value in ((cols.prompt or cols.instruction, text), (cols.reference, reference)):
                if value is not None and len(value) > limit:
                    raise PreceptorError(
                        "Field too long",
                        f"{where}: field {name!r} has {len(value):,} characters (limit {limit:,})",
                        "Shorten it, or raise [project] max_field_chars in preceptor.toml.",
                    )
            h = text_hash(text)
            if h in existing_hashes:
                summary.duplicates += 1
                continue
            existing_hashes.add(h)
            group = normalise(_text(rec.get(cols.group)) or "") if cols.group else ""
            group = group or "text:" + h[:16]
            file_split = (_text(rec.get(cols.split)) or "").strip().lower() if cols.split else ""
            if file_split and file_split not in q_prompts.SPLITS:
                raise PreceptorError("Invalid split", f"{where}: split {file_split!r} is not train, val or test",
                                     "Use train, val or test, or drop the split column to split automatically.")
            if group not in group_split:
                group_split[group] = q_prompts.split_of_group(store, group)
                if group_split[group]:
                    summary.groups_kept_split += 1
            known = group_split[group]
            if file_split:
                split = file_split
                summary.split_from_file += 1
                if known and known != split:
                    summary.group_split_conflicts += 1
                elif not known:
                    group_split[group] = split
            elif known:
                split = known
            else:
                split = hash_split(group, opts.seed, opts.val_ratio, opts.test_ratio)
                group_split[group] = split
            task = (_text(rec.get(cols.task)) if cols.task else None) or opts.task
            used = cols.used()
            meta = {k: _jsonable(v) for k, v in rec.items() if k not in used}
            pending.append((text, h, reference, split, task, group, collection,
                            json.dumps(meta, ensure_ascii=False) if meta else None, where, created))
            if cols.student or cols.teacher:
                side.append((h, _text(rec.get(cols.student)) if cols.student else None,
                             _text(rec.get(cols.teacher)) if cols.teacher else None))
            summary.imported += 1
            summary.splits[split] += 1
            if len(pending) >= TX_ROWS:
                flush()
        flush()
        check_cancel(cancel)
        q_prompts.publish_import(store, import_id, collection, "prompts", str(path))  # all rows visible at once
    except BaseException:
        q_prompts.drop_import(store, import_id)
        raise
    q_prompts.settle_import(store, import_id)
    if summary.group_split_conflicts:
        yield Log("warning", f"{summary.group_split_conflicts} rows keep the file's split although their group is in another split (possible leakage)")
    if summary.duplicates:
        yield Log("info", f"{summary.duplicates} duplicate prompts skipped")
    yield Progress(summary.rows, summary.rows, f"{summary.imported} imported")
    yield Done(summary.__dict__)


def _import_outputs(project: Project, collection: str, side: list[tuple[str, str | None, str | None]], summary: ImportSummary) -> None:
    """Store ``response_student`` / ``response_teacher`` columns as imported outputs."""
    from preceptor.db import outputs as q_outputs

    store = project.store
    ids = q_prompts.ids_by_hash(store, collection, [h for h, _, _ in side])
    for idx, (role, name) in enumerate((("base", IMPORTED_BASE), ("teacher", IMPORTED_TEACHER)), start=1):
        rows = [(ids[item[0]], item[idx]) for item in side if item[idx] and item[idx].strip()]
        if not rows:
            continue
        system = q_systems.by_name(store, name) or q_systems.upsert(
            store, name, role=role, backend="imported", imported=True, meta={"note": "outputs imported from a file column"})
        q_outputs.record_many(store, [dict(prompt_id=pid, system_id=system.id, text=text) for pid, text in rows])
        if role == "base":
            summary.student_outputs += len(rows)
        else:
            summary.teacher_outputs += len(rows)
