"""Prompt import: every format, column detection, splits, duplicates, and every bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from preceptor.cli import main
from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.db import systems as q_systems
from preceptor.engine import events
from preceptor.engine.ingest.prompts import ImportOptions, import_prompts
from preceptor.engine.ingest.splits import hash_split
from preceptor.errors import PreceptorError


def run_import(project, path: Path, **opts):
    return events.run(import_prompts(project, path, ImportOptions(**opts)))


def db_digest(project) -> str:
    """A digest of every row of every table: equal digests mean an unchanged database."""
    h = hashlib.sha256()
    store = project.store
    for (name,) in store.all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        for row in store.all(f"SELECT * FROM {name} ORDER BY rowid"):
            h.update(repr(tuple(row)).encode())
    return h.hexdigest()


ROWS = [
    {"prompt": "Explain the interaction between clarithromycin and midazolam.", "reference": "CYP3A inhibition raises midazolam exposure.", "drug": "midazolam"},
    {"prompt": "State the mechanism of action of atorvastatin in one sentence.", "reference": "It inhibits HMG-CoA reductase.", "drug": "atorvastatin"},
    {"prompt": "Create a concise clinical card for warfarin.", "reference": "Warfarin: vitamin K antagonist.", "drug": "warfarin"},
]


def write(path: Path, fmt: str, rows=ROWS) -> Path:
    if fmt == "csv" or fmt == "tsv":
        import csv

        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="," if fmt == "csv" else "\t")
            w.writeheader()
            w.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_every_format_imports(project, tmp_path, fmt):
    path = write(tmp_path / f"items.{fmt}", fmt)
    summary = run_import(project, path, group_col="drug", val_ratio=0.34, seed=1)
    assert summary["imported"] == 3 and summary["rows"] == 3
    rows = q_prompts.select(project.store, q_prompts.PromptFilter(collections=["items"]))
    assert [r.text for r in rows] == [r["prompt"] for r in ROWS]
    assert [r.reference for r in rows] == [r["reference"] for r in ROWS]
    assert [r.group_key for r in rows] == ["midazolam", "atorvastatin", "warfarin"]
    assert all(r.collection == "items" for r in rows)
    for r in rows:
        assert r.split == hash_split(r.group_key, 1, 0.34, 0.0)
        assert r.source.startswith(str(path))


def test_instruction_input_and_question_columns(project, tmp_path):
    p = tmp_path / "alpaca.jsonl"
    p.write_text(json.dumps({"instruction": "Summarise", "input": "Warfarin is a vitamin K antagonist.", "output": "VKA"}) + "\n"
                 + json.dumps({"instruction": "Name a CYP3A inhibitor", "input": "", "output": "ketoconazole"}) + "\n")
    run_import(project, p)
    rows = q_prompts.select(project.store)
    assert rows[0].text == "Summarise\n\nWarfarin is a vitamin K antagonist."
    assert rows[1].text == "Name a CYP3A inhibitor"
    assert [r.reference for r in rows] == ["VKA", "ketoconazole"]
    q = tmp_path / "qa.csv"
    q.write_text("question,answer,source_url\nWhat is rifampin?,An antibiotic and CYP3A inducer,http://x\n")
    run_import(project, q)
    row = q_prompts.select(project.store, q_prompts.PromptFilter(collections=["qa"]))[0]
    assert (row.text, row.reference, row.meta) == ("What is rifampin?", "An antibiotic and CYP3A inducer", {"source_url": "http://x"})


def test_student_and_teacher_columns_become_imported_outputs(project, tmp_path):
    p = tmp_path / "seed.csv"
    p.write_text("prompt,response_teacher,response_student,split\n"
                 "Explain A and B,teacher says X,student says Y,train\n"
                 "Explain C and D,teacher says Z,,val\n")
    summary = run_import(project, p)
    assert (summary["teacher_outputs"], summary["student_outputs"]) == (2, 1)
    teacher = q_systems.by_name(project.store, "imported-teacher")
    base = q_systems.by_name(project.store, "imported-base")
    assert teacher.imported and teacher.role == "teacher" and base.role == "base"
    assert [o.text for o in q_outputs.for_system(project.store, teacher.id)] == ["teacher says X", "teacher says Z"]
    assert [o.text for o in q_outputs.for_system(project.store, base.id)] == ["student says Y"]
    rows = q_prompts.select(project.store)
    assert [r.split for r in rows] == ["train", "val"]  # an existing split column is kept
    assert rows[0].reference == "teacher says X"


def test_duplicates_are_reported_and_skipped(project, tmp_path):
    p = write(tmp_path / "d.jsonl", "jsonl", ROWS + [dict(ROWS[0], prompt="  explain the interaction between clarithromycin  and midazolam. ")])
    summary = run_import(project, p)
    assert (summary["imported"], summary["duplicates"]) == (3, 1)
    again = run_import(project, p)
    assert (again["imported"], again["duplicates"]) == (0, 4)


def test_a_group_keeps_its_split_across_imports(project, tmp_path):
    first = write(tmp_path / "first.jsonl", "jsonl", [{"prompt": f"q{i} about drug{i}", "drug": f"drug{i}"} for i in range(40)])
    run_import(project, first, group_col="drug", val_ratio=0.5, seed=1)
    before = {r.group_key: r.split for r in q_prompts.select(project.store)}
    second = write(tmp_path / "second.jsonl", "jsonl", [{"prompt": f"another q{i} about drug{i}", "drug": f"drug{i}"} for i in range(40)])
    summary = run_import(project, second, group_col="drug", val_ratio=0.1, test_ratio=0.3, seed=99)
    assert summary["groups_kept_split"] == 40
    for r in q_prompts.select(project.store, q_prompts.PromptFilter(collections=["second"])):
        assert r.split == before[r.group_key]


def test_extra_columns_go_to_meta(project, tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(json.dumps({"prompt": "x", "severity": "danger", "tags": ["a", "b"], "task": "interaction"}) + "\n")
    run_import(project, p)
    row = q_prompts.select(project.store)[0]
    assert row.meta == {"severity": "danger", "tags": ["a", "b"]}
    assert row.task == "interaction"


# --- bad input: exit 2, one message naming file and line, database unchanged ------------

BAD_CASES = {
    "broken_quote.csv": (b'prompt,reference\n"ok",fine\n"unclosed,quote\nmore,rows\n',
                         "Broken CSV", ":3: a quoted field starting in this record is never closed"),
    "wrong_count.csv": (b"prompt,reference\nfine,ok\na,b,c\n", "Broken CSV", ":3: expected 2 fields, found 3"),
    "latin1.csv": ("prompt,reference\nfine,ok\ncaf\u00e9,x\n".encode("latin-1"), "Wrong encoding",
                   ":3: byte 0xe9 at column 4 is not valid UTF-8"),
    "bad_line.jsonl": (b'{"prompt": "ok"}\n{"prompt": "broken",}\n', "Invalid JSON", ":2:21: Expecting property name enclosed in double quotes"),
    "not_object.jsonl": (b'{"prompt": "ok"}\n["a list"]\n', "Invalid JSON", ":2: expected an object, found list"),
    "no_prompt.csv": (b"text,reference\nhello,world\n", "Missing prompt column",
                      ":2: no 'prompt', 'instruction' or 'question' column (columns: text, reference)"),
    "empty.csv": (b"", "Empty file", " is empty"),
    "header_only.csv": (b"prompt,reference\n", "Empty file", " has no rows"),
    "empty_prompt.csv": (b"prompt,reference\nok,1\n ,2\n", "Empty prompt", ":3: field 'prompt' is empty"),
    "bad_array.json": (b'[\n {"prompt": "a"},\n {"prompt": "b" "x": 1}\n]\n', "Invalid JSON", ":3:17: Expecting ',' delimiter"),
    "bad_split.csv": (b"prompt,split\na,train\nb,holdout\n", "Invalid split", ":3: split 'holdout' is not train, val or test"),
    "unknown.txt": (b"prompt\nx\n", "Unknown file type", "cannot tell the format from the extension '.txt'"),
}
# hostile and odd files (issue: readers are linear and total)
_DEEP = b"[" * 5000 + b"]" * 5000
HOSTILE_CASES = {
    "deep_jsonl.jsonl": (b'{"prompt": ' + _DEEP + b"}\n", "Nesting too deep", ":1: the JSON nests deeper"),
    "deep_array.json": (b'[{"prompt": ' + _DEEP + b"}]", "Nesting too deep", ":1: the JSON nests deeper"),
    "nested_40.jsonl": (b'{"prompt": "x", "meta": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}\n",
                        "Nesting too deep", "field 'meta' nests more than 32 levels"),
    "surrogate.jsonl": (b'{"prompt": "ok"}\n{"prompt": "bad \\ud800 text"}\n', "Invalid text",
                        ":2: field 'prompt' holds a lone surrogate (U+D800)"),
    "surrogate_low.json": (b'[{"prompt": "\\udc00"}]', "Invalid text", ":1: field 'prompt' holds a lone surrogate (U+DC00)"),
    "surrogate_key.jsonl": (b'{"prompt": "ok", "\\ud83d": "x"}\n', "Invalid text", "lone surrogate (U+D83D)"),
    "nul.csv": (b"prompt,reference\nfine,ok\nnul\x00here,x\n", "NUL byte", ":3: field 'prompt' holds a NUL byte"),
    "nul.tsv": (b"prompt\treference\nnul\x00\tx\n", "NUL byte", ":2: field 'prompt' holds a NUL byte"),
    "nul_escape.jsonl": (b'{"prompt": "a\\u0000b"}\n', "NUL byte", ":1: field 'prompt' holds a NUL byte (\\x00) at character 2"),
    "nul_reference.json": (b'[{"prompt": "ok", "reference": "\\u0000"}]', "NUL byte", "field 'reference' holds a NUL byte"),
    "dup_many.csv": (("prompt," + ",".join(f"c{i}" for i in range(5000)) + ",c17\nx" + ",y" * 5001 + "\n").encode(),
                     "Duplicate column", ":1: column 'c17' appears twice"),
    "too_many_columns.csv": (("prompt," + ",".join(f"c{i}" for i in range(100_001)) + "\n").encode(), "Too many columns",
                             ":1: 100,002 columns (at most 100,000)"),
    "array_of_numbers.json": (b"[1, 2, 3]", "Invalid JSON", ":1: expected an object, found int"),
    "jsonl_string.jsonl": (b'"just a string"\n', "Invalid JSON", ":1: expected an object, found str"),
    "jsonl_null.jsonl": (b"null\n", "Invalid JSON", ":1: expected an object, found NoneType"),
    "trailing_garbage.json": (b'[{"prompt": "a"}] junk', "Invalid JSON", ":1: text after the closing ']' ('junk')"),
    "bom_mid_jsonl.jsonl": (b'{"prompt": "a"}\n\xef\xbb\xbf{"prompt": "b"}\n', "Invalid JSON", ":2:"),
    "only_header.csv": (b"prompt,reference\n", "Empty file", ""),
    "blank_header.csv": (b",,\nx,y,z\n", "Empty file", "the header row is empty"),
    "latin1_header.csv": ("pr\u00f6mpt\nx\n".encode("latin-1"), "Wrong encoding", ":1: byte 0xf6"),
    "utf16.csv": ("prompt\nx\n".encode("utf-16"), "Wrong encoding", ":1:"),
    "unclosed_array.json": (b'[{"prompt": "a"}, {"prompt": "b"', "Invalid JSON", ""),
    "missing_comma.json": (b'[{"prompt": "a"} {"prompt": "b"}]', "Invalid JSON", "expected ',' or ']' between records"),
    "jsonl_truncated.jsonl": (b'{"prompt": "a"}\n{"prompt": "b\n', "Invalid JSON", ":2:"),
    "empty_array.json": (b"[]", "Empty file", "holds an empty array"),
    "whitespace_only.jsonl": (b"\n\n   \n", "Empty file", "has no records"),
    "extra_field_count.tsv": (b"prompt\treference\na\tb\tc\n", "Broken CSV", ":2: expected 2 fields, found 3"),
}
BAD_CASES.update(HOSTILE_CASES)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_input_names_file_and_line_and_changes_nothing(project, tmp_path, name, capsys):
    ok = write(tmp_path / "good.jsonl", "jsonl")
    run_import(project, ok)
    before = db_digest(project)
    content, title, fragment = BAD_CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PreceptorError) as info:
        run_import(project, path)
    assert info.value.title == title
    assert info.value.message.startswith(str(path))
    assert fragment in info.value.message
    assert info.value.hint
    assert db_digest(project) == before
    # the CLI: exit 2, the message on stderr, no traceback
    code = main(["import", str(path), "--project", str(project.root)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"Error: {title}" in err and fragment in err and "Traceback" not in err
    assert db_digest(project) == before


def test_field_over_size_limit(project, tmp_path):
    project.update_settings({"project": {"max_field_chars": 50}})
    from preceptor.project import Project

    proj = Project.open(project.root)
    p = tmp_path / "long.csv"
    p.write_text("prompt\nshort\n" + "x" * 51 + "\n")
    before = db_digest(proj)
    with pytest.raises(PreceptorError) as info:
        run_import(proj, p)
    assert info.value.message == f"{p}:3: field 'prompt' has 51 characters (limit 50)"
    assert "max_field_chars" in info.value.hint
    assert db_digest(proj) == before
    proj.close()


def test_missing_file_and_folder(project, tmp_path):
    with pytest.raises(PreceptorError, match="does not exist"):
        run_import(project, tmp_path / "nope.csv")
    with pytest.raises(PreceptorError, match="is a folder"):
        run_import(project, tmp_path)


def test_a_failure_midway_leaves_nothing(project, tmp_path):
    rows = "".join(json.dumps({"prompt": f"item {i}"}) + "\n" for i in range(5000))
    p = tmp_path / "big.jsonl"
    p.write_text(rows + "{broken\n")
    with pytest.raises(PreceptorError, match=":5001:"):
        run_import(project, p)
    assert project.store.scalar("SELECT COUNT(*) FROM prompts") == 0
    assert project.store.scalar("SELECT COUNT(*) FROM collections") == 0


def test_cancel_rolls_back(project, tmp_path):
    p = tmp_path / "big.jsonl"
    p.write_text("".join(json.dumps({"prompt": f"item {i}"}) + "\n" for i in range(5000)))
    cancel = events.new_cancel()
    cancel.set()
    from preceptor.errors import Cancelled

    with pytest.raises(Cancelled):
        events.run(import_prompts(project, p, ImportOptions(), cancel))
    assert project.store.scalar("SELECT COUNT(*) FROM prompts") == 0


def test_json_array_streams_in_small_chunks(tmp_path):
    from preceptor.engine.ingest.readers import read_json_array

    rows = [{"prompt": f"p{i} caf\u00e9 \u0e22\u0e32", "n": i} for i in range(50)]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
    got = list(read_json_array(p, chunk_size=7))
    assert [r for _, r in got] == rows
    assert got[0][0] == 2 and got[1][0] == 6  # line numbers of each object's first line


def test_pandalm_style_nan_is_accepted(project, tmp_path):
    p = tmp_path / "nan.json"
    p.write_text('[{"instruction": "Rewrite", "input": "x", "score": NaN}]')
    run_import(project, p)
    assert q_prompts.select(project.store)[0].meta == {"score": None}


def test_forty_thousand_columns_import_in_seconds(project, tmp_path):
    import time

    cols = ["prompt", *(f"c{i}" for i in range(40_000))]
    path = tmp_path / "wide.csv"
    path.write_text(",".join(cols) + "\n" + "\n".join(",".join([f"question {r}", *("v" for _ in range(40_000))])
                                                       for r in range(3)) + "\n")
    t0 = time.perf_counter()
    summary = run_import(project, path)
    assert time.perf_counter() - t0 < 10.0  # the header check is linear (it took 27 s when quadratic)
    assert summary["imported"] == 3
