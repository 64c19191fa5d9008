"""Profiles and contact history held in this process, for offline runs of the decision flow.

The service reads Redis (features/redis_store.py). Offline tools run the very same flow over customers given
in a file (rule scenarios, ``nba rules test``; population simulations), where no Redis is wanted: they use
this store. It keeps the contract of :class:`OnlineStore`, contact counting included.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from features.contact_history import Contact, ContactBuckets, ContactQuery
from features.online_store import CustomerRecord, OnlineStore

WRITTEN_AT = "_written_at"


class MemoryOnlineStore(OnlineStore):
    """Customer profiles (raw text values, as Redis holds them) and contact histories, in dictionaries."""

    def __init__(self) -> None:
        self._profiles: dict[str, dict[str, str]] = {}
        self._written_at: dict[str, float] = {}
        self._contacts: dict[str, ContactBuckets] = {}
        self._lock = threading.Lock()

    def read(
        self,
        customer_id: str,
        now: float,
        also: str | None = None,
        contacts: ContactQuery | None = None,
        timeout_s: float | None = None,
    ) -> CustomerRecord:
        with self._lock:
            profile = dict(self._profiles.get(customer_id, {}))
            history = self._contacts.get(customer_id)
            counts = history.counts(contacts, now) if history is not None and contacts else {}
            written_at = self._written_at.get(customer_id)
        return CustomerRecord(found=bool(profile), raw=profile, written_at=written_at, contact_counts=counts)

    def write_profiles(self, profiles: Iterable[Mapping[str, str]], written_at: float) -> int:
        count = 0
        with self._lock:
            for profile in profiles:
                customer_id = profile["customer_id"]
                self._profiles[customer_id] = {
                    k: str(v) for k, v in profile.items() if k != "customer_id" and v is not None
                }
                self._written_at[customer_id] = written_at
                count += 1
        return count

    def update(self, customer_id: str, values: Mapping[str, str], at: float) -> None:
        with self._lock:
            self._profiles.setdefault(customer_id, {}).update({k: str(v) for k, v in values.items()})
            self._written_at.setdefault(customer_id, at)

    def record_contacts(self, customer_id: str, contacts: Iterable[Contact], now: float) -> None:
        with self._lock:
            self._contacts.setdefault(customer_id, ContactBuckets()).add(contacts, now)
