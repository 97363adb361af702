"""The endpoint's local HTTP server: uvicorn with the limits it lacks by itself, so that slow or
numerous clients cannot starve it (issue 21 item 7).

uvicorn has no timeout on reading a request (its keep-alive timer runs only between requests and
is reset by every byte received, uvicorn issue #157), and its `limit_concurrency` answers 503 only
once a request's headers are complete, so a client that dribbles headers holds a connection, and
a file descriptor, for ever; past the process's file limit accept() fails with EMFILE and asyncio
logs a traceback for every attempt. `GuardedH11Protocol` is uvicorn's own h11 protocol with:

- a header deadline: a request's headers must be complete within `header_timeout_s` of the
  connection opening (or of the request's first byte on a kept-alive connection), else the
  connection gets a 408 and is closed;
- a body deadline: the body must be complete within `body_timeout_s` of the headers, else the
  connection is closed (the app sees a disconnect);
- a connection limit below the file limit: at the limit a new connection first evicts the
  longest-waiting connection that has no request in progress (a slow or idle client), so a
  health check still gets through; when every connection is busy with a request, the new one
  gets a 503 with Retry-After and is closed at once. Either way accept() never meets EMFILE.

Refusals and timeouts are logged through `getLogger(__name__)`; the entry point's handlers rate-
limit repeated lines (`edge_ocr.ops.logsetup.RateLimitFilter`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

#: descriptors kept free for everything but client connections (the index, object files, the
#: thread pool, model files, log files), on top of those open when the server starts
FD_RESERVE = 64
#: the listen backlog: asyncio accepts up to this many sockets per loop turn before any of them
#: reaches `connection_made` (where the limit is applied), and up to about four turns' worth can be
#: open before the excess is closed, so that many descriptors are kept free as well
BACKLOG = 64
ACCEPT_SLACK = 4 * BACKLOG


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_connections: int = 1000


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def connection_limit(requested: int | None = None) -> int:
    """At most `requested` connections (default 1000), and never so many that client sockets,
    the descriptors already open, `FD_RESERVE` and `ACCEPT_SLACK` exceed the soft RLIMIT_NOFILE."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = requested if requested is not None else ServerLimits.max_connections
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = soft - open_fds() - FD_RESERVE - ACCEPT_SLACK
    if room < 1:
        raise ValueError(
            f"the file limit (ulimit -n) is {soft}: too low for a server; raise it (LimitNOFILE= in "
            "the systemd unit)"
        )
    return max(1, min(wanted, room))


_REFUSAL_BODY = b'{"status":"error","error":"too many connections; try again shortly"}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY
)
_TIMEOUT_BODY = b'{"status":"error","error":"request headers not complete in time"}'
_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


def guarded_protocol(limits: ServerLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with `limits` (pass it as uvicorn.Config(http=...))."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class GuardedH11Protocol(H11Protocol):
    limits = ServerLimits()

    _refused = False
    _deadline: asyncio.TimerHandle | None = None
    _phase: str = ""  # "headers", "body" or "" (no deadline: idle between requests or answering)
    _idle_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections and not self._evict_one():
            self._refused = True
            self.transport = transport
            logger.warning(
                "refused a connection: %d connections open, the limit (--max-connections)",
                len(self.connections),
            )
            transport.write(_REFUSAL)
            transport.close()
            return
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._arm("headers", self.limits.header_timeout_s)

    def _evict_one(self) -> bool:
        """Close the connection waiting longest with no request in progress (headers being read,
        or idle between requests); False if every connection is busy with a request."""
        waiting = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c._waiting()]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._idle_since)
        logger.warning(
            "at the connection limit (%d): closed the connection that waited longest for a request",
            self.limits.max_connections,
        )
        oldest._close()
        return True

    def _waiting(self) -> bool:
        return (
            not self.transport.is_closing()
            and self.conn.their_state is h11.IDLE
            and (self.cycle is None or self.cycle.response_complete)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._phase == "" and self.conn.their_state is h11.IDLE:  # a kept-alive connection's next request
            self._idle_since = self.loop.time()
            self._arm("headers", self.limits.header_timeout_s)
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = self.loop.time()
        self._follow()

    def _follow(self) -> None:
        """Move the deadline with the request: headers, then body, then none while answering."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.limits.body_timeout_s)
        elif state is h11.IDLE and self._phase == "headers":
            pass  # still reading headers: the deadline stays where it was
        else:
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = ""

    def _expired(self) -> None:
        phase = self._phase
        self._deadline = None
        self._phase = ""
        if self.transport.is_closing():
            return
        client = self.client[0] if self.client else "a client"  # no port: repeats are rate-limited
        if phase == "headers" and self.conn.their_state is h11.IDLE:
            logger.warning(
                "closed a connection from %s: request headers not complete within %gs",
                client,
                self.limits.header_timeout_s,
            )
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_TIMEOUT)
            self._close()
        elif phase == "body" and self.conn.their_state is h11.SEND_BODY:
            logger.warning(
                "closed a connection from %s: request body not complete within %gs",
                client,
                self.limits.body_timeout_s,
            )
            self._close()

    def _close(self) -> None:
        self._disarm()
        self.transport.close()
