"""A Starlette app served by uvicorn on a thread of the calling process, with strict security headers.

The service owns its state; the page server is a view of it in the same process (or, for the district,
of the same database), so there is never a second owner of state. uvicorn is used without its optional
extras (no uvloop, httptools, watchfiles): a few MB of memory on the kit.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import uvicorn
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).resolve().parent / "static"
#: Where pages find the shared stylesheet and script (tpskit/web/static/).
CORE_STATIC_URL = "/static/core"

#: Nothing but the page's own origin: no CDN, no inline script, no framing by another site. SVG
#: presentation attributes (an overlay's x/y) are not styles, so style-src needs no 'unsafe-inline'.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


def core_static() -> Mount:
    return Mount(CORE_STATIC_URL, app=StaticFiles(directory=STATIC), name="core-static")


class SecurityHeaders:
    """ASGI middleware adding HEADERS to every HTTP response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


class PageServer:
    """`app` served on host:port (port 0: any free port; see `.port` once started) until `stop()`."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0):
        config = uvicorn.Config(SecurityHeaders(app), host=host, port=port, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=1, server_header=False)
        self.server = uvicorn.Server(config)
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> PageServer:
        # uvicorn installs no signal handlers off the main thread: the service keeps its own.
        self._thread = threading.Thread(target=self.server.run, name="page-server", daemon=True)
        self._thread.start()
        self._thread.join(0)
        waited = 0.0
        while not self.server.started:
            if not self._thread.is_alive():
                raise OSError(f"the page server could not listen on {self.host}:{self.port}")
            threading.Event().wait(0.02)
            waited += 0.02
            if waited > timeout:
                raise TimeoutError(f"the page server did not start within {timeout} s")
        sockets: list[Any] = [s for srv in self.server.servers for s in srv.sockets]
        self.port = sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> PageServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
