"""Side effects of a decision: the durable decision/outcome log, follow-ups, capacity and retries.

A decision's id is derived from (customer, touchpoint, request_id), so a retry names the same decision: the
feature read fetches ``decision:{id}`` in the same round trip, and a retry gets the stored decision back.

A decision with side effects beyond the log (capacity taken, a follow-up letter) is written before it is
answered, by one Redis script, atomically: if its decision key exists the earlier decision is returned and
nothing is taken twice; otherwise the capacity (upgrade seats per flight) is taken, and the decision and its
follow-ups are stored and appended to Redis Streams. Two check-ins racing for the last seat cannot both get it.

Capacity is one unit per customer per pool: the same script marks the customer as the pool's holder, so a
second decision for the same passenger and pool (another touchpoint, another request_id) takes no second seat:
it gets the upgrade the passenger already holds, without decrementing, even once the pool is empty, and is
logged as any decision is. A pool is a flight on a date (``AZ610:2026-12-03``, see DecisionFlow); its keys
expire at ``CapacityClaim.expires_at``, so a daily flight number starts full again on each date.

Any other decision is answered first and written a moment later by a background writer, many per round trip,
so the caller does not wait for the log; until written it is served from memory to a retry and to an outcome.
While Redis is down, decisions go to a local spool file and are moved to the stream once it is back.

Each log entry carries the inputs (the raw features read and the request context), so a decision can be
replayed and the models retrained on what the service saw.

Key layout (prefix "nba:" by default):
  decision:{decision_id}            the decision JSON, for retries and outcomes (expires with decision_ttl)
  capacity:{action_id}:{pool}       units left in a pool ({flight}:{YYYY-MM-DD}); created from the catalogue on
                                    first use, expires with the pool (CapacityClaim.expires_at)
  capacity-holders:{action_id}:{pool}   the customers holding one unit of the pool (a set); expires with it
  outcome:{decision_id}:{action_id} "{outcome}|{stream id}" of the outcome stored: the same outcome again is a
                                    duplicate (not stored twice); IGNORED may be superseded by ACCEPTED or
                                    DECLINED (a new stream entry, with a "supersedes" field); ACCEPTED and
                                    DECLINED are final. A bare stream id (written before) answers duplicate.
  contact:{customer_id}             the contact history contact policies count: offers made and follow-ups
                                    sent (written with the decision), declines (written with the outcome)
  log:decisions, log:outcomes, log:follow-ups   the streams data scientists retrain from
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from decision.domain import (
    ChannelAdvice,
    Decision,
    Explanation,
    FeatureContribution,
    FeatureFreshness,
    FollowUp,
    OpenItem,
    Outcome,
    OutcomeReceipt,
    PolicyTrace,
    RankedAction,
    RuleFired,
    Suppression,
    Touchpoint,
)
from features.memory_store import MemoryOnlineStore
from features.online_store import SHORTEST_CALL_S, Contact
from features.redis_store import CircuitBreaker, CutShort, KeyLayout, RoundTrip

log = logging.getLogger(__name__)

# What a decision was made from, logged with it: {"features": raw stored values, "context": request context}.
Inputs = Mapping[str, Mapping[str, str]]


class DecisionLogUnavailable(RuntimeError):
    """The log could not be written; nothing of this commit was stored."""


class DecisionNotFound(LookupError):
    pass


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
    replayed: bool = False
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
    def pending(self, decision_id: str) -> Decision | None:
        """The decision if it was answered but is not written yet."""

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


_COMMIT = """
-- KEYS: decision, decisions stream, follow-ups stream, contact history, then per claim: pool, pool's holders
-- ARGV: decision json, ttl seconds, n stream fields, stream fields..., n follow-ups, follow-up jsons...,
--       per claim: default units, expires at (epoch s, 0 = never), holder; then decided at (epoch s),
--       history seconds, contact members...
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local n_fields = tonumber(ARGV[3])
local n_follow = tonumber(ARGV[4 + n_fields])
local first_claim = 5 + n_fields + n_follow
local n_claims = (#KEYS - 4) / 2
local held = {}
for i = 1, n_claims do
  local a = first_claim + 3 * (i - 1)
  held[i] = redis.call('SISMEMBER', KEYS[4 + 2 * i], ARGV[a + 2]) == 1
  if not held[i] then
    local left = redis.call('GET', KEYS[3 + 2 * i])
    if left == false then left = ARGV[a] end
    if tonumber(left) <= 0 then return {2, i} end
  end
end
for i = 1, n_claims do
  local a = first_claim + 3 * (i - 1)
  local pool, holders = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  if not held[i] then
    if redis.call('EXISTS', pool) == 0 then
      redis.call('SET', pool, ARGV[a])
    end
    redis.call('DECR', pool)
    redis.call('SADD', holders, ARGV[a + 2])
    if tonumber(ARGV[a + 1]) > 0 then
      redis.call('EXPIREAT', pool, ARGV[a + 1])
      redis.call('EXPIREAT', holders, ARGV[a + 1])
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4, 3 + n_fields))
for i = 1, n_follow do
  redis.call('XADD', KEYS[3], '*', 'follow_up', ARGV[4 + n_fields + i])
