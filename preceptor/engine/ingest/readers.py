"""Streaming readers for tabular files: CSV, TSV, JSONL, JSON (array) and Parquet.

Each reader yields ``(line_number, record)`` without loading the whole file, and turns
every malformed input into a :class:`PreceptorError` naming the file, the line (and the
column or field where known) and how to fix it.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preceptor.errors import PreceptorError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "json", ".parquet": "parquet", ".pq": "parquet"}

csv.field_size_limit(1 << 30)  # the size limit is checked per field with a clear message


def detect_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise PreceptorError(
            "Unknown file type",
            f"{path}: cannot tell the format from the extension {path.suffix or '(none)'!r}",
            "Use .csv, .tsv, .jsonl, .json or .parquet.",
        )
    return fmt


def _decoded_lines(path: Path) -> Iterator[str]:
    """Lines of a UTF-8 file (BOM dropped); a decoding error names line and column."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PreceptorError(
                    "Wrong encoding",
                    f"{path}:{lineno}: byte {raw[exc.start]:#04x} at column {exc.start + 1} is not valid UTF-8",
                    "Save the file as UTF-8 (e.g. `iconv -f cp1252 -t utf-8 in.csv > out.csv`).",
                )


def _open_check(path: Path) -> None:
    if not path.exists():
        raise PreceptorError("File not found", f"{path} does not exist", "Check the path.")
    if path.is_dir():
        raise PreceptorError("Not a file", f"{path} is a folder", "Give the path of a data file.")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise PreceptorError("Cannot read file", f"{path}: {exc.strerror}", "Check the file's permissions.")
    if path.stat().st_size == 0:
        raise PreceptorError("Empty file", f"{path} is empty", "Export the data again; the file has no rows.")


def read_csv(path: Path, delimiter: str = ",") -> Iterator[tuple[int, dict[str, Any]]]:
    lines = _decoded_lines(path)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise PreceptorError("Empty file", f"{path} has no header row", "The first line must name the columns.")
    except csv.Error as exc:
        raise PreceptorError("Broken CSV", f"{path}:{reader.line_num}: {exc}", "Check the quoting of the header row.")
    header = [h.strip() for h in header]
    if not any(header):
        raise PreceptorError("Empty file", f"{path}: the header row is empty", "The first line must name the columns.")
    if len(header) > MAX_COLUMNS:
        raise PreceptorError("Too many columns", f"{path}:1: {len(header):,} columns (at most {MAX_COLUMNS:,})",
                             "Keep the columns the import needs (prompt, reference, task, group, ...).")
    counts = Counter(h for h in header if h)  # linear: a header of 200,000 columns is checked at once
    dup = sorted(h for h, n in counts.items() if n > 1)
    if dup:
        raise PreceptorError("Duplicate column", f"{path}:1: column {dup[0]!r} appears twice", "Rename one of the columns.")
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "unexpected end of data" in reason:
                reason = "a quoted field starting in this record is never closed"
            raise PreceptorError(
                "Broken CSV",
                f"{path}:{start}: {reason}",
                'A field containing the delimiter, a quote or a newline must be quoted, and quotes inside it doubled ("").',
            )
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            raise PreceptorError(
                "Broken CSV",
                f"{path}:{start}: expected {len(header)} fields, found {len(row)}",
                "Quote fields that contain the delimiter; every row needs one value per header column.",
            )
        yield start, dict(zip(header, row, strict=True))


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    seen = False
    for lineno, line in enumerate(_decoded_lines(path), 1):
        if not line.strip():
            continue
        try:
            if line.startswith("\ufeff"):  # as json.loads does
                raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", line, 0)
            record = _DECODER.decode(line)  # one decoder for the file (json.loads builds one per call)
        except RecursionError:
            raise PreceptorError("Nesting too deep", f"{path}:{lineno}: the JSON nests deeper than Python can read",
                                 f"Records are flat objects of text fields; nest at most {MAX_DEPTH} levels.") from None
        except json.JSONDecodeError as exc:
            raise PreceptorError(
                "Invalid JSON",
                f"{path}:{lineno}:{exc.colno}: {exc.msg}",
                "Each line must be one complete JSON object.",
            )
        if not isinstance(record, dict):
            raise PreceptorError("Invalid JSON", f"{path}:{lineno}: expected an object, found {type(record).__name__}",
                                 "Each line must be one JSON object like {\"prompt\": \"...\"}.")
        seen = True
        yield lineno, record
    if not seen:
        raise PreceptorError("Empty file", f"{path} has no records", "Add one JSON object per line.")


def _nan(name: str) -> float:
    return math.nan  # PandaLM's file holds a bare NaN


_DECODER = json.JSONDecoder(parse_constant=_nan)


