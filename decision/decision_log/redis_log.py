"""The decision log in Redis: server-side scripts write a decision, its capacity, follow-ups and contact history
in one round trip; decisions without side effects go through the background writer; the spool while Redis is
down."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import redis

from decision.decision_log.contract import (
    CapacityClaim,
    Committed,
    DecisionLog,
    DecisionLogUnavailable,
    DecisionNotFound,
    Inputs,
    OutcomeAlreadyFinal,
)
from decision.decision_log.records import (
    contact_events,
    decision_from_json,
    follow_up_records,
    outcome_fields,
    pack_decision,
    stream_fields,
)
from decision.decision_log.spool import DecisionSpool, SpoolFull
from decision.decision_log.writer import BackgroundWriter
from decision.domain import Decision, Outcome, OutcomeReceipt
from features.contact_history import CONTACT_ADD_LUA, Contact, contact_args
from features.online_store import SHORTEST_CALL_S
from features.redis_client import CircuitBreaker, CutShort, RoundTrip
from features.redis_keys import DEFAULT_PREFIX, KeyLayout

log = logging.getLogger(__name__)

# Entries kept in each log stream at most (Settings.log_max_entries).
DEFAULT_MAX_ENTRIES = 100_000


class Call(NamedTuple):
    """One script call's KEYS and ARGV (ARGV: str, bytes or int, as ``RoundTrip`` sends them)."""

    keys: list[str]
    args: list[Any]


class LuaScript:
    """A server-side script, run by its hash and sent whole only when Redis does not know it (after a restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def run(self, round_trip: RoundTrip, call: Call, timeout_s: float | None = None) -> Any:
        n = len(call.keys)
        try:
            return round_trip(("EVALSHA", self.sha, n, *call.keys, *call.args), timeout_s=timeout_s)[0]
        except redis.exceptions.NoScriptError:
            return round_trip(("EVAL", self.source, n, *call.keys, *call.args), timeout_s=timeout_s)[0]


# The scripts' ARGV is positional, each slot named once at the top of the script: the same calls with their
# scalars as a JSON table read by name (cjson) cost Redis measurably more per decision (a commit the most).

# A decision with side effects (capacity, follow-ups), written before it is answered.
# Replies: {0, stored decision} its key exists (a retry); {2, i} the i-th claim's pool is empty; {1} stored.
COMMIT = LuaScript(
    CONTACT_ADD_LUA
    + """
