"""The Redis online store: one hash per customer profile, one sorted set of contact history per customer.

Key layout (shared with the decision log, which writes the contact history with decisions and outcomes):
  {prefix}customer:{id}   hash: feature -> value as text, plus _written_at / _updated_at (epoch seconds)
  {prefix}contact:{id}    sorted set: member "{event}|{action or follow-up}|{touchpoint}|{decision_id}",
                          score = epoch seconds; events older than contact_history_days are trimmed on
                          write and the key expires when the customer has had no contact for that long
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from features.online_store import Contact, CustomerRecord, FeatureStoreUnavailable, OnlineStore

WRITTEN_AT = "_written_at"
UPDATED_AT = "_updated_at"


@dataclass(frozen=True)
class RedisStoreConfig:
    url: str
    timeout_ms: float = 25.0
    retry_after_ms: float = 1000.0
    key_prefix: str = "nba:"
    contact_history_days: float = 90.0  # the longest window a contact counter may read (rules/compiler.py)
    bulk_batch_size: int = 500


@dataclass(frozen=True)
class KeyLayout:
    prefix: str = "nba:"

    def customer(self, customer_id: str) -> str:
        return f"{self.prefix}customer:{customer_id}"

    def contacts(self, customer_id: str) -> str:
        return f"{self.prefix}contact:{customer_id}"


def connect(config: RedisStoreConfig) -> redis.Redis:
    """A client that fails fast: no retries, short timeouts, hiredis parsing when installed."""
    timeout = config.timeout_ms / 1000.0
    return redis.Redis.from_url(
        config.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        health_check_interval=0,
        # No CLIENT SETINFO round trips on each (re)connect: a connection is ready once TCP is, so a call bounded
        # by a caller's deadline (RoundTrip) never waits out the full socket timeout in a handshake.
        driver_info=None,
    )


class CircuitBreaker:
    """After a failure, answer "open" for ``retry_after_s`` so callers skip Redis instead of each waiting for it.

    A caller that finds it closed tries Redis; the first failure opens it again. Thread-safe enough without a
    lock: the worst case under a race is one extra attempt.
    """

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        return time.monotonic() < self._open_until

    def failed(self) -> None:
        self._open_until = time.monotonic() + self.retry_after_s

    def succeeded(self) -> None:
        self._open_until = 0.0


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


class RedisOnlineStore(OnlineStore):
    """Profiles in Redis hashes, read in one round trip (HGETALL + ZRANGEBYSCORE [+ GET])."""

    def __init__(self, client: redis.Redis, config: RedisStoreConfig, breaker: CircuitBreaker | None = None):
        self.client = client
        self.config = config
        self.keys = KeyLayout(config.key_prefix)
        self.breaker = breaker or CircuitBreaker(config.retry_after_ms / 1000.0)
        self.round_trip = RoundTrip(client)

    def read(
        self,
        customer_id: str,
        now: float,
        also: str | None = None,
        history_s: float = 0.0,
        timeout_s: float | None = None,
    ) -> CustomerRecord:
        if self.breaker.open:
            raise FeatureStoreUnavailable("feature store skipped after a recent failure")
        # Only as far back as the rules' counters look: the common read carries no history at all.
        window_start = now - min(history_s, self.config.contact_history_days * 86_400.0)
        commands: list[tuple[Any, ...]] = [
            ("HGETALL", self.keys.customer(customer_id)),
            ("ZRANGEBYSCORE", self.keys.contacts(customer_id), repr(window_start), "+inf", "WITHSCORES"),
        ]
        if also:
            commands.append(("GET", also))
        try:
            profile_flat, history, *rest = self.round_trip(*commands, timeout_s=timeout_s)
        except CutShort as exc:
            raise FeatureStoreUnavailable(f"feature store read cut short: {exc}") from exc
        except (redis.RedisError, OSError) as exc:
            self.breaker.failed()
            raise FeatureStoreUnavailable(f"feature store read failed: {exc}") from exc
        self.breaker.succeeded()
        contacts = _contacts(history) if history else ()
        also_value = rest[0] if rest else None
        # hiredis answers HGETALL as a flat list [field, value, ...] at this level of redis-py
        profile = (
            profile_flat
            if isinstance(profile_flat, dict)
            else dict(zip(profile_flat[::2], profile_flat[1::2], strict=True))
        )
        if not profile:
            return CustomerRecord(found=False, contacts=contacts, also=also_value)
        written = profile.pop(WRITTEN_AT, None) or profile.get(UPDATED_AT)
        profile.pop(UPDATED_AT, None)
        return CustomerRecord(
            found=True,
            raw=profile,
            written_at=float(written) if written else None,
            contacts=contacts,
            also=also_value,
        )

    def record_contacts(self, customer_id: str, contacts: Iterable[Contact], decision_id: str = "") -> None:
        """Add events to a customer's contact history (an import of past contacts, a test's given history)."""
        history = {c.member(decision_id or f"import-{i}"): c.at for i, c in enumerate(contacts)}
        if history:
            key = self.keys.contacts(customer_id)
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(key, history)
            pipe.expire(key, int(self.config.contact_history_days * 86_400))
            pipe.execute()

    def write_profiles(self, profiles: Iterable[Mapping[str, str]], written_at: float) -> int:
        count = 0
        pipe = self.client.pipeline(transaction=False)
        for profile in profiles:
            customer_id = profile["customer_id"]
            key = self.keys.customer(customer_id)
            values: dict[FieldT, EncodableT] = {
                k: str(v) for k, v in profile.items() if k != "customer_id" and v is not None
            }
            values[WRITTEN_AT] = repr(written_at)
            pipe.delete(key)  # a bulk load replaces the profile: no feature survives from an older load
            pipe.hset(key, mapping=values)
            count += 1
            if count % self.config.bulk_batch_size == 0:
                pipe.execute()
        pipe.execute()
        return count

    def update(self, customer_id: str, values: Mapping[str, str], at: float) -> None:
        mapping: dict[FieldT, EncodableT] = {k: str(v) for k, v in values.items()}
        mapping[UPDATED_AT] = repr(at)
        try:
            self.client.hset(self.keys.customer(customer_id), mapping=mapping)
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreUnavailable(f"feature store write failed: {exc}") from exc


def _contacts(history: list[Any]) -> tuple[Contact, ...]:
    """ZRANGEBYSCORE ... WITHSCORES as contacts; hiredis gives [member, score, ...] or [(member, score), ...]."""
    pairs = (
        history if history and isinstance(history[0], list | tuple) else zip(history[::2], history[1::2], strict=True)
    )
    parsed = (Contact.parse(member, float(score)) for member, score in pairs)
    return tuple(contact for contact in parsed if contact is not None)
