"""Data of the embedding track: pair import into curriculum stages, and the demo curriculum.

``import_pairs`` reads (anchor, positive[, negative][, score]) rows from CSV / TSV / JSONL /
JSON / Parquet into a curriculum stage — atomically, with file:line errors, skipping
duplicates and splitting by group (a group already in the stage keeps its split) — and
refreshes the stage's corpus (its distinct positives and negatives) that retrieval
evaluation and retriever systems search. Held-out anchors can be published as prompts
(``retrieval-<stage>`` collection, reference = the relevant document) so retriever systems
answer them and their outputs are paired and judged like any other.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from preceptor.db import embed as q_embed
from preceptor.db import prompts as q_prompts
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
from preceptor.text import identity, normalise

if TYPE_CHECKING:
    from preceptor.project import Project

# Column names tried in order (case-insensitive). The seed-002 files come as
# `dur_type,description,label` / `drug_type,description,label`: a term and its description.
ANCHOR_COLUMNS = ("anchor", "query", "question", "sentence1", "text1", "term", "dur_type", "drug_type", "type",
                  "keyword", "name", "product", "drug_name", "drug", "title")
POSITIVE_COLUMNS = ("positive", "document", "passage", "answer", "sentence2", "text2", "description", "definition",
                    "summary", "details", "explanation", "content")
NEGATIVE_COLUMNS = ("negative", "hard_negative")
SCORE_COLUMNS = ("score", "label", "similarity")
SOURCE_COLUMNS = ("source",)
BATCH = 2_000
TX_ROWS = 500  # rows per short transaction while staging an import
RETRIEVAL_TASK = "retrieval"

# The shipped demo curriculum: (stage name, file in preceptor/demo/data, description).
DEMO_STAGES = (
    ("drug_class", "embed_stage1.jsonl", "drug ↔ pharmacologic / mechanism class (DrugCentral)"),
    ("safety_type", "embed_stage2.jsonl", "safety question type ↔ description (MedQuAD)"),
    ("consumer_query", "embed_stage3.jsonl", "consumer question → drug; the query never names the drug"),
)


def query_collection(stage: str) -> str:
    """The prompt collection holding a stage's held-out queries for retrieval judging."""
    return f"retrieval-{stage}"


def doc_key(text: str) -> str:
    return hashlib.sha256(identity(text).encode("utf-8")).hexdigest()[:20]


@dataclass(frozen=True)
class PairImportOptions:
    stage: str
    anchor_col: str | None = None
    positive_col: str | None = None
    negative_col: str | None = None
    score_col: str | None = None
    group_col: str | None = None
    val_ratio: float = 0.1
    test_ratio: float = 0.0
    seed: int = 42
    queries: bool = False
    hidden_queries: bool = False  # publish the queries in a collection left out of default selections (the demo)
    domain: str | None = None  # the domain pack whose [import] group_columns are tried too

    def __post_init__(self) -> None:
        if not self.stage or not self.stage.strip():
            raise PreceptorError("Invalid option", "--stage is empty", "Name the curriculum stage, e.g. --stage drug_class.")
        if any(c in self.stage for c in " \t\n,/"):
            raise PreceptorError("Invalid option", f"--stage {self.stage!r} contains a space, comma or slash",
                                 "Use letters, digits, '-' and '_' (e.g. drug_class).")
        check_ratios(self.val_ratio, self.test_ratio)


@dataclass
class PairImportSummary:
    file: str
    stage: str
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    identical: int = 0
    with_negative: int = 0
    with_score: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})
    groups_kept_split: int = 0
    corpus_docs: int = 0
    queries_published: int = 0
    columns: dict[str, str | None] = field(default_factory=dict)
    grouping: str = ""  # which column keeps a group in one split (detected, named, or none)


@dataclass(frozen=True)
class _Cols:
    anchor: str
    positive: str
    negative: str | None
    score: str | None
    group: str | None
    source: str | None


