"""Request limits: a request body may not exceed a fixed number of bytes.

The limit is enforced twice: on the ``Content-Length`` header before anything is read, and while
the body streams in (chunked uploads, or a client whose header lies).
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_message(limit: int) -> str:
    return f"request body is larger than the {_size(limit)} limit; send a smaller picture"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when the streamed body passes the limit (answered as 413)."""

    def __init__(self, limit: int):
        super().__init__(413, too_large_message(limit))


class BodyLimit:
    """Pure ASGI middleware: 413 for any request body larger than ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length == -1:
            await _send_json(send, 400, "invalid Content-Length header")
            return
        if length is not None and length > self.max_bytes:
            await _send_json(send, 413, too_large_message(self.max_bytes))
            return

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

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:  # raised somewhere that did not turn it into a response
            if started:
                raise
            await _send_json(send, 413, too_large_message(limit))


def _content_length(scope: Scope) -> int | None:
    """The declared body length, None when absent, -1 when unreadable."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                n = int(value)
            except ValueError:
                return -1
            return n if n >= 0 else -1
    return None


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g} MB"
    if n >= 1000:
        return f"{n / 1000:g} kB"
    return f"{n} bytes"
