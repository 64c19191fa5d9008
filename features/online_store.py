"""The online feature store contract: what the decision flow reads per decision, and how profiles get in.

An implementation must answer ``read`` in one round trip to its backing store, and raise
``FeatureStoreUnavailable`` (never hang past its configured timeout, nor past the ``timeout_s`` a call is given)
when it cannot.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# A store call given less time than this (what is left of a caller's deadline) is not tried: a round trip to a Redis
# on the same machine takes 0.1-0.3 ms, and a shorter bound would fail on any scheduling delay.
SHORTEST_CALL_S = 0.0005


class FeatureStoreUnavailable(RuntimeError):
    """The store did not answer in time or refused; the decision degrades instead of failing."""


@dataclass(frozen=True)
class Contact:
    """One event of a customer's contact history: an action offered or declined, a follow-up sent."""

    event: str  # offered | declined | sent
    name: str  # the action id (offered, declined) or the follow-up kind (sent)
    touchpoint: str  # where it happened (Touchpoint name)
    at: float  # epoch seconds

    def member(self, decision_id: str) -> str:
        """How the event is stored: unique per decision, so a retried write counts once."""
        return f"{self.event}|{self.name}|{self.touchpoint}|{decision_id}"

    @classmethod
    def parse(cls, member: str, at: float) -> Contact | None:
        parts = member.split("|")
        return cls(parts[0], parts[1], parts[2], at) if len(parts) == 4 else None


@dataclass(frozen=True)
class CustomerRecord:
    """One customer's stored features as read, before typing by the schema."""

    found: bool
    raw: Mapping[str, str] = field(default_factory=dict)
    # When the batch profile was written (epoch seconds); None when never written.
    written_at: float | None = None
    # The contact history inside the window asked for, oldest first.
    contacts: tuple[Contact, ...] = ()
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
        history_s: float = 0.0,
        timeout_s: float | None = None,
    ) -> CustomerRecord:
        """The customer's profile and the last ``history_s`` seconds of contact history, in one round trip.

        ``also`` names one more key of the same backend to fetch in that round trip (the decision log's record
        of a request_id, so a retry is recognised without a second round trip). ``timeout_s``, when shorter than
        the store's own timeout, bounds this read (what is left of the caller's deadline).
        """

    @abc.abstractmethod
    def write_profiles(self, profiles: Iterable[Mapping[str, str]], written_at: float) -> int:
        """Bulk write (replace) profiles; each mapping holds ``customer_id`` and feature values. Returns the count."""

    @abc.abstractmethod
    def update(self, customer_id: str, values: Mapping[str, str], at: float) -> None:
        """Real-time write of some features (an incident reported now); seen by the next decision."""
