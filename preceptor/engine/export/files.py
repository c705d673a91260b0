"""What every export shares: refusing to overwrite, JSONL writing, checksums and the manifest beside the data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from preceptor.errors import PreceptorError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def sha256_folder(path: Path) -> str:
    """sha256 over a folder's data files (sorted relative paths and contents)."""
    h = hashlib.sha256()
    for p in sorted(x for x in Path(path).rglob("*") if x.is_file()):
        h.update(str(p.relative_to(path)).encode())
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()

def manifest_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".manifest.json")

def check_out(out: Path) -> None:
    if out.exists() or manifest_path(out).exists():
        raise PreceptorError("Export exists", f"{out} already exists", "Choose a new name, or pass --force to replace it.")
    out.parent.mkdir(parents=True, exist_ok=True)

def write_jsonl(rows: Iterable[dict[str, Any]], tmp: Path) -> int:
    n = 0
    dumps = json.JSONEncoder(ensure_ascii=False).encode
    with open(tmp, "w", encoding="utf-8") as fh:
        buf: list[str] = []
        for rec in rows:
            buf.append(dumps(rec))
            n += 1
            if len(buf) >= 2000:
                fh.write("\n".join(buf) + "\n")
                buf.clear()
        if buf:
            fh.write("\n".join(buf) + "\n")
    return n

def preceptor_version() -> str:
    import preceptor

    return str(getattr(preceptor, "__version__", "unknown"))
