"""The review web app (Starlette): the static page, the pair queue, decisions, stats and images.

Routes: ``/`` (the page), ``/static/*`` (its JS and CSS, shipped with the package),
``GET /api/info``, ``GET /api/queue`` (ordered, filtered pairs with their decisions),
``POST /api/decide``, ``POST /api/undo``, ``GET /api/stats`` and ``GET /api/image/{index}``
(JPEG of a dataset image: only images of the dataset store can be named, by index).
With a token every request must carry it (``?token=``, the ``X-Sempairs-Token`` header, or the
cookie that the page sets on its first visit with ``?token=``).

Other web pages open in the reviewer's browser are refused in every mode: a Host header that
does not name this server (a DNS-rebinding page) gets 400; an ``/api/`` request or a write sent
by another origin (``Origin`` or ``Sec-Fetch-Site`` say so; another port is another origin) gets
403; and every write must carry the per-session secret written into the page
(``X-Sempairs-Secret``), which a form or a no-cors ``fetch`` cannot send and another origin
cannot read.
"""

from __future__ import annotations

import math
import secrets
from http.cookies import SimpleCookie
from importlib import resources

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sempairs.review.images import ImageRenderer
from sempairs.review.queue import order_pairs
from sempairs.review.session import ReviewSession
from sempairs.review.stats import review_stats
from sempairs.review.store import ReviewError, UndoConflict

STATIC = resources.files("sempairs.review") / "static"
TOKEN_HEADER = "x-sempairs-token"
SECRET_HEADER = "x-sempairs-secret"
SECRET_MARK = "SEMPAIRS_SECRET"  # the placeholder in index.html that the session's secret replaces
READS = ("GET", "HEAD")


class SameOriginGuard:
    """ASGI middleware: refuse (403) an ``/api/`` request or a write that another origin's page sent, and a write
    without ``secret`` in its ``X-Sempairs-Secret`` header (the Host header is checked before, by Starlette's
    TrustedHostMiddleware)."""

    def __init__(self, app, secret: str):
        self.app, self.secret = app, secret

    def refusal(self, scope) -> str | None:
        """Why the request is refused, or None."""
        write = scope["method"] not in READS
        if not (write or scope["path"].startswith("/api/")):
            return None  # the page and its files: opening the URL from a link elsewhere is fine
        headers = Headers(scope=scope)
        origin, site = headers.get("origin"), headers.get("sec-fetch-site")
        if origin is not None and origin != f"http://{headers.get('host')}" or site not in (None, "same-origin", "none"):
            return "forbidden: a request from another web page"
        if write and not secrets.compare_digest(headers.get(SECRET_HEADER, "").encode(), self.secret.encode()):
            return "forbidden: a write without the page's secret (reload the review page)"
        return None

    async def __call__(self, scope, receive, send):
        problem = self.refusal(scope) if scope["type"] == "http" else None
        if problem:
            return await PlainTextResponse(problem, 403)(scope, receive, send)
        return await self.app(scope, receive, send)


