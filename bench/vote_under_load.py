"""Expert votes while a large prompt import runs, against the same votes with no import.

A temporary project gets ``--pairs`` pairs to judge. Phase 1 (idle): ``--votes`` CLI votes
(``preceptor judge next --json`` then ``preceptor judge record``, each its own process,
as a scripted expert runs them) and ``--votes`` engine votes (``ExpertSession.next`` +
``record`` in this process, as the app does). Phase 2: the same while
``preceptor import`` of a ``--rows``-row CSV runs in another process (the votes start once
the import has written its first rows and stop when it ends). Latency is per vote, from
asking for the pair to the committed verdict. An error is a vote that did not commit (a
non-zero exit, an exception, or "locked" on stderr).

Prints ``BENCH <name> <value> <unit>`` lines: p50/p99 of each face in each phase, the import's
duration, ``BENCH vote_errors <n> votes`` (target 0) and last the headline
``BENCH vote_p99_under_import_vs_idle <ratio> x`` (the worse of the two faces; target ≤ 1.5).
Torch is not used; OMP_NUM_THREADS is pinned to 1 and printed.

    python bench/vote_under_load.py [--rows 1000000] [--votes 30] [--pairs 400]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def write_csv(path: Path, n: int, *, answers: bool) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "response_student", "response_teacher", "split"] if answers else ["prompt", "reference", "group"])
        for i in range(n):
            if answers:
                w.writerow([f"Seed {i}: how does drug {i} interact with drug {i + 1}?", f"Student answer {i}.",
                            f"Teacher answer {i}: drug {i} inhibits CYP3A.", "val"])
            else:
                w.writerow([f"Bulk {i}: does drug {i} interact with drug {i + 7}?", f"Drug {i} raises drug {i + 7}.", f"g{i // 3}"])


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preceptor", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def cli_vote(root: Path, env: dict[str, str]) -> tuple[float, bool]:
    t = time.perf_counter()
    nxt = cli(["judge", "next", "--as", "Cli", "--json", "--project", str(root)], env)
    if nxt.returncode != 0 or "locked" in nxt.stderr:
        return time.perf_counter() - t, False
    pair = json.loads(nxt.stdout)
    rec = cli(["judge", "record", "--as", "Cli", "--pair", str(pair["pair_id"]), "--verdict", "A", "--project", str(root)], env)
    return time.perf_counter() - t, rec.returncode == 0 and "locked" not in rec.stderr


def engine_vote(session) -> tuple[float, bool]:
    t = time.perf_counter()
    try:
        pair = session.next()
        session.record(pair, "B")
    except Exception as exc:  # noqa: BLE001 - counted as an error
        print(f"engine vote failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return time.perf_counter() - t, False
    return time.perf_counter() - t, True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--votes", type=int, default=30, help="votes per face and phase")
    ap.add_argument("--pairs", type=int, default=400)
    args = ap.parse_args()
    print(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} rows={args.rows} votes={args.votes}")

    from preceptor.engine.events import run
    from preceptor.engine.ingest.prompts import IMPORTED_BASE, IMPORTED_TEACHER, import_prompts
    from preceptor.engine.judging.experts import ExpertSession, add_expert
    from preceptor.engine.judging.pairs import PairMakeOptions, make_pairs
    from preceptor.project import Project

    with tempfile.TemporaryDirectory(prefix="vote-load-") as tmp:
        tmpd = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PRECEPTOR_HOME": str(tmpd / "home")}
        os.environ["PRECEPTOR_HOME"] = env["PRECEPTOR_HOME"]
        project = Project.init(tmpd / "proj")
        seed = tmpd / "seed.csv"
        write_csv(seed, args.pairs, answers=True)
        run(import_prompts(project, seed))
        run(make_pairs(project, PairMakeOptions(systems=(IMPORTED_BASE, IMPORTED_TEACHER))))
        add_expert(project.store, "Cli")
        add_expert(project.store, "Engine")
        session = ExpertSession(project, "Engine")
        big = tmpd / "big.csv"
        write_csv(big, args.rows, answers=False)

        errors = 0
        idle: dict[str, list[float]] = {"cli": [], "engine": []}
        for _ in range(args.votes):
            for face, (dt, ok) in (("cli", cli_vote(project.root, env)), ("engine", engine_vote(session))):
                idle[face].append(dt)
                errors += not ok

        busy: dict[str, list[float]] = {"cli": [], "engine": []}
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "preceptor", "import", str(big), "--project", str(project.root)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and not project.store.scalar("SELECT 1 FROM prompts WHERE import_id IS NOT NULL LIMIT 1"):
            time.sleep(0.01)
        while proc.poll() is None and min(len(busy["cli"]), len(busy["engine"])) < args.votes:
            for face, (dt, ok) in (("cli", cli_vote(project.root, env)), ("engine", engine_vote(session))):
                if proc.poll() is not None:
                    break  # the import ended during this vote: it did not run under load
                busy[face].append(dt)
                errors += not ok
            time.sleep(0.05)
        _, err = proc.communicate()
        import_s = time.perf_counter() - t0
        if proc.returncode != 0:
            print(err[-2000:], file=sys.stderr)
            sys.exit(f"the import failed (exit {proc.returncode})")
        imported = project.store.scalar("SELECT COUNT(*) FROM prompts WHERE collection = 'big'")
        session.release()
        project.close()

    print(f"BENCH import_rows {imported} rows")
    print(f"BENCH import_seconds {import_s:.1f} s")
    ratios = []
    for face in ("cli", "engine"):
        n = len(busy[face])
        if n == 0:
            sys.exit("no vote ran during the import: raise --rows")
        for phase, values in (("idle", idle[face]), ("under_import", busy[face])):
            print(f"BENCH {face}_vote_p50_{phase} {p(values, 0.5) * 1000:.1f} ms")
            print(f"BENCH {face}_vote_p99_{phase} {p(values, 0.99) * 1000:.1f} ms")
        print(f"BENCH {face}_votes_under_import {n} votes")
        ratios.append(p(busy[face], 0.99) / p(idle[face], 0.99))
        print(f"BENCH {face}_vote_p99_under_import_vs_idle {ratios[-1]:.2f} x")
    print(f"BENCH vote_errors {errors} votes")
    print(f"BENCH vote_p99_under_import_vs_idle {max(ratios):.2f} x")


if __name__ == "__main__":
    main()
