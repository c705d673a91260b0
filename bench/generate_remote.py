"""API generation throughput: the engine's LLMClient vs raw litellm, against a loopback server.

A stdlib OpenAI-compatible server on 127.0.0.1 answers every request after ``--latency``
seconds (default 0.2). In one run, on ``--n`` items (default 64, fresh messages for each
measurement so no cache is involved):

* sequential: a ``litellm.completion`` loop (the seed's way);
* raw: ``litellm.acompletion`` under an ``asyncio.Semaphore(C)`` (C = ``--concurrency``,
  default 16) — the floor for anything built on litellm;
* engine: ``LLMClient.complete_many`` at the same C, with its SQLite cache on (lookups and
  batched writes included), retry machinery and accounting.

Raw and engine are measured ``--rounds`` times alternately (default 3) and the medians
compared. A final engine run on the same items as its last measurement must make 0 calls
(everything from the cache). Prints ``BENCH`` lines; headline
``BENCH remote_vs_raw_litellm <ratio> x`` = raw time / engine time (target ≥ 0.95).

    python bench/generate_remote.py [--n 64] [--concurrency 16] [--latency 0.2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "openai/stub"


def messages(n: int, tag: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Explain interaction {tag}-{i} between drug A and drug B."}] for i in range(n)]


def sequential(litellm, url: str, reqs) -> float:
    t0 = time.perf_counter()
    for m in reqs:
        r = litellm.completion(model=MODEL, messages=m, api_base=url, api_key="test")
        assert r.choices[0].message.content
    return time.perf_counter() - t0


def raw_async(loop, litellm, url: str, reqs, concurrency: int) -> float:
    """One persistent event loop for every round (fair to raw litellm: its sessions stay warm)."""
    async def run() -> float:
        sem = asyncio.Semaphore(concurrency)

        async def one(m):
            async with sem:
                r = await litellm.acompletion(model=MODEL, messages=m, api_base=url, api_key="test")
                assert r.choices[0].message.content

        await asyncio.gather(*(one(m) for m in reqs[:concurrency]))  # warm the loop's HTTP session
        t0 = time.perf_counter()
        await asyncio.gather(*(one(m) for m in reqs[concurrency:]))
        return time.perf_counter() - t0

    return loop.run_until_complete(run())


def engine(client, reqs, concurrency: int) -> tuple[float, int]:
    before = client.calls_made
    t0 = time.perf_counter()
    n = sum(1 for _, c in client.complete_many(reqs) if c.error is None)
    dt = time.perf_counter() - t0
    assert n == len(reqs), f"engine answered {n} of {len(reqs)}"
    return dt, client.calls_made - before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from preceptor.db import open_database
    from preceptor.engine.generation.llm import LLMClient, import_litellm
    from preceptor.testing.llm_server import StubServer

    litellm = import_litellm()
    # raw litellm runs on this thread's loop and the engine on its own: litellm's logging worker
    # moves between the two and asyncio complains about the task it leaves behind; not our output
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    n, c = args.n, args.concurrency
    print(f"loopback server latency {args.latency * 1000:.0f} ms, {n} items, concurrency {c}, {args.rounds} rounds "
          "(torch unused; single Python process)", flush=True)
    with tempfile.TemporaryDirectory() as tmp, StubServer(latency=args.latency) as server:
        store = open_database(Path(tmp) / "bench.db")
        client = LLMClient(store, model=MODEL, api_base=server.url, params={"api_key": "test"}, concurrency=c)
        engine(client, messages(c, "warm"), c)  # warm the client's loop and session

        seq = sequential(litellm, server.url, messages(n, "seq"))
        print(f"sequential litellm.completion: {seq:.2f} s", flush=True)
        raws, engs = [], []
        last = None
        loop = asyncio.new_event_loop()
        for r in range(args.rounds):
            # raw gets n + c items: its first c only warm its fresh event loop, the timed part is n
            raws.append(raw_async(loop, litellm, server.url, messages(n + c, f"raw{r}"), c))
            last = messages(n, f"eng{r}")
            dt, calls = engine(client, last, c)
            assert calls == n, f"engine made {calls} calls for {n} new items"
            engs.append(dt)
            print(f"round {r + 1}: raw {raws[-1]:.2f} s, engine {engs[-1]:.2f} s", flush=True)
        rerun, calls = engine(client, last, c)
        tasks = asyncio.all_tasks(loop)
        for t in tasks:
            t.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.close()
        client.close()
        store.close()
    raw_t, eng_t = statistics.median(raws), statistics.median(engs)
    print(f"BENCH remote_sequential_s {seq:.2f} s")
    print(f"BENCH remote_raw_litellm_s {raw_t:.2f} s")
    print(f"BENCH remote_engine_s {eng_t:.2f} s")
    print(f"BENCH remote_raw_vs_sequential {seq / raw_t:.2f} x")
    print(f"BENCH remote_engine_vs_sequential {seq / eng_t:.2f} x")
    print(f"BENCH remote_rerun_calls {calls} calls")
    print(f"BENCH remote_rerun_s {rerun:.3f} s")
    print(f"BENCH remote_vs_raw_litellm {raw_t / eng_t:.2f} x")
    return 0 if calls == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
