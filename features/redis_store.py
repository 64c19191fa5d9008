"""The Redis online store: one hash per customer profile, one hash of contact counts per customer
(features/contact_history.py; the decision log adds to it with decisions and outcomes; keys: features/redis_keys.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from features.contact_history import CONTACT_ADD_LUA, Contact, ContactQuery, contact_args
from features.online_store import CustomerRecord, FeatureStoreUnavailable, OnlineStore
from features.redis_client import CircuitBreaker, CutShort, RoundTrip
from features.redis_keys import DEFAULT_PREFIX, KeyLayout

WRITTEN_AT = "_written_at"
UPDATED_AT = "_updated_at"


# What a batch job (a bulk load, the demo's reset, a spool replay at start) waits for Redis: as long as a busy
# server takes, not what a decision's deadline allows (``timeout_ms``).
BULK_TIMEOUT_MS = 5000.0


@dataclass(frozen=True)
class RedisStoreConfig:
    url: str
    timeout_ms: float = 25.0
    retry_after_ms: float = 1000.0
    key_prefix: str = DEFAULT_PREFIX
    bulk_batch_size: int = 500


class RedisOnlineStore(OnlineStore):
    """Profiles in Redis hashes, read in one round trip (HGETALL [+ HMGET of the contact counts] [+ GET])."""

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
        contacts: ContactQuery | None = None,
        timeout_s: float | None = None,
    ) -> CustomerRecord:
        if self.breaker.open:
            raise FeatureStoreUnavailable(f"feature store {self.breaker.skipped}")
        # Only the count fields the rules' counters read: a fixed handful, however long the customer's history.
        fields = contacts.fields if contacts is not None else ()
        commands: list[tuple[Any, ...]] = [("HGETALL", self.keys.customer(customer_id))]
        if fields:
            commands.append(("HMGET", self.keys.contacts(customer_id), *fields))
        if also:
            commands.append(("GET", also))
        try:
            replies = self.round_trip(*commands, timeout_s=timeout_s)
        except CutShort as exc:
            raise FeatureStoreUnavailable(f"feature store read cut short: {exc}") from exc
        except (redis.RedisError, OSError) as exc:
            self.breaker.failed(exc)
            raise FeatureStoreUnavailable(f"feature store read failed: {exc}") from exc
        self.breaker.succeeded()
        profile_flat, history = replies[0], replies[1] if fields else None
        counts = contacts.counts(history, now) if contacts is not None and history and any(history) else {}
        also_value = replies[-1] if also else None
        # hiredis answers HGETALL as a flat list [field, value, ...] at this level of redis-py
        profile = (
            profile_flat
            if isinstance(profile_flat, dict)
            else dict(zip(profile_flat[::2], profile_flat[1::2], strict=True))
        )
        if not profile:
            return CustomerRecord(found=False, contact_counts=counts, also=also_value)
        written = profile.pop(WRITTEN_AT, None) or profile.get(UPDATED_AT)
        profile.pop(UPDATED_AT, None)
        return CustomerRecord(
            found=True,
            raw=profile,
            written_at=float(written) if written else None,
            contact_counts=counts,
            also=also_value,
        )

    def record_contacts(self, customer_id: str, contacts: Iterable[Contact], now: float) -> None:
        try:
            self.client.eval(_ADD_CONTACTS, 1, self.keys.contacts(customer_id), *contact_args(contacts, now))
        except (redis.RedisError, OSError) as exc:
            raise FeatureStoreUnavailable(f"contact history write failed: {exc}") from exc

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


# KEYS: the customer's contact counts; ARGV: contact_args.
_ADD_CONTACTS = CONTACT_ADD_LUA + "\nadd_contacts(KEYS[1], 1)\nreturn 1\n"