end
local at_index = first_claim + 3 * n_claims
local at = tonumber(ARGV[at_index])
local history = tonumber(ARGV[at_index + 1])
if #ARGV > at_index + 1 then
  for i = at_index + 2, #ARGV do
    redis.call('ZADD', KEYS[4], at, ARGV[i])
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', at - history)
  redis.call('EXPIRE', KEYS[4], math.ceil(history))
end
return {1}
"""

_OUTCOME = """
-- KEYS: decision, outcome marker, outcomes stream, contact history
-- ARGV: ttl, outcome name, at (epoch s), history seconds, contact member of a decline, n fields, fields...
-- Replies: {-1} no decision; {0, id} the same outcome again; {2, stored} refused, the stored one is final;
--          {1, id} stored.
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local fields = {unpack(ARGV, 7, 6 + tonumber(ARGV[6]))}
local previous = redis.call('GET', KEYS[2])
if previous then
  local stored, id = string.match(previous, '^(%u+)|(.+)$')
  if not stored then return {0, previous} end  -- a bare stream id (from before): a duplicate, as then
  if stored == ARGV[2] then return {0, id} end
  if stored ~= 'IGNORED' then return {2, stored} end
  fields[#fields + 1] = 'supersedes'
  fields[#fields + 1] = stored
end
local id = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('SET', KEYS[2], ARGV[2] .. '|' .. id, 'EX', ARGV[1])
if ARGV[2] == 'DECLINED' then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))
  redis.call('EXPIRE', KEYS[4], math.ceil(tonumber(ARGV[4])))
end
return {1, id}
"""


_LOG_BATCH = """
-- KEYS: decisions stream, follow-ups stream, then per decision: its key, its customer's contact history
-- ARGV: ttl seconds, history seconds, then per decision: decision json, decided at (epoch s),
--       n contact members, n stream fields, n follow-ups, members..., stream fields..., follow-up jsons...
-- A decision whose key exists is skipped whole: a concurrent retry decided twice keeps the first decision
-- for its outcomes, and a spool replay cut short and repeated stores nothing twice.
local ttl, history = ARGV[1], tonumber(ARGV[2])
local a = 3
for k = 3, #KEYS, 2 do
  local at, n_members, n_fields = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local n_follow = tonumber(ARGV[a + 4])
  local fresh = redis.call('SET', KEYS[k], ARGV[a], 'EX', ttl, 'NX')
  a = a + 5
  if fresh then
    if n_members > 0 then
      for i = a, a + n_members - 1 do
        redis.call('ZADD', KEYS[k + 1], at, ARGV[i])
      end
      redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', at - history)
      redis.call('EXPIRE', KEYS[k + 1], math.ceil(history))
    end
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, a + n_members, a + n_members + n_fields - 1))
    for i = a + n_members + n_fields, a + n_members + n_fields + n_follow - 1 do
      redis.call('XADD', KEYS[2], '*', 'follow_up', ARGV[i])
    end
  end
  a = a + n_members + n_fields + n_follow