def _detect(path: Path, line: int, record: dict[str, Any], opts: PairImportOptions) -> _Cols:
    keys = list(record)
    lower = {str(k).lower(): k for k in keys}

    def pick(explicit: str | None, candidates: tuple[str, ...], what: str, flag: str, required: bool) -> str | None:
        if explicit:
            if explicit not in record:
                raise PreceptorError("Missing column", f"{path}:{line}: the {what} column {explicit!r} is not in the file",
                                     f"Columns found: {', '.join(map(str, keys))}.")
            return explicit
        for c in candidates:
            if c in lower:
                return lower[c]
        if required:
            raise PreceptorError(
                f"Missing {what} column",
                f"{path}:{line}: no {what} column ({' / '.join(candidates)}); columns found: {', '.join(map(str, keys))}",
                f"Rename the column, or pass {flag} NAME.")
        return None

    anchor = pick(opts.anchor_col, ANCHOR_COLUMNS, "anchor", "--anchor-col", True)
    positive = pick(opts.positive_col, POSITIVE_COLUMNS, "positive", "--positive-col", True)
    group_candidates = tuple(c for c in group_columns(opts.domain) if c not in (str(anchor).lower(), str(positive).lower()))
    assert anchor and positive
    if anchor == positive:
        raise PreceptorError("Invalid columns", f"{path}: the anchor and positive columns are both {anchor!r}",
                             "Pass different --anchor-col and --positive-col.")
    return _Cols(anchor, positive,
                 pick(opts.negative_col, NEGATIVE_COLUMNS, "negative", "--negative-col", False),
                 pick(opts.score_col, SCORE_COLUMNS, "score", "--score-col", False),
                 pick(opts.group_col, group_candidates, "group", "--group-col", False),
                 lower.get("source"))


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    s = str(value)
    return s if s.strip() else None


