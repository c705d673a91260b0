"""``preceptor export votes``: every judgment, as CSV or JSONL, for audit."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from preceptor import csvsafe
from preceptor.db import exports as q
from preceptor.db.prompts import PromptFilter
from preceptor.db.store import now
from preceptor.engine.events import Done, EventStream, Progress, check_cancel
from preceptor.engine.export.files import check_out, manifest_path, sha256_file
from preceptor.errors import PreceptorError

if TYPE_CHECKING:
    from preceptor.project import Project

VOTES_SCHEMA = "preceptor.votes-export/1"

VOTE_FIELDS = ("judgment_id", "pair_id", "prompt_id", "split", "task", "collection", "judge_kind", "judge_id",
               "verdict", "winner_system", "left_system", "system_a", "system_b", "output_a", "output_b",
               "unsafe_a", "unsafe_b", "confidence", "repeat", "supersedes", "superseded", "latency_ms",
               "rationale", "created_at", "prompt")

def export_votes(project: Project, out: Path, fmt: str = "csv", *, split: str = "all", collection: str | None = None,
                 include_superseded: bool = False, cancel: threading.Event | None = None) -> EventStream:
    """Every effective judgment (or all, with ``include_superseded``) as CSV or JSONL for audit."""
    if fmt not in ("csv", "jsonl"):
        raise PreceptorError("Invalid option", f"--format {fmt!r} is not csv or jsonl", "Use csv or jsonl.")
    if collection and q.collection_kind(project.store, collection) is None:
        raise PreceptorError("Unknown collection", f"no collection named {collection!r}",
                             f"Collections: {', '.join(q.collection_names(project.store)) or 'none'}.")
    out = Path(out).expanduser().resolve()
    check_out(out)
    flt = PromptFilter(split=None if split == "all" else split, collections=[collection] if collection else None,
                       include_bad=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csvsafe.DictWriter(fh, fieldnames=VOTE_FIELDS) if fmt == "csv" else None
            if writer:
                writer.writeheader()
            for r in q.vote_audit_rows(project.store, flt, include_superseded=include_superseded):
                if n % 1000 == 0:
                    check_cancel(cancel)
                side = {r["output_a"]: r["system_a"], r["output_b"]: r["system_b"]}
                rec = {k: r.get(k) for k in VOTE_FIELDS if k in r}
                rec.update(winner_system=side.get(r["winner_output_id"]), left_system=side.get(r["left_output_id"]),
                           unsafe_a=bool(r["unsafe_a"]), unsafe_b=bool(r["unsafe_b"]), repeat=bool(r["repeat"]),
                           prompt=r["prompt_text"])
                if writer:
                    writer.writerow(rec)
                else:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    digest = sha256_file(out)
    filters = {"split": split, "collection": collection, "include_superseded": include_superseded}
    manifest = {"schema": VOTES_SCHEMA, "kind": "votes", "path": str(out), "format": fmt, "n": n, "sha256": digest,
                "filters": filters, "columns": list(VOTE_FIELDS),
                "project_schema_version": project.store.schema_version, "created_at": now()}
    manifest_path(out).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    q.record_export(project.store, "votes", str(out), filters, n, digest, manifest)
    yield Progress(n, n, f"{n} votes")
    yield Done({"path": str(out), "n": n, "sha256": digest, "manifest": str(manifest_path(out))})
