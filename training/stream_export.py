"""Export the service's own decision log (Redis Streams) as a training log: one row per (decision, offered action).

Each decision in ``nba:log:decisions`` carries what it was decided from (``inputs``: the raw stored features and
the request context) and when (``decided_at_ms``); each outcome in ``nba:log:outcomes`` names its decision and
action. A row of the export is one action a decision offered, with:

* ``decision_id``, ``customer_id``, ``touchpoint``, ``decided_at`` (epoch seconds), ``model_version``,
  ``rules_version``, ``degraded`` (the degradation codes, empty when none), ``rank`` (1 = first offered);
* ``action``, ``accepted`` (1 when the outcome was ACCEPTED, else 0), ``outcome`` (ACCEPTED, DECLINED, IGNORED,
  or empty when none came back);
* ``live_p_accept``: the live model's P(accept) for the action (what the service calls its "propensity");
  this is the model's estimate, *not* the probability that the policy chose the action;
* ``propensity``: the probability that the logging policy put the action first, on each decision's first row
  (``rank`` 1): the decision's policy trace (``policy.propensity``, written since exploration) or an older
  ``logging_propensities`` mapping; empty on the other rows, whose choice no propensity describes;
* ``arm`` (champion or challenger: which model decided), ``explored`` (exploration drew the first action),
  ``shadow_model_version`` and ``shadow_action`` (what a challenger in shadow would have put first);
* ``ctx_<key>`` for each request context key, then every schema feature under its derived name, parsed at the
  decision's time exactly as the service parsed it (``last_incident_days`` is the age at the decision).

The columns are those of ``training.demo_log``, so ``nba train`` reads either.

The entries come from Redis (``export_decision_log``) or from the shipped log's Parquet files, plus what Redis
holds beyond them (``export_shipped_log``): ``decision_table`` builds the table from entries of either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import redis

from decision.decision_log.records import unpack
from decision.decision_log.shipped_files import DECISIONS, OUTCOMES, LogDirectory, StreamId
from decision.progress import progress
from features.redis_keys import DEFAULT_PREFIX, KeyLayout
from features.schema import FeatureSchema

BATCH = 1_000
ACCEPTED = "ACCEPTED"
ARROW_TYPES = {
    "number": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "category": pa.string(),
    "timestamp": pa.float64(),
    "text": pa.string(),
}


def feature_fields(schema: FeatureSchema) -> list[pa.Field]:
    """Arrow fields of every schema feature under its derived name, typed as ``FeatureSchema.parse`` types it."""
    return [pa.field(f.derived_name, ARROW_TYPES[f.type]) for f in schema.features]


def export_decision_log(
    client: redis.Redis,
    *,
    key_prefix: str = DEFAULT_PREFIX,
    schema: FeatureSchema,
    answered_only: bool = False,
    chosen_only: bool = False,
    since_ms: int | None = None,
) -> pa.Table:
    """The decision and outcome streams as one table (see the module docstring), oldest decision first.

    ``answered_only`` keeps only offered actions whose outcome came back; otherwise an action without one counts
    as not accepted (``accepted`` 0, ``outcome`` empty). ``chosen_only`` keeps each decision's first action
    only (one row per decision, with its propensity). ``since_ms`` skips decisions made before that time.
    """
    keys = KeyLayout(key_prefix)
    return decision_table(
        redis_entries(client, keys.decisions_stream, start=_stream_start(since_ms)),
        redis_entries(client, keys.outcomes_stream),
        schema=schema,
        answered_only=answered_only,
        chosen_only=chosen_only,
    )


def export_shipped_log(
    log_dir: str | Path,
    client: redis.Redis | None = None,
    *,
    key_prefix: str = DEFAULT_PREFIX,
    schema: FeatureSchema,
    answered_only: bool = False,
    chosen_only: bool = False,
    since_ms: int | None = None,
) -> pa.Table:
    """The same table from the shipped log under ``log_dir`` (a directory or filesystem URL,
    ``decision.decision_log.shipped_files``) and, with ``client``, the entries of its Redis not shipped yet."""
    directory = LogDirectory(log_dir)
    keys = KeyLayout(key_prefix)
    decisions = log_entries(directory, DECISIONS, client, keys.decisions_stream)
    if since_ms is not None:
        decisions = (e for e in decisions if int(e["decided_at_ms"]) >= since_ms)
    return decision_table(
        decisions,
        log_entries(directory, OUTCOMES, client, keys.outcomes_stream),
        schema=schema,
        answered_only=answered_only,
        chosen_only=chosen_only,
    )


def log_entries(
    directory: LogDirectory, kind: str, client: redis.Redis | None = None, stream: str = ""
) -> Iterator[Mapping[str, Any]]:
    """A stream's shipped entries, oldest first, then those still in Redis after them (with ``client``).

    Redis is read first and kept: an entry the shipper ships and trims while the files are read is then found
    in one of the two, and is given once (Redis's copy only when it is past the files' last id)."""
    waiting = list(redis_entries(client, stream, with_ids=True)) if client is not None else []
    last: StreamId | None = None
    for row in directory.read(kind):
        last = StreamId.parse(row["stream_id"])
        yield row
    for entry in waiting:
        if last is None or StreamId.parse(entry["stream_id"]) > last:
            yield entry


def decision_table(
    decisions: Iterable[Mapping[str, Any]],
    outcomes: Iterable[Mapping[str, Any]],
    *,
    schema: FeatureSchema,
    answered_only: bool = False,
    chosen_only: bool = False,
) -> pa.Table:
    """The export's table from decision and outcome entries (each a mapping of the stream entry's fields, from
    Redis or from the shipped files), oldest decision first. A decision id seen twice is kept once, the first:
    the shipped files hold each once, and this guards a reader against a copy in Redis and in a file."""
    answers: dict[tuple[str, str], str] = {}
    for fields in outcomes:
        answers[(fields["decision_id"], fields["action_id"])] = fields["outcome"]

    rows: list[dict[str, Any]] = []
    context_keys: dict[str, None] = {}
    seen: set[str] = set()
    for fields in progress(decisions, desc="decisions read", unit="decision"):
        decision = orjson.loads(unpack(fields["decision"]))
        if decision["decision_id"] in seen:
            continue
        seen.add(decision["decision_id"])
        inputs = orjson.loads(unpack(fields.get("inputs") or b"{}"))
        decided_at = int(fields["decided_at_ms"]) / 1000.0
        values = schema.parse(inputs.get("features") or {}, decided_at)
        context = {f"ctx_{k}": str(v) for k, v in (inputs.get("context") or {}).items()}
        context_keys.update(dict.fromkeys(context))
        logged = decision.get("logging_propensities") or {}
        candidates = decision.get("candidates") or {}
        trace = decision.get("policy") or {}
        for rank, action in enumerate(decision.get("actions") or [], start=1):
            if chosen_only and rank > 1:
                break
            action_id = action["action_id"]
            outcome = answers.get((decision["decision_id"], action_id), "")
            if answered_only and not outcome:
                continue
            propensity = logged.get(action_id)
            if trace and rank == 1:
                propensity = float(trace.get("propensity", 1.0))
            live = candidates.get(action_id)
            rows.append(
                {
                    "decision_id": decision["decision_id"],
                    "customer_id": decision["customer_id"],
                    "touchpoint": fields["touchpoint"],
                    "decided_at": decided_at,
                    "model_version": fields.get("model_version") or "",
                    "rules_version": fields.get("rules_version") or "",
                    "degraded": fields.get("degraded") or "",
                    "rank": rank,
                    "action": action_id,
                    "accepted": int(outcome == ACCEPTED),
                    "outcome": outcome,
                    "live_p_accept": float(live[0]) if live else action.get("propensity"),
                    "propensity": propensity,
                    "arm": trace.get("arm", "champion"),
                    "explored": bool(trace.get("explored", False)),
                    "shadow_model_version": trace.get("shadow_model_version", ""),
                    "shadow_action": trace.get("shadow_action_id", ""),
                    **context,
                    **values,
                }
            )
    head = [
        pa.field("decision_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("touchpoint", pa.string()),
        pa.field("decided_at", pa.float64()),
        pa.field("model_version", pa.string()),
        pa.field("rules_version", pa.string()),
        pa.field("degraded", pa.string()),
        pa.field("rank", pa.int64()),
        pa.field("action", pa.string()),
        pa.field("accepted", pa.int64()),
        pa.field("outcome", pa.string()),
        pa.field("live_p_accept", pa.float64()),
        pa.field("propensity", pa.float64()),
        pa.field("arm", pa.string()),
        pa.field("explored", pa.bool_()),
        pa.field("shadow_model_version", pa.string()),
        pa.field("shadow_action", pa.string()),
    ]
    context_fields = [pa.field(k, pa.string()) for k in sorted(context_keys)]
    table = pa.Table.from_pylist(rows, schema=pa.schema(head + context_fields + feature_fields(schema)))
    if table.column("propensity").null_count == table.num_rows:
        table = table.drop_columns(["propensity"])  # nothing logged one: no column rather than an empty one
    return table


def redis_entries(
    client: redis.Redis, stream: str, start: str = "-", with_ids: bool = False
) -> Iterator[dict[str, Any]]:
    """Every entry of a stream, oldest first, read in batches; keys decoded, values as stored (``stream_id``
    added with ``with_ids``)."""
    while True:
        batch = client.xrange(stream, min=start, max="+", count=BATCH)
        if not batch:
            return
        for entry_id, fields in batch:
            entry = {
                _text(k): (_text(v) if _text(k) not in ("decision", "inputs") else v) for k, v in (fields or {}).items()
            }
            yield entry | {"stream_id": _text(entry_id)} if with_ids else entry
        last = _text(batch[-1][0])
        start = f"({last}"
        if len(batch) < BATCH:
            return


def _stream_start(since_ms: int | None) -> str:
    # Stream ids start with the time they were added in ms; a decision is added just after it is made.
    return "-" if since_ms is None else str(int(since_ms))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
