"""`preceptor serve` (browser access through textual-serve) listens on 127.0.0.1 by default."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_binds_loopback_and_serves_the_page(project):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "preceptor", "--project", str(project.root), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
                            start_new_session=True)
    try:
        url = proc.stdout.readline().strip()  # printed, flushed, before the server starts
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        body = ""
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    assert resp.status == 200
                    body = resp.read().decode()
                    break
            except OSError:
                time.sleep(0.2)
        assert "preceptor: proj" in body
        assert f"ws://127.0.0.1:{port}/ws" in body  # the page talks back to the loopback address only
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout if os.path.exists("/usr/bin/ss") else ""
        if listening:
            assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert f"Serving {project.root} (Ctrl-C to stop). Open:" in err


def test_serve_beyond_loopback_needs_an_acknowledgement(project, capsys):
    from preceptor.cli import main

    assert main(["--project", str(project.root), "serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 is not a loopback address" in err
    assert "Put a TLS proxy in front and pass --i-know-this-is-not-encrypted" in err


def test_unknown_expert_is_refused_everywhere_and_nobody_is_created(project, capsys):
    from preceptor.cli import main
    from preceptor.engine.judging.experts import add_expert, list_experts

    add_expert(project.store, "Dr Ada")
    for args in (["judge", "expert", "--as", "Dr Adda"], ["tui", "--as", "Dr Adda"], ["judge", "next", "--as", "Dr Adda"],
                 ["judge", "history", "--as", "Dr Adda"], ["judge", "undo", "--as", "Dr Adda"]):
        assert main(["--project", str(project.root), *args]) == 2, args
        err = capsys.readouterr().err
        assert "no expert named 'Dr Adda' in this project (experts: Dr Ada)" in err
        assert "Did you mean 'Dr Ada'?" in err
    assert [e.name for e in list_experts(project.store)] == ["Dr Ada"]


def test_record_needs_a_pair_served_to_that_expert(project, capsys):
    from preceptor.cli import main
    from preceptor.engine.judging.experts import add_expert
    from tests.tui_helpers import judged_project

    judged_project(project, 3)
    add_expert(project.store, "Dr Ada")
    add_expert(project.store, "Dr Bo")
    root = str(project.root)
    assert main(["--project", root, "judge", "next", "--as", "Dr Ada", "--json"]) == 0
    served = json.loads(capsys.readouterr().out)["pair_id"]
    assert main(["--project", root, "judge", "record", "--as", "Dr Bo", "--pair", str(served), "--verdict", "A"]) == 2
    err = capsys.readouterr().err
    assert f"pair {served} is not currently served to Dr Bo" in err
    assert "Get a pair with `preceptor judge next --as 'Dr Bo'`" in err
    assert main(["--project", root, "judge", "record", "--as", "Dr Ada", "--pair", str(served), "--verdict", "A", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pair_id"] == served
    user, session = project.store.one("SELECT os_user, served_session FROM judgments WHERE judge_id = 'Dr Ada'")
    import getpass

    assert user == getpass.getuser() and session is None


def test_experts_add_token_opens_that_experts_session(project, capsys):
    from preceptor.cli import main
    from preceptor.engine.judging.experts import expert_for_token

    assert main(["--project", str(project.root), "experts", "add", "Dr Ada", "--token"]) == 0
    out = capsys.readouterr().out
    token = out.split("): ", 1)[1].split()[0]
    assert expert_for_token(project.store, token).name == "Dr Ada"
    assert expert_for_token(project.store, token + "x") is None
    assert project.store.scalar("SELECT token_hash FROM experts") != token  # stored hashed
