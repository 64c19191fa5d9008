"""What HTTP clients may hold of the process: a cap on open connections and a time limit on sending a request.

With uvicorn's defaults a connection lives as long as its client keeps it open: a client that sends part of its
headers or of a promised body, then nothing, holds a file descriptor for ever. 1,100 such clients used up a
process whose soft open-files limit was 1024, and its gRPC side lost the Redis connections and the spool file it
needed (decisions degraded, some logged nowhere). uvicorn has a keep-alive timeout but no read timeout, so its h11
protocol is extended here:

- a connection beyond the cap is answered 503 at once, before anything of it is read, and closed (a client that
  had sent bytes gets a reset after the answer: the kernel resets a socket closed with unread bytes);
- a request whose headers and body have not all arrived within the read timeout (counted from its first byte, or
  from the connection's opening) is answered 408 and its connection closed.

Both answers carry the API's JSON error body. The process's soft open-files limit is raised to its hard limit at
start, and the cap kept well under it, so the descriptors gRPC and Redis need are always there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# Descriptors kept for everything but HTTP connections: gRPC connections, the Redis pool, spool and model files.
KEPT_FOR_THE_REST = 256
# uvicorn's listen backlog, kept where the open-files limit allows it.
MAX_BACKLOG = 2048


def _answer(code: int, reason: str, status: str, message: str, *headers: str) -> bytes:
    """A whole HTTP response with the API's JSON error body, that closes the connection."""
    body = json.dumps({"error": {"code": code, "status": status, "message": message}}).encode()
    head = [f"HTTP/1.1 {code} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    head += [*headers, "connection: close"]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a read timeout; ``limited_protocol`` sets both."""

    max_connections = 1000
    read_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            message = f"more than {self.max_connections} HTTP connections are open; retry later"
            self._answer_and_close(_answer(503, "Service Unavailable", "UNAVAILABLE", message, "retry-after: 1"))
            return
        self._start_read_timer()

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._start_read_timer()  # the first bytes of a request (the next one, on a kept-alive connection)
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            if self.cycle.more_body:
                self._start_read_timer()  # its body is still to come (a pipelined request's timer starts here)
            else:
                self._stop_read_timer()  # the whole request is in

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        super().connection_lost(exc)

    def _start_read_timer(self) -> None:
        if self.read_timer is None:
            self.read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _stop_read_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None

    def _read_timed_out(self) -> None:
        self.read_timer = None
        message = f"the request did not arrive whole within {self.read_timeout_s:g} s"
        self._answer_and_close(_answer(408, "Request Timeout", "DEADLINE_EXCEEDED", message))

    def _answer_and_close(self, response: bytes) -> None:
        # An application still waiting for this request's body is told the client is gone (connection_lost).
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


def limited_protocol(max_connections: int, read_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with these limits."""

    class Limited(LimitedH11Protocol):
        pass

    Limited.max_connections = max_connections
    Limited.read_timeout_s = read_timeout_s
    return Limited


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit (the soft one is often 1024, whatever the
    machine allows); returns the soft limit now in force."""
    unlimited = 1 << 20  # what no limit amounts to: Linux's default fs.nr_open
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return unlimited
    wanted = unlimited if hard == resource.RLIM_INFINITY else hard
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as exc:
        log.warning("open-files limit left at %d (raising it to %d failed: %s)", soft, wanted, exc)
        return soft
    return wanted


@dataclass(frozen=True)
class ConnectionBudget:
    """How many HTTP connections a process serves at once, and how many may wait to be accepted."""

    max_connections: int
    backlog: int


def connection_budget(wanted: int, open_files: int) -> ConnectionBudget:
    """The HTTP connections that fit in a process's ``open_files`` descriptors: ``wanted`` (NBA_HTTP_MAX_CONNECTIONS)
    unless that is too many, then fewer, with a warning.

    KEPT_FOR_THE_REST descriptors stay for gRPC and Redis. Of the others at most half serve connections, and the
    other half absorbs a burst of refused ones: asyncio accepts up to ``backlog`` connections in one go, and those
    beyond the cap hold their descriptors until their sockets are closed, on a later turn of the event loop."""
    spare = max(open_files - KEPT_FOR_THE_REST, 4)
    backlog = min(MAX_BACKLOG, spare // 4)
    fits = spare // 2
    if wanted > fits:
        log.warning(
            "NBA_HTTP_MAX_CONNECTIONS=%d does not fit in this process's open-files limit (%d): at most %d HTTP "
            "connections are served",
            wanted,
            open_files,
            fits,
        )
    return ConnectionBudget(min(wanted, fits), backlog)
