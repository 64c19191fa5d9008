"""Redis plumbing shared by the online store and the decision log: a fail-fast client, several commands in one
round trip bounded by a caller's deadline, and the circuit breaker both consult after a failure."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)


class ClientConfig(Protocol):
    """What ``connect`` needs of a configuration (``RedisStoreConfig`` has it)."""

    @property
    def url(self) -> str: ...

    @property
    def timeout_ms(self) -> float: ...


def connect(config: ClientConfig) -> redis.Redis:
    """A client that fails fast: no retries, short timeouts, hiredis parsing when installed."""
    timeout = config.timeout_ms / 1000.0
    return redis.Redis.from_url(
        config.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        health_check_interval=0,
        # RESP2, whose connections need no HELLO: redis-py 8 speaks RESP3 by default, and its HELLO on every
        # reconnect waited out the whole socket timeout for a stopped Redis, past the caller's deadline.
        protocol=2,
        # No CLIENT SETINFO round trips on each (re)connect: a connection is ready once TCP is, so a call bounded
        # by a caller's deadline (RoundTrip) never waits out the full socket timeout in a handshake.
        driver_info=None,
    )


class CircuitBreaker:
    """After a failure, answer "open" for ``retry_after_s`` so callers skip Redis instead of each waiting for it.

    A caller that finds it closed tries Redis; the first failure opens it again. The failure that opened it is
    logged once, kept in ``failure`` (and named by ``skipped``, the reason a skipping caller gives) until Redis
    answers again, which is logged too; ``opened`` counts the episodes. Thread-safe enough without a lock: the
    worst case under a race is one extra attempt or one extra log line.
    """

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self._open_until = 0.0
        self.failure = ""  # what failed since Redis last answered ("" while it answers)
        self.opened = 0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._open_until

    @property
    def skipped(self) -> str:
        return f"skipped after a recent failure ({self.failure})"

    def failed(self, cause: BaseException | str) -> None:
        self._open_until = time.monotonic() + self.retry_after_s
        if not self.failure:
            self.failure = str(cause) or type(cause).__name__
            self.opened += 1
            log.warning(
                "Redis failed (%s): skipped for %.1f s at a time until it answers again",
                self.failure,
                self.retry_after_s,
            )

    def succeeded(self) -> None:
        self._open_until = 0.0
        if self.failure:
            log.info("Redis answers again (it had failed: %s)", self.failure)
            self.failure = ""


# hiredis's type stub declares a one-element tuple; pack_command takes a command of any length.
_pack_command = cast(Callable[[tuple[str | bytes | int, ...]], bytes], hiredis.pack_command)


class CutShort(redis.TimeoutError):
    """A call given less time than the store's timeout (what was left of a caller's deadline) did not finish in it.

    Not a sign that Redis is failing, so it opens no circuit breaker: the next caller, with more time, tries."""


class RoundTrip:
    """Several commands in one write and one round trip, on connections checked out of the client's pool once.

    Measured here: a Lua script doing the same reads costs Redis ~100 us of CPU per call (building Lua tables)
    against ~22 us for the plain commands, and redis-py's Pipeline adds ~40 us of Python per call over this.
    redis-py's pool spends ~20-40 us on each check-out and return (a lock, metrics, events), so connections
    stay checked out here, one per thread that needs one at a time, and ``client.close()`` still closes them
    (the pool closes those in use too). Arguments are str (sent as UTF-8), bytes or int; hiredis packs them
    in C, where redis-py's own packer type-checks each one in Python.

    ``timeout_s`` bounds one call below the client's socket timeout (a caller's deadline is near): connecting and
    every reply must come within it, else ``CutShort``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.socket_timeout_s: float = self.pool.connection_kwargs.get("socket_timeout") or float("inf")
        # list.pop and list.append are atomic under the GIL: each connection serves one caller at a time.
        self._idle: list[Any] = []

    def __call__(self, *commands: tuple[str | bytes | int, ...], timeout_s: float | None = None) -> list[Any]:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self.pool.get_connection()
        try:
            if timeout_s is None or timeout_s >= self.socket_timeout_s:
                connection.send_packed_command([b"".join(map(_pack_command, commands))])
                replies = [connection.read_response() for _ in commands]
            else:
                replies = self._bounded(connection, commands, timeout_s)
        except BaseException:
            connection.disconnect()  # a half-read reply would garble the next command; it reconnects when used
            raise
        finally:
            self._idle.append(connection)
        for reply in replies:
            if isinstance(reply, redis.ResponseError):
                raise reply
        return replies

    @staticmethod
    def _bounded(connection: Any, commands: tuple[tuple[str | bytes | int, ...], ...], timeout_s: float) -> list[Any]:
        until = time.monotonic() + timeout_s
        connect_timeout = connection.socket_connect_timeout
        connection.socket_connect_timeout = timeout_s
        try:
            connection.connect()  # at once when connected; else within the time left (no handshake, see connect)
            connection.send_packed_command([b"".join(map(_pack_command, commands))])
            return [connection.read_response(timeout=max(until - time.monotonic(), 1e-4)) for _ in commands]
        except redis.TimeoutError as exc:
            raise CutShort(f"no answer within the {timeout_s * 1000:.1f} ms the deadline left") from exc
        finally:
            connection.socket_connect_timeout = connect_timeout
