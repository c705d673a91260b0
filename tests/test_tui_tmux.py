"""Smoke test: the real app in a real terminal (tmux), driven by keys, then the votes in the DB."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.tui_helpers import judged_project

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, width: int = 80, height: int = 24) -> None:
        self.socket = f"preceptor-test-{uuid.uuid4().hex[:8]}"
        self.size = (width, height)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-s", "app", "-x", str(self.size[0]), "-y", str(self.size[1]), command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "app")

    def keys(self, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", "app", k)
            time.sleep(0.15)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run(["tmux", "-L", self.socket, "has-session", "-t", "app"], capture_output=True).returncode == 0

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def test_judge_in_tmux(project, tmp_path):
    judged_project(project, 6, experts=('Dr Tmux',))
    done_file = tmp_path / "exit-code"
    cmd = (f"{shlex.quote(sys.executable)} -m preceptor --project {shlex.quote(str(project.root))} "
           f"tui --screen judge --as 'Dr Tmux'; echo $? > {shlex.quote(str(done_file))}")
    term = Tmux(80, 24)
    env_cmd = f"env PRECEPTOR_HOME={shlex.quote(os.environ['PRECEPTOR_HOME'])} OMP_NUM_THREADS=1 sh -c {shlex.quote(cmd)}"
    try:
        term.start(env_cmd)
        shown = term.wait_for("you: 0 judged · 6 left for you")
        assert "Prompt" in shown and "Question" in shown
        term.keys("1")
        term.wait_for("you: 1 judged · 5 left")
        term.keys("2")
        term.wait_for("you: 2 judged · 4 left")
        term.keys("t")
        term.wait_for("you: 3 judged · 3 left")
        term.keys("u")
        term.wait_for("vote undone")
        term.keys("x")
        term.wait_for("you: 3 judged · 3 left")
        term.keys("C-q")
        end = time.monotonic() + 15
        while not done_file.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert done_file.read_text().strip() == "0"
    finally:
        term.kill()
    rows = project.store.all(
        """SELECT verdict, supersedes IS NOT NULL AS sup FROM judgments WHERE judge_id = 'Dr Tmux' ORDER BY id""")
    assert [(r[0], r[1]) for r in rows] == [("win", 0), ("win", 0), ("tie", 0), ("skip", 1), ("both_bad", 1)]
    # the session gave its reservations back on exit
    assert project.store.scalar("SELECT COUNT(*) FROM reservations") == 0


def test_burst_in_tmux_records_exactly_one_vote(project, tmp_path):
    """The real app at 80×24 with the default [judge] min_seconds: the burst ``12t1`` is one vote."""
    from preceptor.engine.judging.experts import add_expert

    judged_project(project, 6, settings={"min_seconds": 0.5})
    add_expert(project.store, "Dr Tmux")
    cmd = (f"{shlex.quote(sys.executable)} -m preceptor --project {shlex.quote(str(project.root))} "
           f"judge expert --as 'Dr Tmux'")
    term = Tmux(80, 24)
    env_cmd = f"env PRECEPTOR_HOME={shlex.quote(os.environ['PRECEPTOR_HOME'])} OMP_NUM_THREADS=1 sh -c {shlex.quote(cmd)}"
    try:
        term.start(env_cmd)
        term.wait_for("you: 0 judged")
        time.sleep(0.8)
        term.tmux("send-keys", "-t", "app", "1", "2", "t", "1")  # one burst
        term.wait_for("you: 1 judged")
        time.sleep(1.0)
        shown = term.wait_for("key ignored")
        assert "you: 1 judged" in shown
        term.keys("C-q")
    finally:
        term.kill()
    rows = project.store.all("SELECT verdict FROM judgments WHERE judge_id = 'Dr Tmux'")
    assert [r[0] for r in rows] == ["win"]


def test_unknown_expert_in_tmux_exits_2_and_creates_nobody(project, tmp_path):
    from preceptor.engine.judging.experts import add_expert, list_experts

    judged_project(project, 2)
    add_expert(project.store, "Dr Tmux")
    done_file = tmp_path / "exit-code"
    cmd = (f"{shlex.quote(sys.executable)} -m preceptor --project {shlex.quote(str(project.root))} "
           f"judge expert --as 'Dr Tmuxx'; echo $? > {shlex.quote(str(done_file))}; sleep 5")
    term = Tmux(80, 24)
    env_cmd = f"env PRECEPTOR_HOME={shlex.quote(os.environ['PRECEPTOR_HOME'])} OMP_NUM_THREADS=1 sh -c {shlex.quote(cmd)}"
    try:
        term.start(env_cmd)
        shown = term.wait_for("Did you mean 'Dr Tmux'?")
        assert "no expert named 'Dr Tmuxx' in this project" in " ".join(shown.split())
        end = time.monotonic() + 15
        while not done_file.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert done_file.read_text().strip() == "2"
    finally:
        term.kill()
    assert [e.name for e in list_experts(project.store)] == ["Dr Tmux"]