end
return 1
"""
_COMMIT_SHA = hashlib.sha1(_COMMIT.encode()).hexdigest()
_LOG_BATCH_SHA = hashlib.sha1(_LOG_BATCH.encode()).hexdigest()


class RedisDecisionLog(DecisionLog):
    """The decision log in Redis Streams, written by server-side scripts (one round trip per commit)."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_s: int,
        contact_history_s: float,
        key_prefix: str = "nba:",
        spool_path: Path | None = None,
        breaker: CircuitBreaker | None = None,
        spool_fsync: str = "everysec",
        spool_max_bytes: int = 256 << 20,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.contact_history_s = contact_history_s
        self.prefix = key_prefix
        self.keys = KeyLayout(key_prefix)
        self.decisions_stream = f"{key_prefix}log:decisions"
        self.outcomes_stream = f"{key_prefix}log:outcomes"
        self.follow_ups_stream = f"{key_prefix}log:follow-ups"
        self._outcome = client.register_script(_OUTCOME)
        self.round_trip = RoundTrip(client)
        self.spool = DecisionSpool(spool_path, spool_fsync, spool_max_bytes) if spool_path else None
        # Shared with the feature store: when Redis just failed, commits go to the spool without waiting.
        self.breaker = breaker
        self.writer = BackgroundWriter(self._write_batch)
        self._replaying = threading.Lock()
        self._replayer: threading.Thread | None = None

    def decision_key(self, decision_id: str) -> str:
        return f"{self.prefix}decision:{decision_id}"

    def capacity_keys(self, claim: CapacityClaim) -> tuple[str, str]:
        """The pool's units left and its holders (see the key layout)."""
        pool = f"{claim.action_id}:{claim.pool}"
        return f"{self.prefix}capacity:{pool}", f"{self.prefix}capacity-holders:{pool}"

    def pending(self, decision_id: str) -> Decision | None:
        return self.writer.waiting.get(decision_id)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every decision answered so far is written (or spooled) and a spool replay under way ended."""
        self.writer.flush(timeout_s)
        if self._replayer is not None:
            self._replayer.join(timeout_s)

    def close(self) -> None:
        self.flush(30.0)
        self.writer.close()

    def commit(
        self, decision: Decision, claims: Sequence[CapacityClaim], inputs: Inputs, timeout_s: float | None = None
    ) -> Committed:
        if self.breaker is not None and self.breaker.open:
            if not claims:
                self._spool([(decision, inputs)])
            raise DecisionLogUnavailable("Redis skipped after a recent failure")
        if not claims and not decision.follow_ups:
            self.writer.submit(decision, inputs)
            return Committed(decision)
        record = orjson.dumps(decision)
        follow_ups = follow_up_records(decision)
        fields = stream_fields(decision, record, inputs)
        keys = [
            self.decision_key(decision.decision_id),
            self.decisions_stream,
            self.follow_ups_stream,
            self.keys.contacts(decision.customer_id),
            *[key for c in claims for key in self.capacity_keys(c)],
        ]
        args = [
            record,
            self.ttl_s,
            len(fields),
            *fields,
            len(follow_ups),
            *follow_ups,
            *[arg for c in claims for arg in (c.units, c.expires_at, c.holder)],
            repr(decision.decided_at_ms / 1000.0),
            self.contact_history_s,
            *contact_members(decision),
        ]
        try:
            if timeout_s is not None and timeout_s < SHORTEST_CALL_S:
                raise CutShort(f"{max(timeout_s, 0.0) * 1000:.1f} ms left before the deadline")
            reply = self._script(_COMMIT, _COMMIT_SHA, keys, args, timeout_s)
        except (redis.RedisError, OSError) as exc:
            if self.breaker is not None and not isinstance(exc, CutShort):
                self.breaker.failed()
            if not claims:
                self._spool([(decision, inputs)])
            raise DecisionLogUnavailable(f"decision log write failed: {exc}") from exc
        status = int(reply[0])
        if status == 0:
            return Committed(decision_from_json(reply[1]), replayed=True)
        if status == 2:
            return Committed(decision, sold_out=claims[int(reply[1]) - 1])
        self._replay_soon()
        return Committed(decision)

    def _write_batch(self, batch: Sequence[tuple[Decision, Inputs]]) -> None:
        """The background writer's job: one script call per batch; on failure, the spool."""
        try:
            self._store(batch)
        except (redis.RedisError, OSError) as exc:
            if self.breaker is not None:
                self.breaker.failed()
            log.warning("%d decisions spooled, the log is unavailable: %s", len(batch), exc)
            self._spool(batch)
            return
        self._replay_soon()

    def _store(self, batch: Sequence[tuple[Decision, Inputs]]) -> None:
        """Log decisions without side effects in one round trip: each one's key (for outcomes and retries), its
        stream entry and its contact history. Raises what Redis or the connection raised.

        One script call for the whole batch: the same writes as five plain commands per decision cost the
        writer thread ~190 us of Python per decision (redis-py packing and parsing every command and reply),
        time the request threads wait for the GIL; this costs ~100 us (a quarter of it serialising the decision
        and its inputs), and Redis ~40 us more per decision than the plain commands took (it builds Lua's ARGV).
        """
        keys: list[str] = [self.decisions_stream, self.follow_ups_stream]
        args: list[str | bytes | int] = [self.ttl_s, repr(self.contact_history_s)]
        for decision, inputs in batch:
            record = orjson.dumps(decision)
            members = contact_members(decision)
            fields = stream_fields(decision, record, inputs)
            letters = follow_up_records(decision)
            keys += (self.decision_key(decision.decision_id), self.keys.contacts(decision.customer_id))
            args += (record, repr(decision.decided_at_ms / 1000.0), len(members), len(fields), len(letters))
            args += (*members, *fields, *letters)
        self._script(_LOG_BATCH, _LOG_BATCH_SHA, keys, args)

    def _script(
        self, script: str, sha: str, keys: Sequence[str], args: Sequence[Any], timeout_s: float | None = None
    ) -> Any:
        """Run a script by its hash, sending it whole only when Redis does not know it (after a restart)."""
        try:
            return self.round_trip(("EVALSHA", sha, len(keys), *keys, *args), timeout_s=timeout_s)[0]
        except redis.exceptions.NoScriptError:
            return self.round_trip(("EVAL", script, len(keys), *keys, *args), timeout_s=timeout_s)[0]

    def _spool(self, batch: Sequence[tuple[Decision, Inputs]]) -> None:
        if self.spool is not None:
            for decision, inputs in batch:
                try:
                    self.spool.append(orjson.dumps({"decision": decision, "inputs": inputs}), decision.decision_id)
                except (SpoolFull, OSError) as exc:
                    log.error(
                        "decision %s NOT logged (%d so far): Redis is unavailable and %s",
                        decision.decision_id,
                        self.spool.dropped,
                        exc,
                    )

    def _replay_soon(self) -> None:
        """After a commit: replay the spool on a thread of its own, so the commit's answer never waits for it."""
        if self.spool is not None and self.spool.pending and not self._replaying.locked():
            self._replayer = threading.Thread(target=self._replay_spool, name="spool-replay", daemon=True)
            self._replayer.start()

    def _replay_spool(self) -> None:
        """Redis answers again: move what was spooled while it was down into the stream, one replay at a time.

        Never raises: it runs after a write that succeeded, whose answer must stand whatever the spool holds."""
        if self.spool is None or not self.spool.pending or not self._replaying.acquire(blocking=False):
            return
        try:
            # The same writes as a batch: an outcome for a spooled decision finds it once it is replayed.
            self.spool.replay(self._store)
        except Exception:  # the spool stays as it is, for the next replay
            log.exception("spooled decisions not replayed yet; they stay in %s", self.spool.path.name)
        finally:
            self._replaying.release()

    def replay_spool_files(self, data_dir: Path) -> int:
        """Write every spool file under ``data_dir`` to the log: whatever an earlier run left, with however many
        server processes it had. Call it before they start, while nothing else appends to these files."""
        moved = 0
        for path in sorted(Path(data_dir).glob("decision-spool*.jsonl")):
            moved += DecisionSpool(path).replay(self._store)
        return moved

    def find(self, decision_id: str) -> Decision:
        if decision_id in self.writer.waiting:
            self.writer.flush()  # the outcome of a decision must find it stored
        try:
            stored = self.client.get(self.decision_key(decision_id))
        except (redis.RedisError, OSError) as exc:
            raise DecisionLogUnavailable(f"decision log read failed: {exc}") from exc
        if stored is None:
            if self.spool is not None and decision_id in self.spool.holds:
                raise DecisionLogUnavailable("the decision waits in this server's spool until Redis takes writes")
            raise DecisionNotFound(decision_id)
        return decision_from_json(stored)

    def record_outcome(self, decision: Decision, action_id: str, outcome: Outcome, at: float) -> OutcomeReceipt:
        fields = [
            "decision_id", decision.decision_id,
            "action_id", action_id,
            "outcome", outcome.name,
            "customer_id", decision.customer_id,
            "touchpoint", decision.touchpoint.name,
            "model_version", decision.model_version,
            "rules_version", decision.rules_version,
            "propensity", repr(decision.candidates.get(action_id, (0.0, 0.0))[0]),
            "at", repr(at),
        ]  # fmt: skip
        keys = [
            self.decision_key(decision.decision_id),
            f"{self.prefix}outcome:{decision.decision_id}:{action_id}",
            self.outcomes_stream,
            self.keys.contacts(decision.customer_id),
        ]
        args: list[Any] = [
            self.ttl_s,
            outcome.name,
            repr(at),
            self.contact_history_s,
            Contact("declined", action_id, decision.touchpoint.name, at).member(decision.decision_id),
            len(fields),
            *fields,
        ]
        try:
            reply = self._outcome(keys=keys, args=args)
        except (redis.RedisError, OSError) as exc:
            raise DecisionLogUnavailable(f"outcome not stored: {exc}") from exc
        if int(reply[0]) == -1:
            raise DecisionNotFound(decision.decision_id)
        if int(reply[0]) == 2:
            raise OutcomeAlreadyFinal(Outcome[str(reply[1])])
        return OutcomeReceipt(outcome_id=str(reply[1]), duplicate=int(reply[0]) == 0)


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

    def pending(self, decision_id: str) -> Decision | None:
        return None

    def close(self) -> None:
        pass

    def commit(
        self, decision: Decision, claims: Sequence[CapacityClaim], inputs: Inputs, timeout_s: float | None = None
    ) -> Committed:
        with self._lock:
            if decision.decision_id in self.decisions:
                return Committed(self.decisions[decision.decision_id], replayed=True)
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
            self.store.record_contacts(decision.customer_id, contact_events(decision), decision.decision_id)
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
            entry = len(stored) if duplicate else len(stored) + 1
        if outcome is Outcome.DECLINED and not duplicate and self.store is not None:
            declined = Contact("declined", action_id, decision.touchpoint.name, at)
            self.store.record_contacts(decision.customer_id, [declined], decision.decision_id)
        return OutcomeReceipt(outcome_id=f"{decision.decision_id}:{action_id}:{entry}", duplicate=duplicate)


