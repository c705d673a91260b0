"""``preceptor serve``: the app in a web browser, behind a token, same-origin only.

textual-serve runs one app process per websocket. :class:`GuardedServer` puts a check in
front of every route:

* a token, in the query (``?token=…``) or in the cookie the page sets, is required for the
  page, its static files and the websocket (401 without one, 403 for a wrong one);
* ``Host`` must name the address served (no DNS rebinding), and the websocket's ``Origin``
  must be that same origin (a foreign web page cannot drive the app);
* the server token opens the whole app; an expert's personal token (``experts add
  --token``) opens straight into that expert's judge session, which cannot switch expert;
* each web session's judgments carry its id (``served_session``).

The page is our own template (no web fonts or scripts from the internet).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

COOKIE = "preceptor_token"
TEMPLATES = Path(__file__).resolve().parent / "templates"
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _netloc(host: str, port: int) -> str:
    h = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{h}:{port}"


def make_server(command: Callable[[str | None, str], str], *, host: str, port: int, title: str, token: str,
                expert_for_token: Callable[[str], str | None]) -> Any:
    """A textual-serve ``Server`` guarded as described above.

    ``command(expert, session_id)`` is the shell command of one app process (``expert`` set
    for a personal token); ``expert_for_token(token)`` names the expert of a personal token.
    """
    from aiohttp import web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server, log, to_int

    netloc = _netloc(host, port)
    allowed_hosts = {netloc} | ({f"localhost:{port}", f"127.0.0.1:{port}"} if is_loopback(host) else set())

    class GuardedServer(Server):
        def _who(self, request: web.Request) -> tuple[str, str | None]:
            """('server' | 'expert', expert name) or raises 401/403."""
            if request.host not in allowed_hosts:
                raise web.HTTPForbidden(text=f"Host {request.host!r} is not the address served ({netloc}).")
            given = request.query.get("token") or request.cookies.get(COOKIE) or ""
            if not given:
                raise web.HTTPUnauthorized(text="A token is needed: open the URL `preceptor serve` printed.")
            if hmac.compare_digest(given.encode(), token.encode()):
                return "server", None
            name = expert_for_token(given)
            if name is None:
                raise web.HTTPForbidden(text="This token is not valid for this server.")
            return "expert", name

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()

            @web.middleware
            async def guard(request: web.Request, handler: Any) -> Any:
                self._who(request)
                response = await handler(request)
                given = request.query.get("token")
                if given and isinstance(response, web.Response) and not response.prepared:
                    response.set_cookie(COOKIE, given, httponly=True, samesite="Strict", path="/")
                return response

            app.middlewares.append(guard)
            return app

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            _, expert = self._who(request)
            origin = request.headers.get("Origin", "")
            if origin not in {f"http://{h}" for h in allowed_hosts} | {f"https://{h}" for h in allowed_hosts}:
                raise web.HTTPForbidden(text=f"Origin {origin or '(none)'!r} is not this server's.")
            websocket = web.WebSocketResponse(heartbeat=15)
            width = to_int(request.query.get("width", "80"), 80)
            height = to_int(request.query.get("height", "24"), 24)
            app_service: AppService | None = None
            try:
                await websocket.prepare(request)
                app_service = AppService(command(expert, secrets.token_hex(8)), write_bytes=websocket.send_bytes,
                                         write_str=websocket.send_str, close=websocket.close,
                                         download_manager=self.download_manager, debug=self.debug)
                await app_service.start(width, height)
                try:
                    await self._process_messages(websocket, app_service)
                finally:
                    await app_service.stop()
            except Exception as error:  # a broken session must not stop the server
                log.exception(error)
            finally:
                if app_service is not None:
                    await app_service.stop()
            return websocket

        async def on_startup(self, app: web.Application) -> None:
            pass  # the command prints the URL itself (flushed), without textual-serve's banner

    return GuardedServer(command(None, "probe"), host=host, port=port, title=title, templates_path=TEMPLATES)


def app_command(python: str, root: str, screen: str) -> Callable[[str | None, str], str]:
    """The shell command of one served app process."""
    from preceptor.engine.judging.experts import SERVED_SESSION_ENV

    def command(expert: str | None, session_id: str) -> str:
        args = [python, "-m", "preceptor", "--project", root, "tui"]
        args += ["--screen", "judge", "--as", expert, "--lock-expert"] if expert else ["--screen", screen]
        return f"{SERVED_SESSION_ENV}={shlex.quote(session_id)} " + " ".join(shlex.quote(a) for a in args)

    return command
