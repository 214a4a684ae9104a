"""The app's own protections, as one pure ASGI middleware in front of every route.

- **Host check** (against DNS rebinding): a request whose ``Host`` is not an allowed name is refused
  (400) before any route runs. ``allowed_hosts=None`` turns the check off.
- **HEAD** is answered wherever GET is (the server sends the headers and drops the body).
- **Work limit**: at most ``max_in_flight`` requests are inside the app at once; more get 503 with
  ``Retry-After``. It counts requests being worked on, not open connections: idle and half-open
  sockets are the protocol's business (:mod:`digitlab.serve.protocol` times them out).
- **Body limit**: 413 for a body larger than ``max_bytes``, from ``Content-Length`` before anything is
  read, and while the body streams in (chunked uploads, or a client whose header lies).

Every refusal is JSON ``{"detail": ...}``. Refusals that leave an unread body behind say
``Connection: close``.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digitlab.serve.responses import error_body

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def too_large_message(limit: int) -> str:
    return f"request body is larger than the {_size(limit)} limit; send a smaller picture"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body passes the limit (answered as 413)."""

    def __init__(self, limit: int):
        super().__init__(413, too_large_message(limit), headers={"Connection": "close"})


def host_names(hosts: Iterable[str]) -> frozenset[str]:
    """Normalised host names: lower case, no brackets around IPv6 addresses."""
    return frozenset(h.strip().lower().strip("[]") for h in hosts if h.strip())


class Guard:
    def __init__(self, app: ASGIApp, max_bytes: int, max_in_flight: int,
                 allowed_hosts: Iterable[str] | None = None):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        if max_in_flight <= 0:
            raise ValueError(f"max_in_flight must be positive, got {max_in_flight}")
        self.app = app
        self.max_bytes = max_bytes
        self.max_in_flight = max_in_flight
        names = None if allowed_hosts is None else host_names(allowed_hosts)
        self.allowed_hosts = None if names is None or "*" in names else names
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        length: int | None = None
        host = b""
        for name, value in headers:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0:
                    await send_error(send, 400, "invalid Content-Length header", close=True)
                    return
            elif name == b"host":
                host = value
        if self.allowed_hosts is not None:
            name = _host_name(host)
            if name not in self.allowed_hosts:
                shown = host.decode("latin-1")[:100] or "(none)"
                await send_error(send, 400, f"host {shown!r} is not allowed; this server answers "
                                            f"{', '.join(sorted(self.allowed_hosts))} (start it with "
                                            "--allow-host NAME to add a name)", close=bool(length))
                return
        if length is not None and length > self.max_bytes:
            await send_error(send, 413, too_large_message(self.max_bytes), close=True)
            return
        if self.in_flight >= self.max_in_flight:
            await send_error(send, 503, "the server is busy; try again in a moment", close=bool(length),
                             extra=[(b"retry-after", b"1")])
            return
        if scope["method"] == "HEAD":
            scope = dict(scope, method="GET")  # the server itself leaves out the body of a HEAD answer

        limit = self.max_bytes
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:  # raised somewhere that did not turn it into a response
            if started:
                raise
            await send_error(send, 413, too_large_message(limit), close=True)
        finally:
            self.in_flight -= 1


def _host_name(host: bytes) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].split("]", 1)[0]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


async def send_error(send: Send, status: int, detail: str, *, close: bool = False,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = error_body(detail)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} kB"
    return f"{n} bytes"