class BackgroundWriter:
    """Writes decisions off the request path, in batches; keeps them findable in memory until written."""

    def __init__(
        self,
        write: Callable[[Sequence[tuple[Decision, Inputs]]], None],
        max_batch: int = 256,
        linger_s: float = 0.005,
    ) -> None:
        self.write = write
        self.max_batch = max_batch
        # Waiting a moment for more decisions makes batches: one round trip and one wake-up for many decisions,
        # which keeps the writer from competing with the request threads for the GIL on every decision.
        self.linger_s = linger_s
        self.waiting: dict[str, Decision] = {}
        self._queue: deque[tuple[Decision, Inputs]] = deque()
        self._wake = threading.Condition()
        self._busy = False
        self._closed = False
        self._flushing = 0
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def submit(self, decision: Decision, inputs: Inputs) -> None:
        with self._wake:
            self.waiting[decision.decision_id] = decision
            self._queue.append((decision, inputs))
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._wake.notify()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything submitted so far is written (or spooled)."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            self._flushing += 1
            self._wake.notify_all()
            try:
                while (self._queue or self._busy) and time.monotonic() < deadline:
                    self._wake.wait(0.01)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        self.flush()
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed and not self._queue:
                    return
                linger_until = time.monotonic() + self.linger_s
                while len(self._queue) < self.max_batch and not self._closed and not self._flushing:
                    left = linger_until - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                self._busy = True
            try:
                self.write(batch)
            except Exception:  # the writer must outlive any one batch
                log.exception("decision log batch failed")
            finally:
                with self._wake:
                    for decision, _ in batch:
                        self.waiting.pop(decision.decision_id, None)
                    self._busy = False
                    self._wake.notify_all()