-- KEYS: decision, decisions stream, follow-ups stream, contact counts, then per claim: pool, pool's holders
-- ARGV: decision json, ttl seconds, n stream fields, stream fields..., n follow-ups, follow-up jsons...,
--       per claim: default units, expires at (epoch s, 0 = never), holder; then the streams' cap (entries),
--       the contact events (contact_args)
local decision_key, decisions, follow_ups, contacts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local record, ttl, n_fields = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n_follow = tonumber(ARGV[4 + n_fields])
local first_claim = 5 + n_fields + n_follow
local n_claims = (#KEYS - 4) / 2
local cap_index = first_claim + 3 * n_claims
local function claim(i)  -- the i-th claim: its pool, the pool's holders, default units, expires at, holder
  local a = first_claim + 3 * (i - 1)
  return KEYS[3 + 2 * i], KEYS[4 + 2 * i], ARGV[a], ARGV[a + 1], ARGV[a + 2]
end
local existing = redis.call('GET', decision_key)
if existing then return {0, existing} end
local held = {}
for i = 1, n_claims do
  local pool, holders, units, _, holder = claim(i)
  held[i] = redis.call('SISMEMBER', holders, holder) == 1
  if not held[i] then
    local left = redis.call('GET', pool)
    if left == false then left = units end
    if tonumber(left) <= 0 then return {2, i} end
  end
end
for i = 1, n_claims do
  local pool, holders, units, expires_at, holder = claim(i)
  if not held[i] then
    if redis.call('EXISTS', pool) == 0 then
      redis.call('SET', pool, units)
    end
    redis.call('DECR', pool)
    redis.call('SADD', holders, holder)
    if tonumber(expires_at) > 0 then
      redis.call('EXPIREAT', pool, expires_at)
      redis.call('EXPIREAT', holders, expires_at)
    end
  end
end
local cap = ARGV[cap_index]
redis.call('SET', decision_key, record, 'EX', ttl)
redis.call('XADD', decisions, 'MAXLEN', '~', cap, '*', unpack(ARGV, 4, 3 + n_fields))
for i = 1, n_follow do
  redis.call('XADD', follow_ups, 'MAXLEN', '~', cap, '*', 'follow_up', ARGV[4 + n_fields + i])
end
add_contacts(contacts, cap_index + 1)
return {1}
"""
)


def commit_call(
    keys: KeyLayout,
    ttl_s: int,
    max_entries: int,
    decision: Decision,
    claims: Sequence[CapacityClaim],
    inputs: Inputs,
) -> Call:
    """COMMIT's KEYS and ARGV for a decision and the capacity it takes."""
    record = pack_decision(decision)
    fields = stream_fields(decision, record, inputs)
    follow_ups = follow_up_records(decision)
    pools = [
        key for c in claims for key in (keys.capacity(c.action_id, c.pool), keys.capacity_holders(c.action_id, c.pool))
    ]
    return Call(
        [
            keys.decision(decision.decision_id),
            keys.decisions_stream,
            keys.follow_ups_stream,
            keys.contacts(decision.customer_id),
            *pools,
        ],
        [
            record,
            ttl_s,
            len(fields),
            *fields,
            len(follow_ups),
            *follow_ups,
            *[arg for c in claims for arg in (c.units, c.expires_at, c.holder)],
            max_entries,
            *contact_args(contact_events(decision), decision.decided_at_ms / 1000.0),
        ],
    )


# Decisions without side effects beyond the log, many per call (the background writer, a spool replay).
LOG_BATCH = LuaScript(
    CONTACT_ADD_LUA
    + """
-- KEYS: decisions stream, follow-ups stream, then per decision: its key, its customer's contact counts
-- ARGV: ttl seconds, the streams' cap (entries), then per decision: decision json, n contact args,
--       n stream fields, n follow-ups, contact args (contact_args)..., stream fields..., follow-up jsons...
-- A decision whose key exists is skipped whole: a concurrent retry decided twice keeps the first decision
-- for its outcomes, and a spool replay cut short and repeated stores nothing twice.
local decisions, follow_ups = KEYS[1], KEYS[2]
local ttl, cap = ARGV[1], ARGV[2]
local a = 3
for k = 3, #KEYS, 2 do
  local decision_key, contacts = KEYS[k], KEYS[k + 1]
  local record, n_contact = ARGV[a], tonumber(ARGV[a + 1])
  local n_fields, n_follow = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local fresh = redis.call('SET', decision_key, record, 'EX', ttl, 'NX')
  a = a + 4
  if fresh then
    if n_contact > 0 then add_contacts(contacts, a) end
    redis.call('XADD', decisions, 'MAXLEN', '~', cap, '*', unpack(ARGV, a + n_contact, a + n_contact + n_fields - 1))
    for i = a + n_contact + n_fields, a + n_contact + n_fields + n_follow - 1 do
      redis.call('XADD', follow_ups, 'MAXLEN', '~', cap, '*', 'follow_up', ARGV[i])
    end
  end
  a = a + n_contact + n_fields + n_follow
end
return 1
"""
)


def log_batch_call(keys: KeyLayout, ttl_s: int, max_entries: int, batch: Sequence[tuple[Decision, Inputs]]) -> Call:
    """LOG_BATCH's KEYS and ARGV for a batch of decisions."""
    call = Call([keys.decisions_stream, keys.follow_ups_stream], [ttl_s, max_entries])
    for decision, inputs in batch:
        record = pack_decision(decision)
        events = contact_events(decision)
        contact = contact_args(events, decision.decided_at_ms / 1000.0) if events else []
        fields = stream_fields(decision, record, inputs)
        letters = follow_up_records(decision)
        call.keys.extend((keys.decision(decision.decision_id), keys.contacts(decision.customer_id)))
        call.args.extend((record, len(contact), len(fields), len(letters)))
        call.args.extend((*contact, *fields, *letters))
    return call


# An outcome of a decision's action, stored once.
OUTCOME = LuaScript(
    CONTACT_ADD_LUA
    + """
-- KEYS: decision, outcome marker, outcomes stream, contact counts[, the seat's pool, the pool's holders]
-- ARGV: ttl seconds, outcome name, the stream's cap (entries), holder, n contact args, the decline's contact
--       args (contact_args)..., stream fields...
-- Replies: {-1} no decision; {0, id} the same outcome again; {2, stored} refused, the stored one is final;
--          {1, id} stored. A decline of an action that holds a seat gives the seat back (once: the holder's).
local decision_key, marker, outcomes, contacts, pool, holders = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ttl, outcome, cap, holder, n_contact = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('EXISTS', decision_key) == 0 then return {-1} end
local fields = {unpack(ARGV, 6 + n_contact)}
local previous = redis.call('GET', marker)
if previous then
  local stored, id = string.match(previous, '^(%u+)|(.+)$')
  if not stored then return {0, previous} end  -- a bare stream id (from before): a duplicate, as then
  if stored == outcome then return {0, id} end
  if stored ~= 'IGNORED' then return {2, stored} end
  fields[#fields + 1] = 'supersedes'
  fields[#fields + 1] = stored
end
local id = redis.call('XADD', outcomes, 'MAXLEN', '~', cap, '*', unpack(fields))
redis.call('SET', marker, outcome .. '|' .. id, 'EX', ttl)
if outcome == 'DECLINED' then
  add_contacts(contacts, 6)
  if pool and redis.call('SREM', holders, holder) == 1 and redis.call('EXISTS', pool) == 1 then
    redis.call('INCR', pool)
  end
end
return {1, id}
"""
)


def outcome_call(
    keys: KeyLayout, ttl_s: int, max_entries: int, decision: Decision, action_id: str, outcome: Outcome, at: float
) -> Call:
    """OUTCOME's KEYS and ARGV for one outcome of a decision's action (and the action's seat, if it holds one)."""
    declined = contact_args([Contact("declined", action_id, decision.touchpoint.name, at)], at)
    seat = [
        key
        for a, pool in decision.seats
        if a == action_id
        for key in (keys.capacity(a, pool), keys.capacity_holders(a, pool))
    ]
    return Call(
        [
            keys.decision(decision.decision_id),
            keys.outcome(decision.decision_id, action_id),
            keys.outcomes_stream,
            keys.contacts(decision.customer_id),
            *seat[:2],
        ],
        [
            ttl_s,
            outcome.name,
            max_entries,
            decision.customer_id,  # the seat's holder (CapacityClaim.holder)
            len(declined),
            *declined,
            *outcome_fields(decision, action_id, outcome, at),
        ],
    )


class RedisDecisionLog(DecisionLog):
    """The decision log in Redis Streams, written by server-side scripts (one round trip per commit)."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_s: int,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        key_prefix: str = DEFAULT_PREFIX,
        spool_path: Path | None = None,
        breaker: CircuitBreaker | None = None,
        spool_fsync: str = "everysec",
        spool_max_bytes: int = 256 << 20,
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        # The streams' cap: the newest entries kept when the shipper falls behind (XADD MAXLEN ~).
        self.max_entries = max_entries
        self.keys = KeyLayout(key_prefix)
        self.round_trip = RoundTrip(client)
        self.spool = DecisionSpool(spool_path, spool_fsync, spool_max_bytes) if spool_path else None
        # Shared with the feature store: when Redis just failed, commits go to the spool without waiting.
        self.breaker = breaker
        self.writer = BackgroundWriter(self._write_batch)
        self._replaying = threading.Lock()
        self._replayer: threading.Thread | None = None

    def decision_key(self, decision_id: str) -> str:
        return self.keys.decision(decision_id)

    def answered(self, decision_id: str, stored: str | bytes | None) -> Decision | None:
        if (waiting := self.writer.waiting.get(decision_id)) is not None:
            return waiting
        return decision_from_json(stored) if stored is not None else None

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
            raise DecisionLogUnavailable(f"Redis {self.breaker.skipped}")
        if not claims and not decision.follow_ups:
            self.writer.submit(decision, inputs)
            return Committed(decision)
        call = commit_call(self.keys, self.ttl_s, self.max_entries, decision, claims, inputs)
        try:
            if timeout_s is not None and timeout_s < SHORTEST_CALL_S:
                raise CutShort(f"{max(timeout_s, 0.0) * 1000:.1f} ms left before the deadline")
            reply = COMMIT.run(self.round_trip, call, timeout_s)
        except (redis.RedisError, OSError) as exc:
            if self.breaker is not None and not isinstance(exc, CutShort):
                self.breaker.failed(exc)
            if not claims:
                self._spool([(decision, inputs)])
            raise DecisionLogUnavailable(f"decision log write failed: {exc}") from exc
        status = int(reply[0])
        if status == 0:
            return Committed(decision_from_json(reply[1]))
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
                self.breaker.failed(exc)
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
        LOG_BATCH.run(self.round_trip, log_batch_call(self.keys, self.ttl_s, self.max_entries, batch))

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
                # Redis answered this read: replay now rather than at the next decision written, which may be long
                # in coming when the callers are all retrying outcomes of spooled decisions.
                if self.breaker is None or not self.breaker.open:
                    self._replay_soon()
                raise DecisionLogUnavailable("the decision waits in this server's spool until Redis takes writes")
            raise DecisionNotFound(decision_id)
        return decision_from_json(stored)

    def record_outcome(self, decision: Decision, action_id: str, outcome: Outcome, at: float) -> OutcomeReceipt:
        call = outcome_call(self.keys, self.ttl_s, self.max_entries, decision, action_id, outcome, at)
        try:
            reply = OUTCOME.run(self.round_trip, call)
        except (redis.RedisError, OSError) as exc:
            raise DecisionLogUnavailable(f"outcome not stored: {exc}") from exc
        if int(reply[0]) == -1:
            raise DecisionNotFound(decision.decision_id)
        if int(reply[0]) == 2:
            raise OutcomeAlreadyFinal(Outcome[str(reply[1])])
        return OutcomeReceipt(outcome_id=str(reply[1]), duplicate=int(reply[0]) == 0)
