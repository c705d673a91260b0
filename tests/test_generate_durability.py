"""Every paid answer is durable when it arrives: ``preceptor generate`` killed with SIGKILL at
random moments against the loopback server loses no answer the server finished sending,
except the ones in flight at the instant of the kill (at most ``concurrency``); restarts
resume, and a complete run leaves exactly one output per prompt, with a cache that makes a
rerun free."""

from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

from preceptor.cli import main
from preceptor.db import outputs as q_outputs
from preceptor.db import prompts as q_prompts
from preceptor.engine import events
from preceptor.engine.generation import systems as eng_systems
from preceptor.engine.ingest.prompts import ImportOptions, import_prompts
from preceptor.testing.llm_server import StubServer, echo_responder

N = 80  # prompts
FAILING = {i for i in range(N) if i % 10 == 3}  # the server answers these with HTTP 500 (recorded failures)
C = 4  # concurrency: the most answers that can be in flight when the process dies
LATENCY = 0.05
KILLS = 3
ITEM = re.compile(r"item-(\d{3})")


def _item(text: str) -> int:
    found = ITEM.search(text)
    assert found, text
    return int(found.group(1))


def _item_of_body(body: dict) -> int:
    return _item(json.dumps(body.get("messages", []), ensure_ascii=False))


def _responder(body: dict) -> str:
    if _item_of_body(body) in FAILING:
        raise RuntimeError("this item always fails")
    return echo_responder(body)


def _stored(project) -> tuple[set[int], set[int], set[int]]:
    """(items with a cached answer, items with a good output, items with a recorded failure)."""
    store = project.store
    text_of = {p.id: p.text for p in q_prompts.select(store)}
    cached = {_item(json.dumps(json.loads(r[0])["messages"], ensure_ascii=False))
              for r in store.all("SELECT request FROM llm_cache")}
    system = store.scalar("SELECT id FROM systems WHERE name = 'api'")
    rows = q_outputs.for_system(store, system, ok_only=False)
    good = {_item(text_of[r.prompt_id]) for r in rows if r.error is None and r.text is not None}
    failed = {_item(text_of[r.prompt_id]) for r in rows if r.error is not None}
    return cached, good, failed


def _start_generate(project) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "STUB_KEY": "test"}
    return subprocess.Popen([sys.executable, "-m", "preceptor", "generate", "--system", "api", "--json",
                             "--project", str(project.root)],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_idle(server: StubServer, quiet: float = 3 * LATENCY + 0.2) -> None:
    """Until no response has been written for ``quiet`` seconds (handlers of the dead client finished)."""
    last = -1
    while True:
        n = len(server.served)
        if n == last:
            return
        last = n
        time.sleep(quiet)


def test_kill_9_at_random_moments_loses_no_answer_the_server_sent(project, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "test")
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"item-{i:03d}: explain drug interaction number {i}."}) + "\n"
                            for i in range(N)))
    events.run(import_prompts(project, path, ImportOptions(val_ratio=0.0)))
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    note = f"(random seed {seed})"
    with StubServer(latency=LATENCY, responder=_responder) as server:
        eng_systems.add(project, "api", role="teacher", backend="litellm", model="openai/stub", api_base=server.url,
                        params={"api_key_env": "STUB_KEY", "max_retries": 0, "concurrency": C, "temperature": 0.0})
        lost_total = 0
        gaps: list[int] = []
        for _round in range(KILLS):
            start = len(server.served)
            proc = _start_generate(project)
            threshold = rng.randint(3, 15)  # responses into this run, then a random fraction of one latency
            deadline = time.monotonic() + 60
            while len(server.served) - start < threshold and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            assert proc.poll() is None, f"generate ended before the kill {note}: {proc.stderr.read() if proc.stderr else ''}"
            time.sleep(rng.uniform(0, LATENCY))
            t_kill = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert proc.returncode == -signal.SIGKILL
            _wait_idle(server)
            cached, good, failed = _stored(project)
            assert good <= cached, f"a good output without its cache entry {note}"
            this_round = server.served[start:]
            before = [(s, _item_of_body(b)) for s, _, b in this_round if _ <= t_kill]
            after = [(s, _item_of_body(b)) for s, _, b in this_round if _ > t_kill]
            all_ok = {i for s, _, b in server.served if s == 200 for i in [_item_of_body(b)]}
            assert cached <= all_ok and good <= all_ok, f"stored answers the server never sent {note}"
            # answers (and failures) fully sent before the kill that the client had not yet stored
            gap = [i for s, i in before if (s == 200 and i not in cached) or (s != 200 and i not in failed | cached)]
            assert len(gap) <= C, f"{len(gap)} answers sent before the kill were lost (at most {C} in flight) {note}"
            gaps.append(len(gap))
            lost_total += sum(1 for s, i in before + after if s == 200 and i not in cached)
            assert len(before) >= threshold

        # the restart runs to the end (in this process, through the same CLI)
        with redirect_stdout(io.StringIO()) as out:
            assert main(["generate", "--system", "api", "--json", "--project", str(project.root)]) == 0
        final = json.loads(out.getvalue())
        cached, good, failed = _stored(project)
        system = project.store.scalar("SELECT id FROM systems WHERE name = 'api'")
        rows = q_outputs.for_system(project.store, system, ok_only=False)
        assert len(rows) == N and len({r.prompt_id for r in rows}) == N  # one output per prompt, none twice
        assert good == set(range(N)) - FAILING, f"missing {sorted(set(range(N)) - FAILING - good)} {note}"
        assert failed == FAILING, f"failures {sorted(failed)} {note}"
        assert cached == good, f"cached but no output: {sorted(cached - good)} {note}"
        assert all("HTTP 500" in (r.error or "") for r in rows if r.error)
        ok_calls = server.served_count(200)
        resent = ok_calls - len(good)  # answers the server sent more than once: each one was lost at a kill
        assert resent == lost_total, f"{resent} answers re-sent, {lost_total} lost at the kills {note}"
        assert resent <= KILLS * C
        times_sent = [sum(1 for s, _, b in server.served if s == 200 and _item_of_body(b) == i) for i in good]
        assert sum(n - 1 for n in times_sent) == resent  # each good item was answered once, plus once per loss
        assert final["failed"] == len(FAILING) and final["done"] + final["failed"] + final["skipped"] == N

        # a second, forced run: every good answer from the cache, 0 new paid calls (failures are asked again)
        errors_before = server.served_count(500)
        with redirect_stdout(io.StringIO()) as out:
            assert main(["generate", "--system", "api", "--force", "--json", "--project", str(project.root)]) == 0
        again = json.loads(out.getvalue())
        assert server.served_count(200) == ok_calls
        assert again["cache_hits"] == N - len(FAILING) and again["calls"] == len(FAILING)
        assert server.served_count(500) == errors_before + len(FAILING)
        print(f"\nDURABILITY kills={KILLS} gaps={gaps} ok_calls={ok_calls} outputs={len(good)} "
              f"failures={len(failed)} resent={resent} error_calls={server.served_count(500)} {note}")