def _score(value: Any, where: str, col: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise PreceptorError("Invalid score", f"{where}: {col!r} is {value!r}, not a number", "Use a number between -1 and 1.")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise PreceptorError("Invalid score", f"{where}: {col!r} is {value!r}, not a number", "Use a number between -1 and 1.")
    if math.isnan(x):
        return None
    if not -1.0 <= x <= 1.0:
        raise PreceptorError("Invalid score", f"{where}: {col!r} = {x:g} is outside [-1, 1]",
                             "Scores are target cosine similarities: rescale them into [-1, 1] (e.g. 0–5 ratings / 5).")
    return x


@bulk_writes
def import_pairs(project: Project, file: Path | str, opts: PairImportOptions, cancel: threading.Event | None = None) -> EventStream:
    """Import a pair file into stage ``opts.stage`` of ``project``; yields events, ends with Done(summary)."""
    path = Path(file)
    store = project.store
    limit = project.settings.max_field_chars
    summary = PairImportSummary(file=str(path), stage=opts.stage)
    records = read_records(path)
    try:
        first = next(records)
    except StopIteration:
        raise PreceptorError("Empty file", f"{path} has no rows", "Add at least one row under the header.")
    cols = _detect(path, first[0], first[1], opts)
    summary.columns = {"anchor": cols.anchor, "positive": cols.positive, "negative": cols.negative,
                       "score": cols.score, "group": cols.group}
    yield Log("info", f"columns: anchor={cols.anchor} positive={cols.positive} negative={cols.negative} "
                      f"score={cols.score} group={cols.group}")
    summary.grouping = group_note(cols.group, opts.group_col, "anchor")
    yield Log("info", summary.grouping)

    def all_records() -> Iterator[tuple[int, dict[str, Any]]]:
        yield first
        yield from records

    published: list[tuple[str, str, str, str]] = []
    # Staged: pairs, documents and held-out queries are written in short transactions under an
    # import id that keeps them out of sight; one quick statement publishes them, a failure or a kill drops them.
    q_prompts.drop_stale_imports(store)
    import_id = q_prompts.begin_import(store, "embed_pairs", str(path))
    try:
        with store.tx():
            q_embed.ensure_stage(store, opts.stage, str(path))
            q_embed.ensure_corpus(store, opts.stage, f"stage {opts.stage}")
        hashes = q_embed.pair_hashes(store, opts.stage)
        in_db = q_embed.group_splits(store, opts.stage)
        known = dict(in_db)
        kept: set[str] = set()
        pending: list[tuple[Any, ...]] = []
        docs: dict[str, str] = {}
        created = now()

        def flush() -> None:
            if pending:
                with store.tx():  # one short transaction per batch: votes get the lock in between
                    q_embed.insert_pairs(store, pending, import_id)
                pending.clear()

        for line, rec in all_records():
            summary.rows += 1
            if summary.rows % BATCH == 0:
                check_cancel(cancel)
                yield Progress(summary.rows, None, f"{summary.imported} imported")
            where = f"{path}:{line}"
            anchor = _text(rec.get(cols.anchor))
            positive = _text(rec.get(cols.positive))
            for col, value in ((cols.anchor, anchor), (cols.positive, positive)):
                if value is None:
                    raise PreceptorError("Empty field", f"{where}: field {col!r} is empty", "Fill it in or delete the row.")
            assert anchor is not None and positive is not None
            negative = _text(rec.get(cols.negative)) if cols.negative else None
            for col, value in ((cols.anchor, anchor), (cols.positive, positive), (cols.negative, negative)):
                if value is not None and len(value) > limit:
                    raise PreceptorError("Field too long", f"{where}: field {col!r} has {len(value):,} characters (limit {limit:,})",
                                         "Shorten it, or raise [project] max_field_chars in preceptor.toml.")
            if negative is not None and identity(negative) == identity(positive):
                raise PreceptorError("Invalid negative", f"{where}: the negative is the same text as the positive",
                                     "A hard negative must be a different, wrong document; clear the field or fix it.")
            score = _score(rec.get(cols.score), where, cols.score) if cols.score else None
            if identity(anchor) == identity(positive):
                summary.identical += 1
                continue
            h = hashlib.sha256("\x00".join(identity(x or "") for x in (anchor, positive, negative)).encode()).hexdigest()
            if h in hashes:
                summary.duplicates += 1
                continue
            hashes.add(h)
            group = normalise(_text(rec.get(cols.group)) or "") if cols.group else ""
            group = group or "anchor:" + text_hash(anchor)[:16]
            if group in known:
                split = known[group]
                if group in in_db:
                    kept.add(group)
            else:
                split = hash_split(group, opts.seed, opts.val_ratio, opts.test_ratio)
                known[group] = split
            source = _text(rec.get(cols.source)) if cols.source else None
            pending.append((opts.stage, anchor, positive, negative, score, group, split, h,
                            source or where, created))
            docs.setdefault(doc_key(positive), positive)
            if negative:
                docs.setdefault(doc_key(negative), negative)
            summary.imported += 1
            summary.splits[split] += 1
            summary.with_negative += negative is not None
            summary.with_score += score is not None
            if opts.queries and split != "train":
                published.append((anchor, positive, group, split))
            if len(pending) >= TX_ROWS:
                flush()
        flush()
        summary.groups_kept_split = len(kept)
        items = [(k, t, None) for k, t in docs.items()]
        for k in range(0, len(items), TX_ROWS):
            q_embed.add_docs(store, opts.stage, items[k:k + TX_ROWS], import_id)
        coll = None
        if published:
            coll = query_collection(opts.stage)
            summary.queries_published = _publish_queries(store, opts.stage, published, str(path), import_id)
        check_cancel(cancel)
        q_prompts.publish_import(store, import_id, coll, "prompts", f"held-out queries of embedding stage {opts.stage}",
                                 hidden=opts.hidden_queries)
    except BaseException:
        q_prompts.drop_import(store, import_id)
        raise
    q_prompts.settle_import(store, import_id)
    summary.corpus_docs = len(q_embed.corpus_docs(store, opts.stage))
    if summary.identical:
        yield Log("warning", f"{summary.identical} rows skipped: the anchor and positive are the same text")
    if summary.duplicates:
        yield Log("info", f"{summary.duplicates} duplicate pairs skipped")
    _register_stage(project, opts.stage)
    yield Progress(summary.rows, summary.rows, f"{summary.imported} imported")
    yield Done(summary.__dict__)


def _publish_queries(store: Any, stage: str, rows: list[tuple[str, str, str, str]], source: str, import_id: int) -> int:
    """Held-out anchors as prompts (reference = the relevant document; all positives in meta), staged
    under ``import_id`` (their collection is created when the import is published)."""
    coll = query_collection(stage)
    existing = q_prompts.hashes_in_collection(store, coll)
    relevant: dict[str, list[str]] = {}
    first: dict[str, tuple[str, str, str, str]] = {}
    for anchor, positive, group, split in rows:
        h = text_hash(anchor)
        relevant.setdefault(h, [])
        if positive not in relevant[h]:
            relevant[h].append(positive)
        first.setdefault(h, (anchor, positive, group, split))
    created = now()
    new = []
    for h, (anchor, positive, group, split) in first.items():
        if h in existing:
            continue
        meta = {"stage": stage, "relevant": relevant[h]}
        new.append((anchor, h, positive, split, RETRIEVAL_TASK, group, coll, json.dumps(meta, ensure_ascii=False), source, created))
    for k in range(0, len(new), TX_ROWS):
        with store.tx():
            q_prompts.insert_many(store, new[k:k + TX_ROWS], import_id)
    return len(new)


def _register_stage(project: Project, stage: str) -> None:
    """Append ``stage`` to ``[embed] stages`` in preceptor.toml if it is not listed yet."""
    current = project.table("embed").get("stages") or []
    if isinstance(current, str):
        current = [s.strip() for s in current.split(",") if s.strip()]
    if stage not in current:
        project.update_settings({"embed": {"stages": [*current, stage]}})


# -- the demo curriculum ---------------------------------------------------------------

def demo_data_dir() -> Path:
    from preceptor.demo import DATA_DIR

    return DATA_DIR


def demo_files() -> list[tuple[str, Path, str]]:
    """(stage, file, description) of the shipped curriculum; a clear error if a file is missing."""
    folder = demo_data_dir()
    out = []
    for stage, name, desc in DEMO_STAGES:
        p = folder / name
        if not p.exists():
            raise PreceptorError("Demo curriculum missing", f"{p} does not exist",
                                 "Reinstall preceptor (the demo data ships inside the package).")
        out.append((stage, p, desc))
    return out


def import_demo(project: Project, cancel: threading.Event | None = None) -> EventStream:
    """Import the demo stages that hold no data yet; set ``[embed] stages`` to the demo order."""
    files = demo_files()
    counts = q_embed.stage_counts(project.store)
    imported = {}
    for i, (stage, path, desc) in enumerate(files):
        if sum(counts.get(stage, {}).values()):
            continue
        yield Log("info", f"importing demo stage {stage} ({desc}) from {path.name}")
        opts = PairImportOptions(stage=stage, val_ratio=0.1, test_ratio=0.1, seed=42, queries=(i == len(files) - 1),
                                 hidden_queries=True)
        for ev in import_pairs(project, path, opts, cancel):
            if isinstance(ev, Done):
                imported[stage] = ev.summary["imported"]
            elif not isinstance(ev, Progress):
                yield ev
    stages = [s for s, _, _ in files]
    current = project.table("embed").get("stages") or []
    if list(current)[: len(stages)] != stages:
        project.update_settings({"embed": {"stages": stages + [s for s in current if s not in stages]}})
    yield Done({"stages": stages, "imported": imported})
