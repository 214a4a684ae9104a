"""HTTP/1.1 connection limits uvicorn does not offer: header and body deadlines, a header size limit.

Uvicorn (0.54) times out only idle keep-alive connections: a client that never finishes its headers,
or sends less body than its ``Content-Length``, holds its connection for ever, and its h11 header
limit does not exist for the faster httptools parser. This subclass of uvicorn's httptools protocol
adds, per request:

- a **header deadline**: the request line and headers must arrive within ``header_timeout`` seconds
  of the connection opening (or of the request's first byte on a kept-alive connection);
- a **body deadline**: the whole body must arrive within ``body_timeout`` seconds of the headers;
- a **header size limit**: more than ``max_header_bytes`` of request line and headers is refused.

A request cut off this way is answered 408 or 431 as JSON with ``Connection: close``, and the
connection is closed; so is uvicorn's own 400 for a malformed request. Everything else (parsing,
keep-alive, pipelining, flow control) is uvicorn's, unchanged.
"""

from __future__ import annotations

import asyncio
import os

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from digitlab.serve.responses import error_body

HEADER_TIMEOUT = 5.0  # seconds for the request line and headers
BODY_TIMEOUT = 15.0  # seconds for a whole body (4 MB at ~270 kB/s)
MAX_HEADER_BYTES = 16_384  # request line + headers (nginx's default large_client_header_buffers is 4 x 8k)
# Set by digitlab.serve.server.serve for its worker processes (--header-timeout, --body-timeout).
ENV_HEADER_TIMEOUT = "DIGITLAB_SERVE_HEADER_TIMEOUT"
ENV_BODY_TIMEOUT = "DIGITLAB_SERVE_BODY_TIMEOUT"


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT
    body_timeout = BODY_TIMEOUT
    max_header_bytes = MAX_HEADER_BYTES

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = float(os.environ.get(ENV_HEADER_TIMEOUT) or self.header_timeout)
        self.body_timeout = float(os.environ.get(ENV_BODY_TIMEOUT) or self.body_timeout)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._in_body = False
        self._header_bytes = 0

    # -- deadlines ---------------------------------------------------------------------------

    def _arm(self, seconds: float, status: int, detail: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._refuse, status, detail)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _refuse(self, status: int, detail: str) -> None:
        """Answer ``status`` (unless a response has begun) and close the connection."""
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle  # the request being answered: while headers arrive, the previous one (or None)
        if self._in_headers:
            can_answer = cycle is None or cycle.response_complete
        else:
            can_answer = cycle is not None and not cycle.response_started
        if can_answer:
            body = error_body(detail)
            self.transport.write(b"".join([
                STATUS_LINE[status], b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body]))
        if cycle is not None and not cycle.response_complete and not self._in_headers:
            cycle.disconnected = True  # the app sees http.disconnect and its answer goes nowhere
            cycle.message_event.set()
        self.transport.close()

    def _headers_deadline(self) -> None:
        self._in_headers = True
        self._header_bytes = 0
        self._arm(self.header_timeout, 408,
                  f"the request headers did not arrive within {self.header_timeout:g} s")

    # -- uvicorn's protocol, with the deadlines --------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._headers_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_headers:
            return
        # the headers are still incomplete after this data: (nearly) all of it was request line and headers
        self._header_bytes += len(data)
        if self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._disarm()
            self._refuse(431, f"the request headers are larger than {self.max_header_bytes:,} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:  # the first byte of a request on a kept-alive connection
            self._headers_deadline()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._in_body = True
        self._arm(self.body_timeout, 408, f"the request body did not arrive within {self.body_timeout:g} s")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._in_body:
            self._in_body = False
            self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self._refuse(400, f"malformed HTTP request ({msg.rstrip('.')})")
