"""The decision log's contract, which every backend (Redis, memory) keeps: a decision is stored with the capacity
it takes, atomically, and an outcome once per decision and action; with the values and errors it speaks in.
``Inputs`` is what a decision was made from, logged with it so it can be replayed.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from decision.domain import Decision, Outcome, OutcomeReceipt

# What a decision was made from, logged with it: {"features": raw stored values, "context": request context}.
Inputs = Mapping[str, Mapping[str, str]]


class DecisionLogUnavailable(RuntimeError):
    """The log could not be written; nothing of this commit was stored."""


class DecisionNotFound(LookupError):
    """No such decision: unknown, or expired (it is kept for the decision TTL)."""


class OutcomeAlreadyFinal(RuntimeError):
    """The decision's action already has a final outcome (ACCEPTED or DECLINED) other than the one recorded."""

    def __init__(self, stored: Outcome) -> None:
        super().__init__(stored.name)
        self.stored = stored


@dataclass(frozen=True)
class CapacityClaim:
    """Take one unit of ``action_id`` from ``pool`` (a flight on a date), which starts with ``units`` when first
    used, for ``holder`` (the customer): a holder already holding one takes none. The pool is forgotten at
    ``expires_at`` (epoch seconds; 0 = never)."""

    action_id: str
    pool: str
    units: int
    holder: str = ""
    expires_at: int = 0


@dataclass(frozen=True)
class Committed:
    """``decision`` is what the caller gets: the new one, or the earlier one for a retried request_id."""

    decision: Decision
    # The claim that found its pool empty (the decision was not stored); None on success.
    sold_out: CapacityClaim | None = None


class DecisionLog(abc.ABC):
    """Where decisions and outcomes go; the contract any log backend keeps."""

    @abc.abstractmethod
    def commit(
        self, decision: Decision, claims: Sequence[CapacityClaim], inputs: Inputs, timeout_s: float | None = None
    ) -> Committed:
        """Store the decision and take its capacity, atomically; raise DecisionLogUnavailable on failure.

        ``timeout_s``, when shorter than the log's own timeout, bounds a commit that must be written before the
        answer (what is left of the caller's deadline); one that cannot be is not stored in time: unavailable."""

    @abc.abstractmethod
    def decision_key(self, decision_id: str) -> str:
        """The key under which a decision is kept (the feature read fetches it: a retry costs no round trip)."""

    @abc.abstractmethod
    def answered(self, decision_id: str, stored: str | bytes | None) -> Decision | None:
        """The decision ``decision_id`` names when it was answered before (a retried request): one answered and
        not written yet, or ``stored``, its record as the feature read fetched it under ``decision_key``. None
        for a new decision. Retries are answered here; two copies of one request racing meet in ``commit``,
        which stores the first and hands the second the first's decision."""

    @abc.abstractmethod
    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every decision answered so far is stored."""

    @abc.abstractmethod
    def close(self) -> None:
        """Write what is pending and stop."""

    @abc.abstractmethod
    def find(self, decision_id: str) -> Decision:
        """A stored decision; DecisionNotFound when unknown or expired, DecisionLogUnavailable on failure."""

    @abc.abstractmethod
    def record_outcome(self, decision: Decision, action_id: str, outcome: Outcome, at: float) -> OutcomeReceipt:
        """Append the outcome once per decision and action: the same outcome again is a duplicate; IGNORED may be
        superseded by ACCEPTED or DECLINED; a change of ACCEPTED or DECLINED raises OutcomeAlreadyFinal. Raise
        DecisionLogUnavailable when not stored."""