def contact_events(decision: Decision) -> list[Contact]:
    """What the decision adds to the customer's contact history: the offers made and the follow-ups sent.

    Mandatory actions (service recovery) are not offers: contact policies neither count nor limit them.
    """
    at = decision.decided_at_ms / 1000.0
    touchpoint = decision.touchpoint.name
    events = [Contact("offered", a.action_id, touchpoint, at) for a in decision.actions if not a.mandatory]
    return events + [Contact("sent", f.kind, touchpoint, at) for f in decision.follow_ups]


def follow_up_records(decision: Decision) -> list[bytes]:
    """The follow-ups stream's entries of a decision: each follow-up with the decision's id."""
    return [orjson.dumps({"decision_id": decision.decision_id, **dataclasses.asdict(f)}) for f in decision.follow_ups]


def contact_members(decision: Decision) -> list[str]:
    return [event.member(decision.decision_id) for event in contact_events(decision)]


def stream_fields(decision: Decision, record: bytes, inputs: Inputs) -> list[Any]:
    """The decision log entry: searchable columns, the whole decision and its inputs as JSON."""
    return [
        "decision_id", decision.decision_id,
        "request_id", decision.request_id,
        "customer_id", decision.customer_id,
        "touchpoint", decision.touchpoint.name,
        "model_version", decision.model_version,
        "rules_version", decision.rules_version,
        "catalogue_version", decision.catalogue_version,
        "decided_at_ms", decision.decided_at_ms,
        "degraded", ",".join(decision.degraded_codes),
        "actions", ",".join(a.action_id for a in decision.actions),
        "decision", record,
        "inputs", orjson.dumps(inputs),
    ]  # fmt: skip


