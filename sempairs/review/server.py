"""Serving the review app: bind the address, make a token unless it is this machine's loopback, name the Host
headers it answers, run uvicorn."""

from __future__ import annotations

import secrets
import socket

import uvicorn

from sempairs.review.store import ReviewError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")


def make_token(host: str) -> str | None:
    """A random token for any address but 127.0.0.1/localhost/::1 (None there: nobody else can connect)."""
    return None if host in LOCAL_HOSTS else secrets.token_urlsafe(16)


def host_names(host: str) -> list[str]:
    """The names a request's Host header may give for a server listening on ``host``: the loopback names for
    loopback, ``host`` itself otherwise, and any name (``*``) for a wildcard address, where the token guards."""
    if host in ANY_ADDRESS:
        return ["*"]
    names = LOCAL_HOSTS if host in LOCAL_HOSTS else (host,)
    return [f"[{name}]" if ":" in name else name for name in names]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free port); a clear error when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ReviewError(f"cannot listen on {host}:{port} ({exc.strerror or exc}). "
                          "Fix: choose another --port (0 picks a free one) or --host") from exc
    return sock


def url(sock: socket.socket, host: str, token: str | None) -> str:
    """The address to open in a browser for the server on ``sock``."""
    port = sock.getsockname()[1]
    name = f"[{host}]" if ":" in host else host
    return f"http://{name}:{port}/" + (f"?token={token}" if token else "")


def serve(app, sock: socket.socket) -> None:
    """Run ``app`` on ``sock`` until interrupted (Ctrl+C); requests are not logged."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
