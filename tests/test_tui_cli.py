"""`preceptor serve` (browser access through textual-serve) listens on 127.0.0.1 by default."""

from __future__ import annotations

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
        body = ""
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
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
    assert f"Serving {project.root} on http://127.0.0.1:{port}" in err
