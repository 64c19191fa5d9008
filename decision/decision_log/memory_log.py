"""The decision log of an offline run (rule scenarios, simulations), in memory, keeping the log's contract."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from decision.decision_log.contract import (
    CapacityClaim,
    Committed,
    DecisionLog,
    DecisionNotFound,
    Inputs,
    OutcomeAlreadyFinal,
)
from decision.decision_log.records import contact_events
from decision.domain import Decision, Outcome, OutcomeReceipt
from features.contact_history import Contact
from features.memory_store import MemoryOnlineStore


class MemoryDecisionLog(DecisionLog):
    """The decision log of an offline run (rule scenarios, simulations): decisions, stock and outcomes in memory.

    It keeps the log's contract, capacity included (a flight's seats run out here as they do in Redis, one per
    customer, and a pool is forgotten at its expiry, by the decision's time), and writes the contact history
    into the offline store, so contact policies see earlier offline decisions.
    """

    def __init__(self, store: MemoryOnlineStore | None = None, capacity_left: Mapping[str, int] | None = None):
        self.store = store
        self.decisions: dict[str, Decision] = {}
        self.outcomes: list[tuple[str, str, Outcome]] = []
        # "action_id" (every pool) or "action_id:pool" -> units left; a pool first used starts full
        self.capacity_left = dict(capacity_left or {})
        self.holders: dict[str, set[str]] = {}  # "action_id:pool" -> customers holding one unit
        self._expires_at: dict[str, int] = {}
        self._lock = threading.Lock()

    def decision_key(self, decision_id: str) -> str:
        return decision_id

    def answered(self, decision_id: str, stored: str | bytes | None) -> Decision | None:
        with self._lock:
            return self.decisions.get(decision_id)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Nothing to wait for: a decision is stored before it is answered."""

    def close(self) -> None:
        pass

    def commit(
        self, decision: Decision, claims: Sequence[CapacityClaim], inputs: Inputs, timeout_s: float | None = None
    ) -> Committed:
        with self._lock:
            if decision.decision_id in self.decisions:
                return Committed(self.decisions[decision.decision_id])
            at = decision.decided_at_ms / 1000.0
            left = {}
            for claim in claims:
                pool = f"{claim.action_id}:{claim.pool}"
                if 0 < self._expires_at.get(pool, 0) <= at:  # expired, as Redis forgets the pool's keys
                    self.capacity_left.pop(pool, None)
                    self.holders.pop(pool, None)
                if claim.holder and claim.holder in self.holders.get(pool, ()):
                    continue  # holds a unit already: takes none
                units = self.capacity_left.get(pool, self.capacity_left.get(claim.action_id, claim.units))
                if units <= 0:
                    return Committed(decision, sold_out=claim)
                left[pool] = units - 1
            self.capacity_left.update(left)
            for claim in claims:
                pool = f"{claim.action_id}:{claim.pool}"
                if pool in left:
                    self.holders.setdefault(pool, set()).add(claim.holder)
                    self._expires_at[pool] = claim.expires_at
            self.decisions[decision.decision_id] = decision
        if self.store is not None:
            self.store.record_contacts(decision.customer_id, contact_events(decision), decision.decided_at_ms / 1000.0)
        return Committed(decision)

    def find(self, decision_id: str) -> Decision:
        with self._lock:
            if decision_id not in self.decisions:
                raise DecisionNotFound(decision_id)
            return self.decisions[decision_id]

    def record_outcome(self, decision: Decision, action_id: str, outcome: Outcome, at: float) -> OutcomeReceipt:
        with self._lock:
            stored = [o for d, a, o in self.outcomes if d == decision.decision_id and a == action_id]
            duplicate = bool(stored) and stored[-1] is outcome
            if stored and not duplicate and stored[-1] is not Outcome.IGNORED:
                raise OutcomeAlreadyFinal(stored[-1])
            if not duplicate:
                self.outcomes.append((decision.decision_id, action_id, outcome))
            if outcome is Outcome.DECLINED and not duplicate:  # the declined action's seat goes back to its pool
                for pool in (f"{a}:{p}" for a, p in decision.seats if a == action_id):
                    if decision.customer_id in self.holders.get(pool, ()) and pool in self.capacity_left:
                        self.holders[pool].discard(decision.customer_id)
                        self.capacity_left[pool] += 1
            entry = len(stored) if duplicate else len(stored) + 1
        if outcome is Outcome.DECLINED and not duplicate and self.store is not None:
            declined = Contact("declined", action_id, decision.touchpoint.name, at)
            self.store.record_contacts(decision.customer_id, [declined], at)
        return OutcomeReceipt(outcome_id=f"{decision.decision_id}:{action_id}:{entry}", duplicate=duplicate)
