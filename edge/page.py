"""The officer's review page, served by the kit daemon on loopback to the kiosk browser of the touch display.

A view of the daemon, never a second owner of its state: `/view` is the daemon's `view` command (answered by
its main loop, as the control socket's commands are), `/events` tells the page when to ask again (the daemon
bumps `changes` on every state change, press, correction or delivery answer), and the officer's actions
(`check` a draft value, `correct`, mark the `slip`, `confirm`) are control commands posted to `/command`.
The physical buttons keep working; the page follows them through `/events`.

The page loads nothing from the internet: its HTML, script and stylesheet are in edge/pages/ and tpskit/web.
Only the page's own origin may post a command (a JSON body, and an Origin header naming this host when
sent): another web page open in a browser on the kit cannot correct or confirm a result.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tpskit.web.server import PageServer, core_static
from tpskit.web.sse import sse_response

if TYPE_CHECKING:
    from tpskit.edge.daemon import KitDaemon

PAGES = Path(__file__).resolve().parent / "pages"
_FIELD = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_VALUE = re.compile(r"^[0-9]{1,9}$")


def _command_line(body: Any) -> str | None:
    """The control command for a posted action, or None when it is not one the page may send."""
    if not isinstance(body, dict):
        return None
    cmd = body.get("command")
    if cmd in ("check", "correct"):
        field, value = str(body.get("field", "")), str(body.get("value", ""))
        if _FIELD.match(field) and _VALUE.match(value):
            return f"{cmd} {field} {value}"
        return None
    if cmd == "slip" and isinstance(body.get("on"), bool):
        return f"slip {'on' if body['on'] else 'off'}"
    if cmd == "confirm":
        return "confirm"
    return None


def make_app(daemon: KitDaemon) -> Starlette:
    async def index(request: Request) -> Response:
        return FileResponse(PAGES / "kit.html", headers={"Cache-Control": "no-store"})

    async def view(request: Request) -> Response:
        answer = await run_in_threadpool(daemon._answer, "view")
        return Response(answer, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def events(request: Request) -> Response:
        return sse_response(request, daemon.changes, lambda: {"version": daemon.changes.n}, poll_s=0.02)

    async def picture(request: Request) -> Response:
        pic = daemon.picture
        if pic is None or request.path_params["pid"] != f"{id(pic):x}":
            return Response(status_code=404)
        return Response(pic.jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def command(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            return JSONResponse({"error": "commands come from the kit's own page only"}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "a command is a JSON body"}, status_code=415)
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        line = _command_line(body)
        if line is None:
            return JSONResponse({"error": "not a command of the review page"}, status_code=400)
        answer = await run_in_threadpool(daemon._answer, line)
        return Response(answer, media_type="application/json", headers={"Cache-Control": "no-store"})

    routes = [Route("/", index), Route("/view", view), Route("/events", events),
              Route("/picture/{pid}.jpg", picture), Route("/command", command, methods=["POST"]),
              core_static(), Mount("/static/kit", app=StaticFiles(directory=PAGES / "static"), name="kit-static")]
    return Starlette(routes=routes)


def start_page(daemon: KitDaemon) -> PageServer:
    """Serve the page on the configured loopback address (raises OSError when it cannot listen)."""
    screen = daemon.cfg.screen
    return PageServer(make_app(daemon), host=screen.host, port=screen.port).start()
