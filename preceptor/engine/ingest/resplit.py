"""``preceptor split --group-col COL``: regroup a project's prompts by a column and split again.

A prompt's group becomes its value of ``COL`` (the column it was imported with, or kept in
its ``meta`` when another column was the group); prompts without a value keep their group.
Each new group's split is the hash split of the group (as on import, same seed and
ratios), except that prompts already judged or used by a training run
(:func:`preceptor.db.prompts.in_use`) never move: a group holding such prompts takes their
split. Where one new group holds used prompts in two splits, no split can keep them all
and the command refuses, naming the prompts; nothing is changed then.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from preceptor.db import prompts as q_prompts
from preceptor.engine.events import Done, EventStream, Log, check_cancel
from preceptor.engine.ingest.splits import check_ratios, hash_split
from preceptor.errors import PreceptorError
from preceptor.text import normalise


@dataclass(frozen=True)
class ResplitOptions:
    group_col: str
    val_ratio: float = 0.1
    test_ratio: float = 0.0
    seed: int = 42
    collection: str | None = None
    dry_run: bool = False

    def __post_init__(self) -> None:
        if not self.group_col.strip():
            raise PreceptorError("Invalid option", "--group-col is empty", "Name the column, e.g. --group-col drug.")
        check_ratios(self.val_ratio, self.test_ratio)


@dataclass
class ResplitSummary:
    group_col: str
    prompts: int = 0
    with_value: int = 0
    groups: int = 0
    moved: int = 0
    kept_in_use: int = 0
    splits: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})
    dry_run: bool = False


def _value(p: q_prompts.Prompt, col: str) -> str | None:
    meta = p.meta or {}
    for k, v in meta.items():
        if str(k).lower() == col.lower() and v is not None and str(v).strip():
            return normalise(str(v))
    return None


def resplit(project: Any, opts: ResplitOptions, cancel: threading.Event | None = None) -> EventStream:
    store = project.store
    flt = q_prompts.PromptFilter(split="all", collections=[opts.collection] if opts.collection else None, include_bad=True)
    prompts = q_prompts.select(store, flt)
    summary = ResplitSummary(opts.group_col, prompts=len(prompts), dry_run=opts.dry_run)
    if not prompts:
        raise PreceptorError("Nothing to split", "the project has no prompts" + (f" in collection {opts.collection!r}" if opts.collection else ""),
                             "Import prompts first: `preceptor import FILE`.")
    groups: dict[str, list[q_prompts.Prompt]] = {}
    for p in prompts:
        v = _value(p, opts.group_col)
        summary.with_value += v is not None
        groups.setdefault(v if v is not None else p.group_key, []).append(p)
    if not summary.with_value:
        raise PreceptorError("Column not found", f"no prompt has a value in column {opts.group_col!r}",
                             "Name a column of the imported file that is not the prompt, reference or group column "
                             "(those are kept in each prompt's meta).")
    check_cancel(cancel)
    used = q_prompts.in_use(store)
    changes: list[tuple[int, str, str]] = []
    conflicts: list[str] = []
    for group, members in groups.items():
        locked = {p.split for p in members if p.id in used}
        if len(locked) > 1:
            named = [f"prompt {p.id} ({p.split}, {used[p.id]})" for p in members if p.id in used]
            conflicts.append(f"group {group!r}: " + "; ".join(named[:6]) + (" ..." if len(named) > 6 else ""))
            continue
        split = locked.pop() if locked else hash_split(group, opts.seed, opts.val_ratio, opts.test_ratio)
        for p in members:
            summary.splits[split] += 1
            summary.kept_in_use += p.id in used
            if p.split != split or p.group_key != group:
                changes.append((p.id, group, split))
                summary.moved += p.split != split
    summary.groups = len(groups)
    if conflicts:
        raise PreceptorError(
            "Split would break earlier work",
            f"grouping by {opts.group_col!r} puts prompts already judged or trained on in different splits into one "
            f"group: {' | '.join(conflicts[:5])}{' ...' if len(conflicts) > 5 else ''}",
            "Those prompts keep their splits; re-split only a collection without judgments or training runs "
            "(--collection NAME), or start a new project for the regrouped data.")
    if not opts.dry_run and changes:
        with store.tx():
            q_prompts.set_splits(store, changes)
    yield Log("info", f"split groups: column {opts.group_col!r} ({summary.with_value} of {summary.prompts} prompts have a value)")
    yield Done(summary.__dict__)
