"""The join page of live sessions: `GET /live/{session}` and its script, no external resources.

Join links (R9) point at `/live/{session}`. The page takes the bearer `token` (and
optionally `session`, `relay=1`) from the URL fragment or query string, opens `/ws`
with `confide.v1.json`, joins the session and runs the WebRTC side described in
docs/live.md ("What a client app must do"): perfect negotiation with `polite` from
`live.start`, an ICE restart on a resumed start. The page holds no secrets: it is the
same for everyone, and the token never leaves the browser except to this node.

The page's state for tests and diagnostics is `window.confide` (see `static/live.js`).
A strict Content-Security-Policy allows only this node's own script and websocket.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

STATIC = Path(__file__).with_name("static")
ASSETS = {"live.js": "text/javascript; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "Referrer-Policy": "no-referrer",  # the token may sit in the query string
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


async def live_page(request: Request) -> Response:
    """The join page of one session; the session id in the path is read by the script.

    The page is the same for every id and holds nothing: whether the session exists,
    and whether the person may join it, is answered on `/ws` after `hello`."""
    html = (STATIC / "live.html").read_text("utf-8")
    return Response(html, media_type="text/html; charset=utf-8", headers=HEADERS)


async def live_asset(request: Request) -> Response:
    name = request.path_params["name"]
    kind = ASSETS.get(name)
    if kind is None:
        raise HTTPException(404)  # answered in the node's JSON error shape
    return Response((STATIC / name).read_text("utf-8"), media_type=kind,
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


def routes() -> list[BaseRoute]:
    """The page's routes, to add to the node's app."""
    return [
        Route("/live/assets/{name}", live_asset, methods=["GET"]),
        Route("/live/{session}", live_page, methods=["GET"]),
    ]
