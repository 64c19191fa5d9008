"""Whether this server process can store decisions, as the gRPC health service reports it.

A background thread writes a short-lived key of its own (``KeyLayout.health``) to the process's Redis every
``interval_s`` (and whenever told to, e.g. by the embedded Redis's watchdog the moment that process died); each
change is passed to ``report``: ``True`` while Redis takes the write and has room, ``False`` while it does not. A
write, not a PING: a read-only Redis still answers PING, and stores no decision. Room, not only the write: a Redis
at its maxmemory (noeviction) refuses a decision's writes while a small key still fits, so less than ROOM_BYTES left
counts as full.
``decision.app`` wires it to ``GrpcServer.set_degraded``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

# Below this much of maxmemory left, Redis counts as full: a few hundred decisions' writes (~5 KB each).
ROOM_BYTES = 1 << 20


class StoreHealth:
    """Pings Redis from one thread and reports when it stops or starts answering; see the module docstring."""

    def __init__(
        self,
        redis_url: str,
        report: Callable[[bool], None],
        key: str,
        interval_s: float = 0.5,
        timeout_s: float = 1.0,
    ) -> None:
        # Its own client and connection: the decisions' short timeouts and circuit breaker are theirs.
        self.client = redis.Redis.from_url(
            redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self.report = report
        self.key = key
        self.interval_s = interval_s
        self.reachable: bool | None = None
        self._check_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-health", daemon=True)

    def start(self) -> StoreHealth:
        self.check()
        self._thread.start()
        return self

    def check(self) -> bool:
        """Write now and report a change; one check at a time, so the last one reported is the latest seen."""
        with self._check_lock:
            try:
                pipe = self.client.pipeline(transaction=False)
                # Gone a moment after the checks stop: one small key per server process, never more.
                pipe.set(self.key, "1", px=max(int(self.interval_s * 4000), 1000))
                pipe.info("memory")
                written, memory = pipe.execute()
                limit = int(memory.get("maxmemory", 0))
                reachable = bool(written) and (not limit or limit - int(memory["used_memory"]) >= ROOM_BYTES)
            except (redis.RedisError, OSError):
                reachable = False
            if reachable != self.reachable:
                if self.reachable is not None or not reachable:
                    log.log(
                        logging.INFO if reachable else logging.WARNING,
                        "Redis %s: health %s",
                        "takes writes again" if reachable else "is full or takes no writes",
                        "SERVING" if reachable else "NOT_SERVING",
                    )
                self.reachable = reachable
                self.report(reachable)
            return reachable

    def check_soon(self) -> None:
        """Check now rather than at the next interval (from another thread, without waiting for the write)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if not self._stopping.is_set():
                self.check()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        self.client.close()


def memory_policy_problems(client: redis.Redis) -> list[str]:
    """What is wrong with a Redis's memory settings for the service, as far as it lets us see (a managed Redis may
    refuse CONFIG: then nothing is said). Every key the service writes is state it cannot lose, so the one safe
    policy is noeviction: a volatile-* policy evicts decisions and seat pools (they expire), an allkeys-* one
    anything; without a maxmemory, Redis grows until the machine runs out."""
    try:
        config = client.config_get("maxmemory*")
    except (redis.RedisError, OSError):
        return []
    problems = []
    policy = str(config.get("maxmemory-policy", "noeviction"))
    if policy != "noeviction":
        problems.append(f"maxmemory-policy is {policy}: at its limit Redis evicts the service's state; use noeviction")
    if str(config.get("maxmemory", "0")) == "0":
        problems.append("maxmemory is 0 (no limit): Redis grows until the machine runs out of memory")
    return problems