class TokenGuard:
    """ASGI middleware: refuse (403) every HTTP request that does not carry ``token``."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    def _cookie(self, scope) -> str:
        return f"sempairs_token_{scope['server'][1] if scope.get('server') else ''}"

    def _given(self, scope) -> list[str]:
        headers = dict(scope["headers"])
        given = [headers.get(TOKEN_HEADER.encode(), b"").decode("latin-1")]
        given += Request(scope).query_params.getlist("token")
        cookie = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
        if self._cookie(scope) in cookie:
            given.append(cookie[self._cookie(scope)].value)
        return given

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not any(secrets.compare_digest(g.encode(), self.token.encode()) for g in self._given(scope)):
            response = PlainTextResponse("forbidden: open the URL printed by `sempairs review`, with its ?token=", 403)
            return await response(scope, receive, send)

        async def send_with_cookie(message):
            if message["type"] == "http.response.start" and scope["path"] == "/":
                cookie = f"{self._cookie(scope)}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())]}
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


def _float(params, key: str) -> float | None:
    text = params.get(key, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ReviewError(f"{key}={text!r} is not a number") from None
    if math.isnan(value):
        raise ReviewError(f"{key} must be a number, not NaN")
    return value


def create_app(session: ReviewSession, token: str | None = None, hosts: list[str] | tuple[str, ...] = ("*",)) -> Starlette:
    """The review app for ``session``, answering requests whose Host header names one of ``hosts``; with ``token``,
    every request must carry it; only its own page can write (see the module docstring)."""
    store, pairs, db = session.store, session.pairs, session.decisions
    secret = secrets.token_urlsafe(16)
    page = (STATIC / "index.html").read_text(encoding="utf-8").replace(SECRET_MARK, secret)
    rows = db.pairs()
    images = ImageRenderer(store)

    def view(pos: int, decisions: dict) -> dict:
        row = rows[pos]
        return {
            "pos": pos, "a": int(pairs.anchor[pos]), "p": int(pairs.positive[pos]),
            "a_id": row["anchor"], "p_id": row["positive"], "a_class": row["anchor_class"], "p_class": row["positive_class"],
            "label": row["label"], "score": row["score"], "source": row["source"],
            "decision": decisions.get(pos, {}).get("decision"),
        }

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def info(request: Request) -> Response:
        scores = [r["score"] for r in rows if r["score"] is not None]
        return JSONResponse({
            "pair_file": str(session.pair_file), "dataset": store.source, "split": store.split,
            "reviewer": session.reviewer, "classes": sorted(set(session.pair_class) - {""}), "sources": pairs.sources,
            "score_min": min(scores, default=None), "score_max": max(scores, default=None), "counts": db.counts(),
        })

    def queue(request: Request) -> Response:
        q = request.query_params
        try:
            seed = int(q.get("seed") or 0)
        except ValueError:
            raise ReviewError(f"seed={q.get('seed')!r} is not an integer") from None
        order = order_pairs(pairs.score, pairs.source, session.pair_class, q.get("order") or "file", seed,
                            q.get("cls") or None, q.get("source") or None, _float(q, "min"), _float(q, "max"))
        decisions = db.decisions()
        return JSONResponse({"pairs": [view(int(pos), decisions) for pos in order], "counts": db.counts()})

    async def body(request: Request, *keys: str) -> list:
        try:
            data = await request.json()
        except ValueError:
            raise ReviewError("the request body is not JSON") from None
        missing = [k for k in keys if not isinstance(data, dict) or k not in data]
        if missing:
            raise ReviewError(f"the request body lacks {', '.join(missing)}")
        ids = [k for k in keys if k in ("request_id", "undo") and not (isinstance(data[k], str) and 0 < len(data[k]) <= 100)]
        if ids:
            raise ReviewError(f"{ids[0]} must be a string of 1 to 100 characters")
        return [data[k] for k in keys]

    async def decide(request: Request) -> Response:
        pair, decision, request_id = await body(request, "pair", "decision", "request_id")
        if isinstance(pair, bool) or not isinstance(pair, int) or not 0 <= pair < len(rows):
            raise ReviewError(f"pair {pair!r} is not a pair position 0..{len(rows) - 1}")
        result = await run_in_threadpool(db.decide, pair, decision, session.reviewer, request_id)
        return JSONResponse({**result, "counts": db.counts()})

    async def undo(request: Request) -> Response:
        undo_request, request_id = await body(request, "undo", "request_id")
        result = await run_in_threadpool(db.undo, undo_request, session.reviewer, request_id)
        return JSONResponse({**result, "counts": db.counts()})

    def stats(request: Request) -> Response:
        return JSONResponse(review_stats(rows, db.decisions()))

    def image(request: Request) -> Response:
        index = request.path_params["index"]
        if not 0 <= index < len(store):
            return PlainTextResponse(f"no image {index} in the dataset", 404)
        return Response(images.jpeg(index), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    async def refused(request: Request, exc: ReviewError) -> Response:
        return JSONResponse({"error": str(exc)}, 409 if isinstance(exc, UndoConflict) else 400)

    app = Starlette(
        routes=[
            Route("/", index), Route("/api/info", info), Route("/api/queue", queue),
            Route("/api/decide", decide, methods=["POST"]), Route("/api/undo", undo, methods=["POST"]),
            Route("/api/stats", stats), Route("/api/image/{index:int}", image),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ],
        exception_handlers={ReviewError: refused},
    )
    app.add_middleware(SameOriginGuard, secret=secret)
    if token is not None:
        app.add_middleware(TokenGuard, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts), www_redirect=False)
    return app
