"""The Redis online store: one hash per customer profile, one sorted set of contact history per customer (the
decision log writes the contact history too, with decisions and outcomes; keys: features/redis_keys.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from features.online_store import Contact, CustomerRecord, FeatureStoreUnavailable, OnlineStore
from features.redis_client import CircuitBreaker, CutShort, RoundTrip
from features.redis_keys import DEFAULT_PREFIX, KeyLayout

WRITTEN_AT = "_written_at"
UPDATED_AT = "_updated_at"


@dataclass(frozen=True)
class RedisStoreConfig:
    url: str
    timeout_ms: float = 25.0
    retry_after_ms: float = 1000.0
    key_prefix: str = DEFAULT_PREFIX
    contact_history_days: float = 90.0  # the longest window a contact counter may read (rules/compiler.py)
    bulk_batch_size: int = 500


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
            raise FeatureStoreUnavailable(f"feature store {self.breaker.skipped}")
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
            self.breaker.failed(exc)
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