def spool_path(data_dir: Path, worker: int | None = None) -> Path:
    """A server process's spool file: one per process (``decision-spool-<worker>.jsonl`` when several share
    the port), so no two processes ever append to the same file."""
    name = "decision-spool.jsonl" if worker is None else f"decision-spool-{worker}.jsonl"
    return Path(data_dir) / name


class SpoolFull(RuntimeError):
    """The spool file reached its cap: the decision could not be kept anywhere."""


class DecisionSpool:
    """Decisions that could not reach the log while Redis was down, kept in a local file until it is back.

    One JSON line per decision. A line cut short (power loss, a full disk mid-append) costs that line only: the
    next append starts a fresh line, and a replay stores every readable line and keeps the unreadable bytes in
    ``<spool>.rejected`` beside it, named in the log, instead of failing or dropping them. ``fsync`` follows the
    embedded Redis's policy: "always" puts each line on disk before the decision is answered, "everysec" at most
    once a second. The file never grows past ``max_bytes``: a decision that does not fit is refused (SpoolFull),
    counted in ``dropped`` and logged as an error by the caller.
    """

    def __init__(self, path: Path, fsync: str = "everysec", max_bytes: int = 256 << 20) -> None:
        self.path = path
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.dropped = 0
        # The decisions appended since the file was last emptied: an outcome for one of them must be told to
        # retry, not that the decision is unknown. At most the cap's worth (~5 KB of file per decision).
        self.holds: set[str] = set()
        self._synced_at = 0.0
        self._lock = threading.Lock()

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rejected")

    @property
    def pending(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, record: bytes, decision_id: str = "") -> None:
        """Add one decision's line; raise SpoolFull when the file would pass its cap."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a+b") as spool:
                size = spool.seek(0, 2)
                torn = size > 0 and _last_byte(spool, size) != b"\n"
                line = (b"\n" if torn else b"") + record + b"\n"
                if size + len(line) > self.max_bytes:
                    self.dropped += 1
                    raise SpoolFull(f"the spool {self.path.name} is full ({self.max_bytes >> 20} MB)")
                spool.write(line)
                spool.flush()
                now = time.monotonic()
                if self.fsync == "always" or now - self._synced_at >= 1.0:
                    os.fsync(spool.fileno())
                    self._synced_at = now
            if decision_id:
                self.holds.add(decision_id)

    def replay(self, store: Callable[[Sequence[tuple[Decision, Inputs]]], None], chunk: int = 256) -> int:
        """Write spooled decisions with ``store``, ``chunk`` at a time; the file is emptied only once every entry
        is in. A replay cut short is repeated whole next time, which stores nothing twice: the log skips a
        decision whose key exists. Unreadable lines go to ``rejected_path``; returns the decisions stored."""
        with self._lock:
            if not self.pending:
                return 0
            batch: list[tuple[Decision, Inputs]] = []
            rejected: list[bytes] = []
            for line in self.path.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    entry = orjson.loads(line)
                    batch.append((decision_from_json(orjson.dumps(entry["decision"])), entry["inputs"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    rejected.append(line)
            for start in range(0, len(batch), chunk):
                store(batch[start : start + chunk])
            if rejected:
                with self.rejected_path.open("ab") as kept:
                    kept.write(b"".join(line + b"\n" for line in rejected))
                    kept.flush()
                    os.fsync(kept.fileno())
                log.warning(
                    "%s: %d unreadable line(s) (cut short by a crash or a full disk) kept in %s; %d decisions replayed",
                    self.path.name,
                    len(rejected),
                    self.rejected_path.name,
                    len(batch),
                )
            self.path.write_bytes(b"")
            self.holds.clear()
            return len(batch)


def _last_byte(file: Any, size: int) -> bytes:
    file.seek(size - 1)
    last = file.read(1)
    file.seek(0, 2)
    return bytes(last)


def decision_from_json(data: bytes | str) -> Decision:
    """The inverse of ``orjson.dumps(decision)``."""
    d = orjson.loads(data)
    e = d["explanation"]
    return Decision(
        decision_id=d["decision_id"],
        request_id=d["request_id"],
        customer_id=d["customer_id"],
        touchpoint=Touchpoint(d["touchpoint"]),
        actions=tuple(RankedAction(**{**a, "reason_codes": tuple(a["reason_codes"])}) for a in d["actions"]),
        explanation=Explanation(
            language=e["language"],
            delivery=e["delivery"],
            text=e["text"],
            greeting=e["greeting"],
            rules_fired=tuple(RuleFired(**r) for r in e["rules_fired"]),
            top_features=tuple(FeatureContribution(**f) for f in e["top_features"]),
            suppressed=tuple(Suppression(**s) for s in e["suppressed"]),
            ranking_margin=e["ranking_margin"],
        ),
        model_version=d["model_version"],
        rules_version=d["rules_version"],
        catalogue_version=d["catalogue_version"],
        features=FeatureFreshness(**d["features"]),
        degraded_codes=tuple(d["degraded_codes"]),
        degraded_reason=d["degraded_reason"],
        follow_ups=tuple(FollowUp(**f) for f in d["follow_ups"]),
        channel=ChannelAdvice(**d.get("channel", {})),
        open_items=tuple(OpenItem(**i) for i in d.get("open_items", ())),
        decided_at_ms=d["decided_at_ms"],
        candidates={k: (v[0], v[1]) for k, v in d["candidates"].items()},
        policy=PolicyTrace(**d.get("policy", {})),
    )
