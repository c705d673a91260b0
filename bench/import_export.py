"""Import and export throughput against plain-library floors, measured in the same run.

1. Import: 100,000 rows through the engine call behind `preceptor import`
   (``preceptor.engine.ingest.prompts.import_prompts``: parsing, validation, normalised hashes,
   dedupe, group splits, one transaction) against the floor: the same JSONL parsed with
   ``json.loads`` per line and inserted with one ``sqlite3.executemany`` into an identical
   ``prompts`` table (same schema and indexes, made by the migrations) in one transaction.
2. Export: 100,000 judged pairs (85 % decisive expert votes, 10 % ties, 5 % both-bad) to
   JSONL and Parquet through the engine call behind `preceptor export dpo`
   (``preceptor.engine.export.dpo.export_dpo``: effective votes, the decision rules, the student's
   rendered prompt, dedupe, manifest, sha256, exports row) against writing the decisive
   rows directly: one plain SQL join, then ``json.dumps`` per row to a file, or one
   ``pyarrow`` table written with ``pyarrow.parquet``.

Every side runs in a fresh subprocess (so its peak RSS is its own), ``--repeats`` times,
alternating; the median time is reported. No torch is involved (threads pinned anyway:
OMP_NUM_THREADS=1). Prints ``BENCH <name> <value> <unit>`` lines; the last is
``BENCH export_vs_direct_write <ratio> x`` (target ≥ 0.5; ratio = engine rate / floor rate).

    python bench/import_export.py [--rows 100000] [--pairs 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DRUGS = ["warfarin", "clarithromycin", "rifampin", "fluconazole", "amiodarone", "sertraline", "tramadol",
         "omeprazole", "atorvastatin", "simvastatin", "metformin", "spironolactone", "digoxin", "verapamil"]


def _peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork+exec,
    so a child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _prompt(i: int, rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.sample(DRUGS, 2)
    text = f"Explain the interaction between {a} and {b} (case {i}): mechanism, effect and management."
    ref = f"{a.capitalize()} affects {b} through CYP3A or P-gp; monitor levels and adjust the dose. Case {i}."
    return text, ref, f"{a}+{b}"


def make_import_file(path: Path, n: int) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            text, ref, group = _prompt(i, rng)
            fh.write(json.dumps({"prompt": text, "reference": ref, "group": group, "task": "ddi"}) + "\n")


def build_judged_project(root: Path, n: int) -> None:
    """A project with ``n`` train pairs (base vs teacher) and one expert vote each, via the db layer."""
    from preceptor.db import judging as q_judging
    from preceptor.db import outputs as q_outputs
    from preceptor.db import prompts as q_prompts
    from preceptor.db import systems as q_systems
    from preceptor.db.store import now
    from preceptor.engine.ingest.splits import text_hash
    from preceptor.project import Project

    rng = random.Random(1)
    project = Project.init(root)
    store = project.store
    created = now()
    rows = []
    for i in range(n):
        text, ref, group = _prompt(i, rng)
        rows.append((text, text_hash(text), ref, "train", "ddi", f"{group}#{i}", "bench", None, "bench", created))
    with store.tx():
        q_prompts.ensure_collection(store, "bench", "prompts", "bench")
        q_prompts.insert_many(store, rows)
    base = q_systems.upsert(store, "base", role="base", backend="imported", imported=True)
    teacher = q_systems.upsert(store, "teacher", role="teacher", backend="imported", imported=True)
    pids = [r[0] for r in store.all("SELECT id FROM prompts ORDER BY id")]
    q_outputs.record_many(store, [dict(prompt_id=p, system_id=base.id, text=f"Base answer {i}: they may interact.")
                                  for i, p in enumerate(pids)])
    q_outputs.record_many(store, [dict(prompt_id=p, system_id=teacher.id,
                                       text=f"Teacher answer {i}: inhibition of CYP3A raises exposure; "
                                            "monitor and lower the dose.") for i, p in enumerate(pids)])
    outs = {(r[0], r[1]): r[2] for r in store.all("SELECT prompt_id, system_id, id FROM outputs")}
    known = {"split": "train", "priority": 0.0, "needed": 1, "queue_key": 0}
    pair_rows = []
    for p in pids:
        a, b = sorted((outs[(p, base.id)], outs[(p, teacher.id)]))
        sys_of = {outs[(p, base.id)]: base.id, outs[(p, teacher.id)]: teacher.id}
        values = {**known, "prompt_id": p, "output_a": a, "output_b": b, "system_a": sys_of[a], "system_b": sys_of[b]}
        pair_rows.append(tuple(values.get(c) for c in q_judging.PAIR_COLUMNS))
    q_judging.insert_pairs(store, pair_rows)
    judgments = []
    for r in store.all("SELECT id, output_a, output_b FROM pairs ORDER BY id"):
        u = rng.random()
        verdict, winner = ("win", r[2] if u < 0.7 else r[1]) if u < 0.85 else (("tie", None) if u < 0.95 else ("both_bad", None))
        judgments.append(dict(pair_id=r[0], judge_kind="expert", judge_id="ann", left_output_id=r[1],
                              winner_output_id=winner, verdict=verdict, confidence=None))
    q_judging.insert_judgments(store, judgments)
    project.close()


# -- the measured sides (each in its own process) -------------------------------------------------

def side_import_engine(work: Path) -> dict:
    from preceptor.engine.events import run
    from preceptor.engine.ingest.prompts import ImportOptions, import_prompts
    from preceptor.project import Project

    project = Project.init(work / "engine_project")
    t = time.perf_counter()
    summary = run(import_prompts(project, work / "prompts.jsonl", ImportOptions(collection="bench")))
    secs = time.perf_counter() - t
    project.close()
    return {"seconds": secs, "rows": summary["imported"]}


def side_import_floor(work: Path) -> dict:
    import hashlib
    import sqlite3

    from preceptor.db import open_database
    from preceptor.db.store import now

    db = work / "floor.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    open_database(db).close()  # the identical schema, made by the migrations
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    t = time.perf_counter()
    created = now()
    rows = []
    with open(work / "prompts.jsonl", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            rows.append((r["prompt"], hashlib.sha256(r["prompt"].encode()).hexdigest(), r["reference"], "train",
                         r["task"], r["group"], "bench", None, "bench", created))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO prompts (text, text_hash, reference, split, task, group_key, collection, meta, source,"
                     " created_at) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("COMMIT")
    secs = time.perf_counter() - t
    n = conn.execute("SELECT COUNT(*) FROM prompts").fetchone()[0]
    conn.close()
    return {"seconds": secs, "rows": n}


def side_export_engine(work: Path, fmt: str) -> dict:
    from preceptor.engine.events import run
    from preceptor.engine.export.dpo import DPOExportOptions, export_dpo, manifest_path
    from preceptor.project import Project

    out = work / f"engine.{fmt}"
    for p in (out, manifest_path(out)):
        p.unlink(missing_ok=True)
    project = Project.open(work / "judged")
    t = time.perf_counter()
    summary = run(export_dpo(project, out, DPOExportOptions(), fmt=fmt))
    secs = time.perf_counter() - t
    project.close()
    return {"seconds": secs, "rows": summary["n"], "pairs": summary["considered"], "bytes": out.stat().st_size}


DIRECT_SQL = """
    SELECT p.text AS prompt,
           CASE WHEN j.winner_output_id = pr.output_a THEN oa.text ELSE ob.text END AS chosen,
           CASE WHEN j.winner_output_id = pr.output_a THEN ob.text ELSE oa.text END AS rejected,
           pr.id AS pair_id, p.id AS prompt_id, p.split, p.task, p.collection,
           CASE WHEN j.winner_output_id = pr.output_a THEN sa.name ELSE sb.name END AS chosen_system,
           CASE WHEN j.winner_output_id = pr.output_a THEN sb.name ELSE sa.name END AS rejected_system,
           j.winner_output_id AS chosen_output_id,
           CASE WHEN j.winner_output_id = pr.output_a THEN pr.output_b ELSE pr.output_a END AS rejected_output_id,
           'human' AS source, j.judge_kind || ':' || j.judge_id AS judges, 1 AS n_votes, 1.0 AS agreement,
           COALESCE(j.confidence, 1.0) AS confidence
    FROM judgments j JOIN pairs pr ON pr.id = j.pair_id JOIN prompts p ON p.id = pr.prompt_id
    JOIN outputs oa ON oa.id = pr.output_a JOIN outputs ob ON ob.id = pr.output_b
    JOIN systems sa ON sa.id = oa.system_id JOIN systems sb ON sb.id = ob.system_id
    WHERE j.verdict = 'win' AND p.split = 'train' ORDER BY pr.id"""


def side_export_direct(work: Path, fmt: str) -> dict:
    """The floor: the same rows and columns straight from one SQL query (the prompt text is the
    student's prompt as the passthrough template renders it; the template hash a constant)."""
    import sqlite3

    from preceptor.prompts.templates import student_messages

    template_hash = student_messages("x")[1]
    out = work / f"direct.{fmt}"
    out.unlink(missing_ok=True)
    conn = sqlite3.connect(work / "judged" / "preceptor.db")
    conn.row_factory = sqlite3.Row
    t = time.perf_counter()
    cur = conn.execute(DIRECT_SQL)
    n = 0
    if fmt == "jsonl":
        with open(out, "w", encoding="utf-8") as fh:
            for r in cur:
                rec = dict(r)
                rec["template_hash"] = template_hash
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [dict(r) for r in cur]
        for rec in rows:
            rec["template_hash"] = template_hash
        pq.write_table(pa.Table.from_pylist(rows), out)
        n = len(rows)
    secs = time.perf_counter() - t
    conn.close()
    return {"seconds": secs, "rows": n, "bytes": out.stat().st_size}


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    name = args.child
    if name == "import-engine":
        res = side_import_engine(work)
    elif name == "import-floor":
        res = side_import_floor(work)
    elif name.startswith("export-engine-"):
        res = side_export_engine(work, name.rsplit("-", 1)[1])
    else:
        res = side_export_direct(work, name.rsplit("-", 1)[1])
    res["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(res))


def run_side(name: str, work: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--work", str(work)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"side {name} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(names: list[str], work: Path, repeats: int, reset=None) -> dict[str, dict]:
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(repeats):
        for n in names:
            if reset:
                reset(n)
            runs[n].append(run_side(n, work))
    out = {}
    for n, rs in runs.items():
        secs = statistics.median(r["seconds"] for r in rs)
        out[n] = {**rs[0], "seconds": secs, "all_seconds": [round(r["seconds"], 3) for r in rs],
                  "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child")
    ap.add_argument("--work")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    print(f"threads: OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} (no torch in this benchmark); "
          f"python {sys.version.split()[0]}; cpus {os.cpu_count()}; repeats {args.repeats} (median)")
    with tempfile.TemporaryDirectory(prefix="preceptor-bench-") as tmp:
        work = Path(tmp)
        make_import_file(work / "prompts.jsonl", args.rows)

        def reset(name: str) -> None:
            import shutil

            if name == "import-engine":
                shutil.rmtree(work / "engine_project", ignore_errors=True)

        imp = measure(["import-engine", "import-floor"], work, args.repeats, reset)
        e, f = imp["import-engine"], imp["import-floor"]
        e_rate, f_rate = e["rows"] / e["seconds"], f["rows"] / f["seconds"]
        print(f"import {args.rows:,} rows: engine {e['seconds']:.2f} s ({e_rate:,.0f} rows/s, peak RSS "
              f"{e['peak_rss_mb']:.0f} MB; runs {e['all_seconds']}) | floor {f['seconds']:.2f} s ({f_rate:,.0f} rows/s, "
              f"peak RSS {f['peak_rss_mb']:.0f} MB; runs {f['all_seconds']})")
        print(f"BENCH import_engine_rows_per_s {e_rate:.0f} rows/s")
        print(f"BENCH import_floor_rows_per_s {f_rate:.0f} rows/s")
        print(f"BENCH import_engine_peak_rss {e['peak_rss_mb']:.0f} MB")
        print(f"BENCH import_floor_peak_rss {f['peak_rss_mb']:.0f} MB")
        print(f"BENCH import_vs_sqlite_floor {e_rate / f_rate:.2f} x")

        t = time.perf_counter()
        build_judged_project(work / "judged", args.pairs)
        print(f"built a judged project with {args.pairs:,} pairs in {time.perf_counter() - t:.1f} s")
        ratios = []
        for fmt in ("jsonl", "parquet"):
            res = measure([f"export-engine-{fmt}", f"export-direct-{fmt}"], work, args.repeats)
            e, d = res[f"export-engine-{fmt}"], res[f"export-direct-{fmt}"]
            # throughput in judged pairs handled per second (both sides read all pairs, write the same rows)
            e_rate, d_rate = e["pairs"] / e["seconds"], e["pairs"] / d["seconds"]
            assert e["rows"] == d["rows"], (e["rows"], d["rows"])
            print(f"export {fmt} ({e['rows']:,} rows of {e['pairs']:,} pairs): engine {e['seconds']:.2f} s "
                  f"({e_rate:,.0f} pairs/s, peak RSS {e['peak_rss_mb']:.0f} MB; runs {e['all_seconds']}) | direct "
                  f"{d['seconds']:.2f} s ({d_rate:,.0f} pairs/s, peak RSS {d['peak_rss_mb']:.0f} MB; runs {d['all_seconds']})")
            print(f"BENCH export_{fmt}_engine_pairs_per_s {e_rate:.0f} pairs/s")
            print(f"BENCH export_{fmt}_direct_pairs_per_s {d_rate:.0f} pairs/s")
            print(f"BENCH export_{fmt}_engine_peak_rss {e['peak_rss_mb']:.0f} MB")
            print(f"BENCH export_{fmt}_direct_peak_rss {d['peak_rss_mb']:.0f} MB")
            print(f"BENCH export_{fmt}_vs_direct_write {e_rate / d_rate:.2f} x")
            ratios.append(e_rate / d_rate)
        print(f"BENCH export_vs_direct_write {min(ratios):.2f} x")


if __name__ == "__main__":
    main()
