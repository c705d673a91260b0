"""``preceptor serve`` against a real HTTP / websocket client: token, Host and Origin checks."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.tui_helpers import judged_project

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(project):
    from preceptor.engine.judging.experts import add_expert, issue_token

    judged_project(project, 3, settings={"min_seconds": 0})
    add_expert(project.store, "Dr Web")
    expert_token = issue_token(project.store, "Dr Web")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "preceptor", "--project", str(project.root), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        line = proc.stdout.readline().strip()  # printed and flushed before the server starts
        assert line.startswith(f"http://127.0.0.1:{port}/?token="), line
        token = line.split("token=", 1)[1]
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield {"port": port, "token": token, "expert_token": expert_token, "project": project}
    finally:
        proc.terminate()
        proc.wait(10)


async def test_serve_refuses_without_token_and_checks_host_and_origin(served, anyio_backend):
    import aiohttp

    base = f"http://127.0.0.1:{served['port']}"
    token = served["token"]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/") as r:
            assert r.status == 401
        async with http.get(f"{base}/?token=wrong") as r:
            assert r.status == 403
        async with http.get(f"{base}/static/js/textual.js") as r:
            assert r.status == 401
        async with http.get(f"{base}/?token={token}", headers={"Host": "evil.example"}) as r:
            assert r.status == 403
        async with http.get(f"{base}/?token={token}") as r:
            assert r.status == 200
            page = await r.text()
            assert "preceptor_token" in r.headers.get("Set-Cookie", "")
        assert "googleapis" not in page and "https://" not in page  # nothing fetched from the internet
        assert f"ws://127.0.0.1:{served['port']}/ws" in page
    async with aiohttp.ClientSession() as http:  # a fresh client: no cookie
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(f"{base}/ws", origin=base)
        assert err.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(f"{base}/ws?token={token}", origin="http://evil.example")
        assert err.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(f"{base}/ws?token={token}")  # no Origin at all
        assert err.value.status == 403


async def _first_bytes(url: str, origin: str, cookies: dict[str, str]) -> bytes:
    import aiohttp

    async with aiohttp.ClientSession(cookies=cookies) as http:
        async with http.ws_connect(url + "?width=80&height=24", origin=origin) as ws:
            got = b""
            end = time.monotonic() + 40
            while len(got) < 200 and time.monotonic() < end:
                msg = await asyncio.wait_for(ws.receive(), timeout=40)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    got += msg.data
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            return got


@pytest.mark.slow
async def test_serve_accepts_the_token_owner(served, anyio_backend):
    base = f"http://127.0.0.1:{served['port']}"
    # the cookie the page sets carries the token to the websocket, as in a browser
    got = await _first_bytes(f"ws://127.0.0.1:{served['port']}/ws", base, {"preceptor_token": served["expert_token"]})
    assert len(got) >= 200  # the app process started and draws