def read_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream the objects of a top-level JSON array without loading the whole file."""
    decoder = json.JSONDecoder(parse_constant=_nan)
    with path.open("rb") as fh:
        state: dict[str, Any] = {"buf": "", "raw": b"", "eof": False, "first": True}
        line = 1  # line number at state["buf"][pos]
        pos = 0

        def more() -> bool:
            """Append the next decoded chunk to the buffer; False at end of file."""
            if state["eof"]:
                return False
            chunk = fh.read(chunk_size)
            if not chunk:
                state["eof"] = True
                if state["raw"]:
                    _bad_utf8(path, line + state["buf"].count("\n", pos), state["raw"])
                return False
            raw = state["raw"] + chunk
            try:
                text, state["raw"] = raw.decode("utf-8"), b""
            except UnicodeDecodeError as exc:
                if exc.reason != "unexpected end of data":
                    good = raw[:exc.start].decode("utf-8")
                    _bad_utf8(path, line + (state["buf"][pos:] + good).count("\n"), raw[exc.start:])
                text, state["raw"] = raw[:exc.start].decode("utf-8"), raw[exc.start:]
            if state["first"]:
                text = text.lstrip("\ufeff")
                state["first"] = False
            state["buf"] += text
            return True

        def skip_ws() -> None:
            nonlocal pos, line
            while True:
                buf = state["buf"]
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or not more():
                    return

        skip_ws()
        if pos >= len(state["buf"]):
            raise PreceptorError("Empty file", f"{path} has no records", "The file must hold a JSON array of objects.")
        if state["buf"][pos] != "[":
            raise PreceptorError("Invalid JSON", f"{path}:{line}: expected a JSON array ('['), found {state['buf'][pos]!r}",
                                 "Use .jsonl for one object per line, or wrap the objects in [ ... ].")
        pos += 1
        count = 0
        while True:
            skip_ws()
            buf = state["buf"]
            if pos >= len(buf):
                raise PreceptorError("Invalid JSON", f"{path}:{line}: the array is not closed", "End the file with ']'.")
            if buf[pos] == "]":
                break
            if count:
                if buf[pos] != ",":
                    raise PreceptorError("Invalid JSON", f"{path}:{line}: expected ',' or ']' between records, found {buf[pos]!r}",
                                         "Separate the objects with commas.")
                pos += 1
                skip_ws()
            while True:
                buf = state["buf"]
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                    break
                except RecursionError:
                    raise PreceptorError("Nesting too deep", f"{path}:{line}: the JSON nests deeper than Python can read",
                                         f"Records are flat objects of text fields; nest at most {MAX_DEPTH} levels.") from None
                except json.JSONDecodeError as exc:
                    if more():
                        continue
                    err_line = line + buf.count("\n", pos, exc.pos)
                    col = exc.pos - buf.rfind("\n", 0, exc.pos)
                    raise PreceptorError("Invalid JSON", f"{path}:{err_line}:{col}: {exc.msg}", "Fix the JSON syntax at that place.")
            start_line = line
            line += buf.count("\n", pos, end)
            pos = end
            if not isinstance(obj, dict):
                raise PreceptorError("Invalid JSON", f"{path}:{start_line}: expected an object, found {type(obj).__name__}",
                                     "The array must hold objects like {\"prompt\": \"...\"}.")
            count += 1
            yield start_line, obj
            if pos > chunk_size:
                state["buf"] = state["buf"][pos:]
                pos = 0
        if count == 0:
            raise PreceptorError("Empty file", f"{path} holds an empty array", "Add at least one record.")
        pos += 1  # past the closing ']': only whitespace may follow
        skip_ws()
        if pos < len(state["buf"]):
            raise PreceptorError("Invalid JSON", f"{path}:{line}: text after the closing ']' ({state['buf'][pos:pos + 20]!r})",
                                 "The file must hold one JSON array; remove what follows it.")


def _bad_utf8(path: Path, line: int, rest: bytes) -> None:
    raise PreceptorError("Wrong encoding", f"{path}:{line}: byte {rest[0]:#04x} is not valid UTF-8",
                         "Save the file as UTF-8.")


def read_parquet(path: Path, batch_size: int = 10_000) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise PreceptorError("Cannot read Parquet", f"{path}: {exc}", "Check the file is a valid Parquet file.")
    if pf.metadata.num_rows == 0:
        raise PreceptorError("Empty file", f"{path} has no rows", "Export the data again.")
    row = 0
    for batch in pf.iter_batches(batch_size=batch_size):
        for record in batch.to_pylist():
            row += 1
            yield row, record


MAX_COLUMNS = 100_000
MAX_DEPTH = 32
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def _check_value(path: Path, line: int, key: str, value: Any, depth: int = 0) -> None:
    """A field is text the store can hold: no NUL byte, no lone surrogate (``"\\ud800"`` in
    JSON), nesting at most :data:`MAX_DEPTH`; each named with file:line and the field."""
    if isinstance(value, str):
        m = _BAD_CHARS.search(value)
        if m is not None:
            if m.group() == "\x00":
                raise PreceptorError("NUL byte", f"{path}:{line}: field {key!r} holds a NUL byte (\\x00) at character {m.start() + 1}",
                                     "Remove the NUL bytes (e.g. `tr -d '\\000' < in > out`); text never holds them.")
            raise PreceptorError("Invalid text", f"{path}:{line}: field {key!r} holds a lone surrogate "
                                 f"(U+{ord(m.group()):04X}) at character {m.start() + 1}, which is not a character",
                                 "Fix the escape in the file (a \\ud83d must be followed by its pair, e.g. \\ude00).")
        return
    if isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise PreceptorError("Nesting too deep", f"{path}:{line}: field {key!r} nests more than {MAX_DEPTH} levels",
                                 "Records are flat objects of text fields.")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if isinstance(k, str):
                _check_value(path, line, key, k, depth + 1)
            _check_value(path, line, key, v, depth + 1)


def _checked(path: Path, rows: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[tuple[int, dict[str, Any]]]:
    for line, rec in rows:
        for k, v in rec.items():
            _check_value(path, line, str(k), k)
            _check_value(path, line, str(k), v)
        yield line, rec


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line or row number, record)`` from any supported file, every field checked
    (no NUL byte, no lone surrogate, bounded nesting)."""
    path = Path(path)
    _open_check(path)
    fmt = detect_format(path)
    if fmt == "csv":
        return _checked(path, read_csv(path, ","))
    if fmt == "tsv":
        return _checked(path, read_csv(path, "\t"))
    if fmt == "jsonl":
        return _checked(path, read_jsonl(path))
    if fmt == "json":
        return _checked(path, read_json_array(path))
    return _checked(path, read_parquet(path))
