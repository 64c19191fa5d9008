"""The online feature store contract: what the decision flow reads per decision, and how profiles get in.

An implementation must answer ``read`` in one round trip to its backing store, and raise
``FeatureStoreUnavailable`` (never hang past its configured timeout, nor past the ``timeout_s`` a call is given)
when it cannot.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from features.contact_history import Contact, ContactQuery

# A store call given less time than this (what is left of a caller's deadline) is not tried: a round trip to a Redis
# on the same machine takes 0.1-0.3 ms, and a shorter bound would fail on any scheduling delay.
SHORTEST_CALL_S = 0.0005


class FeatureStoreUnavailable(RuntimeError):
    """The store did not answer in time or refused; the decision degrades instead of failing."""


@dataclass(frozen=True)
class CustomerRecord:
    """One customer's stored features as read, before typing by the schema."""

    found: bool
    raw: Mapping[str, str] = field(default_factory=dict)
    # When the batch profile was written (epoch seconds); None when never written.
    written_at: float | None = None
    # The contact counters asked for (ContactQuery), by key; empty when none was asked or the customer has none.
    contact_counts: Mapping[str, int] = field(default_factory=dict)
    # The value of the extra key asked for with ``read(..., also=key)``, None when absent.
    also: str | None = None


class OnlineStore(abc.ABC):
    """Customer features for real-time decisions."""

    @abc.abstractmethod
    def read(
        self,
        customer_id: str,
        now: float,
        also: str | None = None,
        contacts: ContactQuery | None = None,
        timeout_s: float | None = None,
    ) -> CustomerRecord:
        """The customer's profile and the contact counters ``contacts`` asks for, in one round trip.

        ``also`` names one more key of the same backend to fetch in that round trip (the decision log's record
        of a request_id, so a retry is recognised without a second round trip). ``timeout_s``, when shorter than
        the store's own timeout, bounds this read (what is left of the caller's deadline).
        """

    @abc.abstractmethod
    def write_profiles(self, profiles: Iterable[Mapping[str, str]], written_at: float) -> int:
        """Bulk write (replace) profiles; each mapping holds ``customer_id`` and feature values. Returns the count."""

    @abc.abstractmethod
    def record_contacts(self, customer_id: str, contacts: Iterable[Contact], now: float) -> None:
        """Add past events to a customer's contact history (an import, a scenario's given history). The decision
        log adds the events of each decision and outcome itself, counted once however often it is retried."""

    @abc.abstractmethod
    def update(self, customer_id: str, values: Mapping[str, str], at: float) -> None:
        """Real-time write of some features (an incident reported now); seen by the next decision."""
