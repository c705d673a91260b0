"""Votes an expert panel needs to settle a league: the active queue against random order, on real human votes.

PandaLM's test set (``bench/fixtures/pandalm_testset-v1.json``, Apache-2.0: 999 pairs of
answers from five systems, three human annotators each) is replayed as if experts answered
the pairs in the order the product's queue asks for them. The queue is the product's own
code (``preceptor.engine.judging.queue``: ``fit_league`` refitted every ``REFIT_VOTES``
votes as the expert session does, ``choose`` over one open candidate per matchup, the
cheapest by shuffled queue key, as the session's store query offers them). Each serve
reveals the pair's next stored vote (annotator 1, then 2, then 3: a pair is served at most
three times, like an overlap pair); a tie counts half a win to each side.

Criterion: the full data's league (all votes) names the adjacent pairs of systems it
separates at 95 % (posterior z ≥ 1.96); a replay is settled at the vote after which every
such pair is in the full-data order and stays so until the last vote. For each seed (the
shuffled queue key) both orders run; prints the medians and, last, the median per-seed
ratio active / random (target ≤ 0.6).

``--synthetic`` replays synthetic leagues instead (the queue's constants are tuned there,
never on PandaLM).

    python bench/active_judging.py [--seeds 20] [--synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preceptor.engine.judging import queue  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pandalm_testset-v1.json"

Item = tuple[int, int, list[float]]  # system a, system b, votes as the share won by a (1, 0 or 0.5)


def load_pandalm() -> tuple[list[Item], dict[int, str]]:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    names: dict[str, int] = {}
    items: list[Item] = []
    for row in data:
        a, b = str(row["cmp_key"]).split("_", 1)
        ia, ib = names.setdefault(a, len(names)), names.setdefault(b, len(names))
        votes = []
        for k in ("annotator1", "annotator2", "annotator3"):
            v = str(row.get(k))
            if v in ("0", "1", "2"):
                votes.append({"1": 1.0, "2": 0.0, "0": 0.5}[v])
        if votes:
            items.append((ia, ib, votes))
    return items, {i: n for n, i in names.items()}


def synthetic(seed: int, systems: int = 5, per_matchup: int = 100) -> list[Item]:
    """A league with one practically tied pair of systems and ties ~10 %."""
    rng = random.Random(1000 + seed)
    theta = sorted((rng.gauss(0, 0.5) for _ in range(systems)), reverse=True)
    theta[2] = theta[1] + 0.02  # a coin flip
    items = []
    for a in range(systems):
        for b in range(a + 1, systems):
            p = 1 / (1 + pow(2.718281828, -(theta[a] - theta[b])))
            for _ in range(per_matchup):
                votes = [0.5 if rng.random() < 0.1 else float(rng.random() < p) for _ in range(3)]
                items.append((a, b, votes))
    return items


def counts_of(items: list[Item], taken: list[int] | None = None) -> dict[tuple[int, int], float]:
    counts: dict[tuple[int, int], float] = defaultdict(float)
    for n, (a, b, votes) in enumerate(items):
        for v in votes[: (taken[n] if taken is not None else len(votes))]:
            counts[(a, b)] += v
            counts[(b, a)] += 1 - v
    return counts


def targets(items: list[Item]) -> list[tuple[int, int]]:
    league = queue.fit_league(counts_of(items))
    return [(a, b) for a, b in league.adjacent() if league.z(a, b) >= queue.Z95]


def replay(items: list[Item], order: str, seed: int, goal: list[tuple[int, int]]) -> int:
    """Votes until every goal pair is in order for good."""
    rng = random.Random(seed)
    key = [rng.random() for _ in items]
    by_matchup: dict[tuple[int, int], list[int]] = defaultdict(list)
    for n, (a, b, _) in enumerate(items):
        by_matchup[(min(a, b), max(a, b))].append(n)
    for lst in by_matchup.values():
        lst.sort(key=lambda n: key[n])
    head = {m: 0 for m in by_matchup}
    taken = [0] * len(items)
    systems = sorted({s for a, b, _ in items for s in (a, b)})
    counts: dict[tuple[int, int], float] = defaultdict(float)
    league = queue.fit_league(counts, systems)
    since = 0
    last_bad, votes = 0, 0
    while True:
        cands = []
        for m, lst in by_matchup.items():
            while head[m] < len(lst) and taken[lst[head[m]]] >= len(items[lst[head[m]]][2]):
                head[m] += 1
            if head[m] < len(lst):
                n = lst[head[m]]
                cands.append(queue.Candidate(n, items[n][0], items[n][1], 0.0, key[n]))
        choice = queue.choose(cands, league, order)
        if choice is None:
            break
        n = choice.candidate.pair_id
        a, b, vs = items[n]
        v = vs[taken[n]]
        taken[n] += 1
        counts[(a, b)] += v
        counts[(b, a)] += 1 - v
        votes += 1
        since += 1
        now = queue.fit_league(counts, systems)
        if since >= queue.REFIT_VOTES:  # the session's cache cadence
            league, since = now, 0
        pos = {s: r for r, s in enumerate(now.order())}
        if not all(pos[hi] < pos[lo] for hi, lo in goal):
            last_bad = votes
    return last_bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--synthetic", action="store_true", help="replay synthetic leagues (for tuning)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} (numpy only, no torch)")
    random_n, active_n, ratios = [], [], []
    if not args.synthetic:
        items, names = load_pandalm()
        goal = targets(items)
        full = queue.fit_league(counts_of(items))
        print(f"PandaLM: {len(items)} pairs, {sum(len(v) for *_, v in items)} votes, full-data order: "
              + " > ".join(names[s] for s in full.order()))
        print("separated adjacent pairs (the criterion): " + ", ".join(f"{names[a]} > {names[b]}" for a, b in goal))
    for seed in range(args.seeds):
        if args.synthetic:
            items = synthetic(seed)
            goal = targets(items)
        r = replay(items, "random", seed, goal)
        a = replay(items, "active", seed, goal)
        random_n.append(r)
        active_n.append(a)
        ratios.append(a / r if r else 1.0)
        print(f"seed {seed}: random {r} votes, active {a} votes, ratio {ratios[-1]:.2f}")
    print(f"time: {time.perf_counter() - t0:.1f} s")
    print(f"BENCH votes_to_settle_random {statistics.median(random_n):g} votes")
    print(f"BENCH votes_to_settle_active {statistics.median(active_n):g} votes")
    print(f"BENCH active_vs_random_votes {statistics.median(ratios):.2f} x")


if __name__ == "__main__":
    main()
