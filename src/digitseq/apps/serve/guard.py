"""Connection guards for uvicorn's httptools protocol: what hostile clients cannot do.

uvicorn (0.54, httptools) puts no limit on the size or number of request headers and no
deadline on receiving them: one client streaming a 100 MB header stalled every other request
for 13 s, and connections that send their headers a byte at a time were held forever. This
protocol class adds, per connection:

- a header budget: request line + headers over ``max_header_kb`` get 431 and a close, more than
  ``max_headers`` header lines too (counted as bytes arrive, never buffered past the budget);
- a header deadline: a request's headers (and the bytes before the first one) must arrive
  within ``header_timeout_s`` of the connection opening or the previous answer: 408 and close;
- a cap on open connections: over ``max_connections`` the oldest connection that is still
  waiting for headers (slow or idle) is closed to make room, so normal clients keep being
  served; only when every connection is busy is the newcomer refused.

The request body is bounded by the endpoint itself (size limits and the request timeout).
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from typing import ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("digitseq.apps.serve.guard")
REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large", 503: b"Busy"}


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    max_connections: int = 1000

    @classmethod
    def from_settings(cls, s) -> Limits:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = s.max_connections
        if soft != resource.RLIM_INFINITY and cap > soft - 64:
            cap = max(1, soft - 64)  # keep descriptors for the model, logs and the listener
            log.warning("max_connections lowered to %d (file descriptor limit %d)", cap, soft)
        return cls(int(s.max_header_kb * 1024), s.max_headers, s.header_timeout_s, cap)


class TooManyHeaders(Exception):
    pass


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header limits, a header deadline and a connection cap.

    ``limits`` is set by ``digitseq serve`` before uvicorn starts; a worker process started
    with ``--workers N`` reads it from the ``DIGITSEQ_SERVE_*`` environment instead."""

    limits: ClassVar[Limits | None] = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if GuardedProtocol.limits is None:
            from digitseq.apps.serve.app import ServeSettings

            GuardedProtocol.limits = Limits.from_settings(ServeSettings.from_env())
        self.guard = GuardedProtocol.limits
        self.waiting = True  # waiting for a request's headers (or idle between requests)
        self.waiting_since = self.loop.time()
        self.header_bytes = 0
        self.header_count = 0
        self.header_timer = None

    # --- connection lifecycle ----------------------------------------------------------------

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.guard.max_connections and not self.evict_one():
            self.refuse(503, "too many open connections")
            return
        self.arm_header_timer()

    def connection_lost(self, exc) -> None:
        self.cancel_header_timer()
        super().connection_lost(exc)

    def evict_one(self) -> bool:
        """Close the connection that has waited longest for its headers; False if none."""
        waiting = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedProtocol) and c.waiting
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since)
        oldest.refuse(503, "too many open connections") if oldest.header_bytes else oldest.close()
        return True

    def arm_header_timer(self) -> None:
        self.cancel_header_timer()
        self.waiting, self.waiting_since = True, self.loop.time()
        self.header_bytes = self.header_count = 0
        self.header_timer = self.loop.call_later(self.guard.header_timeout_s, self.header_timeout)

    def cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def header_timeout(self) -> None:
        self.header_timer = None
        if not self.waiting or self.transport.is_closing():
            return
        if self.header_bytes:
            self.refuse(408, "request headers not received in time")
        else:
            self.close()

    def close(self) -> None:
        self.cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.close()

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a one-line JSON detail and close the connection."""
        self.cancel_header_timer()
        if self.transport.is_closing():
            return
        body = b'{"detail":"' + message.encode() + b'"}'
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body)
        )
        self.transport.close()

    # --- parsing -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self.waiting:
            self.header_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self.header_count > self.guard.max_headers:
                self.refuse(431, f"more than {self.guard.max_headers} request headers")
            else:
                self.refuse_invalid()
            return
        if self.waiting and self.header_bytes > self.guard.max_header_bytes:
            self.refuse(431, f"request headers over {self.guard.max_header_bytes // 1024} KB")

    def refuse_invalid(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")
        self.cancel_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.guard.max_headers:
            raise TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.waiting = False
        self.cancel_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # the next request's headers are in already
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self.arm_header_timer()  # the next request's headers get the same deadline
