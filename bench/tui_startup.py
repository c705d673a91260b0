"""Start-up: process start → Judge screen showing its first pair, on a 100k-prompt project.

Both sides run in fresh processes, headless, at 120×40, alternating, ``--repeats`` times:

* **app**: what ``preceptor judge expert --as NAME`` does — import the CLI and the app,
  open the project (100,000 prompts, two systems, 100,000 pairs, answers of ~220 words,
  written with ``executemany`` by ``bench/tui_judge.py:build_project``), start the expert
  session, reserve and draw the first pair.
* **bare**: a bare Textual app with the same widgets and stylesheet (header, prompt box, two
  answer panes rendering ``rich.markdown.Markdown``, status line, footer) showing the same
  texts, read from a small file.

The time is taken by the parent from ``Popen`` to the child's "READY" line, which the
child prints once the first pair has been drawn (``call_after_refresh``). Prints the
medians and ``BENCH tui_startup_vs_bare <ratio> x`` (target ≤ 2.5).

    python bench/tui_startup.py [--prompts 100000] [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))

APP_CHILD = r"""
import sys
from preceptor.cli.common import open_project
from preceptor.tui.app import PreceptorApp

project = open_project(sys.argv[1])
app = PreceptorApp(project, start="judge", expert="Startup Bench")

def ready():
    pair = app.screen.current
    print("READY", pair.pair_id if pair else None, flush=True)
    app.exit()

app.ctx.judge_ready_hook = ready
app.run(headless=True, size=(120, 40))
"""

BARE_CHILD = r"""
import json, sys
from pathlib import Path
from rich.markdown import Markdown
from rich.text import Text
from textual.app import App
from textual.containers import Container, VerticalScroll
from textual.widgets import Footer, Header, Static

prompt, a, b = json.loads(Path(sys.argv[1]).read_text())

class Bare(App):
    CSS_PATH = sys.argv[2]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    def compose(self):
        yield Header()
        with VerticalScroll(id="prompt-box"):
            yield Static(Text(prompt), id="prompt")
        with Container(id="answers"):
            with VerticalScroll(id="pane-a", classes="answer"):
                yield Static(Markdown(a))
            with VerticalScroll(id="pane-b", classes="answer"):
                yield Static(Markdown(b))
        yield Static(Text("0 of 100000 pairs done"), id="judge-status")
        yield Footer(compact=True)

    def on_mount(self):
        self.call_after_refresh(self.ready)

    def ready(self):
        print("READY", flush=True)
        self.exit()

Bare().run(headless=True, size=(120, 40))
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = ""
    for line in proc.stdout:
        if line.startswith("READY"):
            break
    elapsed = time.perf_counter() - t0
    out, err = proc.communicate(timeout=60)
    if not line.startswith("READY") or proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {line}{out}\n{err[-3000:]}")
    return elapsed, line.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="build (or reuse) the synthetic project in this folder")
    args = ap.parse_args()
    from bench.tui_judge import build_project  # noqa: E402

    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} (no torch in this benchmark)")
    tmp = tempfile.mkdtemp(prefix="preceptor-bench-startup-")
    root = args.keep or Path(tmp) / "project"
    env = {**os.environ, "PRECEPTOR_HOME": str(Path(tmp) / "home"), "PYTHONPATH": str(HERE.parent.parent)}
    try:
        if not (root / "preceptor.db").exists():
            counts = build_project(root, prompts=args.prompts, systems=2, pairs_per_prompt=1)
            print(f"synthetic project: {counts['prompts']:,} prompts, {counts['outputs']:,} outputs, "
                  f"{counts['pairs']:,} pairs written in {counts['seconds']:.1f} s")
        # the texts the app will show first, for the bare app: ask the engine once, then give the pair back
        from preceptor.engine.judging.experts import ExpertSession
        from preceptor.engine.judging.pairs import PairFilter
        from preceptor.project import Project

        with Project.open(root) as project:
            session = ExpertSession(project, "Startup Bench", PairFilter(), create=True)
            pair = session.next()
            session.release()
        texts = Path(tmp) / "texts.json"
        texts.write_text(json.dumps([pair.prompt, pair.left.text, pair.right.text]))
        css = str(HERE.parent.parent / "preceptor" / "tui" / "app.tcss")
        app_cmd = [sys.executable, "-c", APP_CHILD, str(root)]
        bare_cmd = [sys.executable, "-c", BARE_CHILD, str(texts), css]
        timed(bare_cmd, env)  # warm the file cache for both
        timed(app_cmd, env)
        app_t, bare_t = [], []
        for _ in range(args.repeats):
            t, line = timed(app_cmd, env)
            assert line == f"READY {pair.pair_id}", line  # the app drew the same first pair
            app_t.append(t)
            bare_t.append(timed(bare_cmd, env)[0])
        a, b = statistics.median(app_t), statistics.median(bare_t)
        print(f"app : median {a * 1000:.0f} ms  (runs: {', '.join(f'{x * 1000:.0f}' for x in app_t)})")
        print(f"bare: median {b * 1000:.0f} ms  (runs: {', '.join(f'{x * 1000:.0f}' for x in bare_t)})")
        print(f"BENCH tui_startup_app_ms {a * 1000:.0f} ms")
        print(f"BENCH tui_startup_bare_ms {b * 1000:.0f} ms")
        print(f"BENCH tui_startup_vs_bare {a / b:.2f} x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
