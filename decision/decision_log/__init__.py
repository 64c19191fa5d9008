"""The decision log: the durable record of decisions and outcomes, with the side effects written with them
(capacity, follow-ups, contact history) and retries.

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

Modules: ``contract`` (the DecisionLog every backend keeps, its values and errors), ``records`` (how a decision
is encoded), ``redis_log`` (the service's log, each Redis script beside the code that builds its arguments),
``memory_log`` (offline runs), ``writer`` (the background writer), ``spool`` (the local file while Redis is down),
``shipper`` (moves the streams to Parquet files and trims them), ``shipper_process`` (runs it beside a server),
``shipped_files`` (the files' layout, written by the shipper and read by the training log's export).

Every key it writes (decision, outcome marker, capacity pool and holders, contact history, the streams) is
named in features/redis_keys.py, with what each holds.
"""

from decision.decision_log.contract import (
    CapacityClaim,
    Committed,
    DecisionLog,
    DecisionLogUnavailable,
    DecisionNotFound,
    Inputs,
    OutcomeAlreadyFinal,
)
from decision.decision_log.memory_log import MemoryDecisionLog
from decision.decision_log.records import (
    contact_events,
    decision_from_json,
    follow_up_records,
    pack,
    stream_fields,
    unpack,
)
from decision.decision_log.redis_log import RedisDecisionLog
from decision.decision_log.spool import DecisionSpool, SpoolFull, spool_path
from decision.decision_log.writer import BackgroundWriter

__all__ = [
    "BackgroundWriter",
    "CapacityClaim",
    "Committed",
    "DecisionLog",
    "DecisionLogUnavailable",
    "DecisionNotFound",
    "DecisionSpool",
    "Inputs",
    "MemoryDecisionLog",
    "OutcomeAlreadyFinal",
    "RedisDecisionLog",
    "SpoolFull",
    "contact_events",
    "decision_from_json",
    "follow_up_records",
    "pack",
    "spool_path",
    "stream_fields",
    "unpack",
]
