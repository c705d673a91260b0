"""Keystroke → vote committed → next pair drawn, inside the real app, against a bare floor.

A synthetic project (default 1,000,000 outputs and 200,000 pairs: 100,000 prompts × 10
systems, two pairs per prompt, answers of ~220 words) is written straight into SQLite with
``executemany`` (:func:`build_project`, also used by ``bench/tui_startup.py``). Then:

* **app**: ``PreceptorApp`` on the Judge screen at 120×40 (headless). Each vote is a real
  key press (``1``/``2``/``t``/``x``). Latency runs from the start of the key's action
  (``JudgeScreen.action_vote``) to the end of the refresh that drew the next pair
  (``call_after_refresh``), so Pilot's own pauses are not part of it. Between votes the
  bench waits for the background preload to finish, as an expert's reading time would.
* **floor**: a bare Textual app with the same widgets and stylesheet whose key action only
  swaps the prompt and the two panes to the texts the app showed, in the same order, with
  the same renderer (``Static(rich.markdown.Markdown(text))``), measured the same way.

Prints p50 / p95 / max for both and ``BENCH tui_judge_p95_vs_floor <ratio> x`` (target ≤ 1.3).

    python bench/tui_judge.py [--prompts 100000] [--systems 10] [--votes 500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = ("clarithromycin inhibits CYP3A4 strongly so midazolam exposure rises several fold and sedation deepens "
         "rifampin induces CYP3A4 and P-glycoprotein lowering plasma levels of many substrates including "
         "tacrolimus warfarin is metabolised by CYP2C9 fluconazole inhibits that enzyme and the INR climbs "
         "monitor closely adjust the dose or choose an alternative agent with less interaction potential the "
         "mechanism involves competitive inhibition at the active site while induction needs days to weeks").split()


def answer_text(rng: random.Random, n_words: int, k: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    paras = [" ".join(words[i:i + 55]) for i in range(0, n_words, 55)]
    head = f"**Answer {k}.** "
    bullets = "\n".join(f"- {' '.join(rng.choice(WORDS) for _ in range(6))}" for _ in range(3))
    return head + "\n\n".join(paras) + "\n\n" + bullets


def build_project(root: Path, *, prompts: int, systems: int, pairs_per_prompt: int, words: int = 220,
                  seed: int = 0) -> dict[str, int]:
    """A judged-project-shaped database written with executemany; returns the counts."""
    from preceptor.project import Project

    rng = random.Random(seed)
    project = Project.init(root, "bench")
    conn = project.store.conn
    ts = "2026-01-01T00:00:00.000Z"
    pool = [answer_text(rng, words, k) for k in range(64)]
    t0 = time.perf_counter()
    with project.store.tx():
        conn.execute("INSERT INTO collections (name, kind, source, created_at) VALUES ('bench', 'prompts', 'bench', ?)", (ts,))
        conn.executemany(
            "INSERT INTO systems (id, name, role, backend, imported, created_at) VALUES (?, ?, 'custom', 'imported', 1, ?)",
            [(s + 1, f"sys{s}", ts) for s in range(systems)])

        def prompt_rows():
            for i in range(prompts):
                text = f"Question {i}: how does drug D{i % 997} interact with drug E{i % 991}, and why?"
                yield (i + 1, text, hashlib.sha1(text.encode()).hexdigest(), f"Reference {i}.",
                       ("train", "val", "test")[i % 3], "ddi", f"g{i}", "bench", ts)

        conn.executemany(
            "INSERT INTO prompts (id, text, text_hash, reference, split, task, group_key, collection, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", prompt_rows())
        paired = 2 * pairs_per_prompt  # systems 0 .. paired-1 take part in pairs: long answers

        def output_rows():
            oid = 0
            for i in range(prompts):
                for s in range(systems):
                    oid += 1
                    text = pool[(i * 7 + s) % len(pool)] + f"\n\n(item {i}, system {s})" if s < paired else f"short {i}/{s}"
                    yield (oid, i + 1, s + 1, text, ts)

        conn.executemany("INSERT INTO outputs (id, prompt_id, system_id, text, created_at) VALUES (?, ?, ?, ?, ?)",
                         output_rows())

        def pair_rows():
            pid = 0
            for i in range(prompts):
                for k in range(pairs_per_prompt):
                    pid += 1
                    a = i * systems + 2 * k + 1
                    yield (pid, i + 1, a, a + 1, ("train", "val", "test")[i % 3], 2 * k + 1, 2 * k + 2,
                           rng.getrandbits(32), ts)

        conn.executemany(
            "INSERT INTO pairs (id, prompt_id, output_a, output_b, split, system_a, system_b, queue_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", pair_rows())
    conn.execute("ANALYZE")
    project.update_settings({"judge": {"repeat_share": 0.0, "overlap_share": 0.0, "show_llm_rationale": "never"}})
    counts = {"prompts": prompts, "outputs": prompts * systems, "pairs": prompts * pairs_per_prompt,
              "seconds": time.perf_counter() - t0}
    project.close()
    return counts


def floor_app_class():
    from rich.markdown import Markdown as RichMarkdown
    from rich.text import Text
    from textual.app import App
    from textual.binding import Binding
    from textual.containers import Container, VerticalScroll
    from textual.widgets import Footer, Header, Static

    import preceptor.tui.app as tui_app

    class FloorApp(App):
        """The same widgets and stylesheet; a key only swaps the texts."""

        CSS_PATH = str(Path(tui_app.__file__).with_name("app.tcss"))
        HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
        BINDINGS = [Binding("1", "swap", "A better")]

        def __init__(self, texts: list[tuple[str, str, str]], markdown: bool = True) -> None:
            super().__init__()
            self.texts = texts
            self.i = 0
            self.markdown = markdown
            self.latency_hook = None

        def compose(self):
            yield Header()
            with VerticalScroll(id="prompt-box"):
                yield Static("", id="prompt")
            with Container(id="answers"):
                with VerticalScroll(id="pane-a", classes="answer"):
                    yield Static("", id="body-a")
                with VerticalScroll(id="pane-b", classes="answer"):
                    yield Static("", id="body-b")
            yield Static("", id="judge-status")
            yield Footer(compact=True)

        def on_mount(self) -> None:
            self.show()

        def show(self) -> None:
            prompt, a, b = self.texts[self.i % len(self.texts)]
            self.query_one("#prompt", Static).update(Text(prompt))
            render = RichMarkdown if self.markdown else Text
            self.query_one("#body-a", Static).update(render(a))
            self.query_one("#body-b", Static).update(render(b))
            self.query_one("#judge-status", Static).update(Text(f"{self.i} of {len(self.texts)}"))

        def action_swap(self) -> None:
            t0 = time.perf_counter()
            self.i += 1
            self.show()
            if self.latency_hook is not None:
                hook = self.latency_hook
                self.call_after_refresh(lambda: hook(time.perf_counter() - t0))

    return FloorApp


async def run_app(root: Path, votes: int, size: tuple[int, int]) -> tuple[list[float], list[tuple[str, str, str]], dict]:
    from preceptor.engine.judging.experts import add_expert
    from preceptor.project import Project
    from preceptor.tui.app import PreceptorApp

    project = Project.open(root)
    # keys count at once here (the bench presses the next key as soon as the pair is drawn);
    # the expert is registered explicitly: --as never creates one
    project.update_settings({"judge": {"min_seconds": 0}})
    add_expert(project.store, "Bench Expert")
    count_sql = "SELECT COUNT(*) FROM judgments WHERE judge_id = 'Bench Expert' AND verdict != 'skip'"
    votes_before = project.store.scalar(count_sql)
    app = PreceptorApp(project, start="judge", expert="Bench Expert")
    latencies: list[float] = []
    shown: list[tuple[str, str, str]] = []
    keys = ["1", "2", "t", "1", "x", "2", "1", "2"]
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        t_end = time.monotonic() + 120
        while getattr(screen, "current", None) is None:
            if time.monotonic() > t_end:
                raise SystemExit("the Judge screen never showed a pair")
            await pilot.pause(0.05)
        screen.latency_hook = latencies.append
        for n in range(votes):
            # an expert reads before voting: let the background preload finish
            while any(w.is_running for w in screen.workers if w.group == "judge-preload"):
                await pilot.pause(0.005)
            seen = len(latencies)
            await pilot.press(keys[n % len(keys)])
            while len(latencies) == seen:
                await pilot.pause(0.001)
            cur = screen.current
            shown.append((cur.prompt, cur.left.text, cur.right.text))
        assert not app.errors, app.errors
    done = project.store.scalar(count_sql) - votes_before
    project.close()
    return latencies, shown, {"votes_in_db": done}


async def run_floor(texts: list[tuple[str, str, str]], size: tuple[int, int], markdown: bool) -> list[float]:
    app = floor_app_class()(texts, markdown)
    latencies: list[float] = []
    async with app.run_test(size=size) as pilot:
        await pilot.pause(0.2)
        app.latency_hook = latencies.append
        for _ in range(len(texts) - 1):
            seen = len(latencies)
            await pilot.press("1")
            while len(latencies) == seen:
                await pilot.pause(0.001)
    return latencies


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def describe(name: str, xs: list[float]) -> str:
    ms = [x * 1000 for x in xs]
    return f"{name:<16} n={len(ms):4d}  p50 {pct(ms, .5):7.1f} ms  p95 {pct(ms, .95):7.1f} ms  max {max(ms):7.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=100_000)
    ap.add_argument("--systems", type=int, default=10)
    ap.add_argument("--pairs-per-prompt", type=int, default=2)
    ap.add_argument("--votes", type=int, default=500)
    ap.add_argument("--width", type=int, default=120)
    ap.add_argument("--height", type=int, default=40)
    ap.add_argument("--keep", type=Path, help="build (or reuse) the synthetic project in this folder")
    args = ap.parse_args()
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} (no torch in this benchmark)")
    tmp = None
    if args.keep:
        root = args.keep
    else:
        tmp = tempfile.mkdtemp(prefix="preceptor-bench-judge-")
        root = Path(tmp) / "project"
    os.environ.setdefault("PRECEPTOR_HOME", str(Path(tmp or root.parent) / "home"))
    try:
        if not (root / "preceptor.db").exists():
            counts = build_project(root, prompts=args.prompts, systems=args.systems, pairs_per_prompt=args.pairs_per_prompt)
            print(f"synthetic project: {counts['prompts']:,} prompts, {counts['outputs']:,} outputs, {counts['pairs']:,} pairs "
                  f"written in {counts['seconds']:.1f} s ({(root / 'preceptor.db').stat().st_size / 1e6:.0f} MB)")
        else:
            print(f"reusing {root}")
        size = (args.width, args.height)
        app_lat, shown, info = asyncio.run(run_app(root, args.votes, size))
        assert info["votes_in_db"] == args.votes, info
        texts = [shown[-1]] + shown  # the floor starts on a pair, then swaps through the same sequence
        floor_md = asyncio.run(run_floor(texts, size, markdown=True))
        floor_plain = asyncio.run(run_floor(texts, size, markdown=False))
        print(f"terminal {size[0]}x{size[1]}, {args.votes} votes, all committed ({info['votes_in_db']} rows)")
        print(describe("app", app_lat))
        print(describe("floor (markdown)", floor_md))
        print(describe("floor (plain)", floor_plain))
        p95_app, p95_floor = pct(app_lat, .95), pct(floor_md, .95)
        print(f"BENCH tui_judge_p50_ms {pct(app_lat, .5) * 1000:.1f} ms")
        print(f"BENCH tui_judge_p95_ms {p95_app * 1000:.1f} ms")
        print(f"BENCH tui_judge_max_ms {max(app_lat) * 1000:.1f} ms")
        print(f"BENCH tui_judge_floor_p95_ms {p95_floor * 1000:.1f} ms")
        print(f"BENCH tui_judge_p95_vs_plain_floor {p95_app / pct(floor_plain, .95):.2f} x")
        print(f"BENCH tui_judge_p95_vs_floor {p95_app / p95_floor:.2f} x")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
