"""How a decision is encoded: its JSON and back, its decision-stream entry, the follow-up entries, the contact
history events it adds, and a spool line.

In Redis a decision and its inputs are kept packed (``pack``): their JSON compressed with zlib and written as base64
text, since the service's clients decode replies as text. That keeps under half of the bytes (a decision's JSON is
mostly the names of the rules, actions and reasons of its explanation, repeated). ``unpack`` reads packed and plain
JSON alike, so what an earlier version wrote still reads.

The same encodings serve every write path (a commit, a background batch, a spool replay), so a decision reads
back the same whichever way it went to Redis.
"""

from __future__ import annotations

import base64
import dataclasses
import zlib
from typing import Any

import orjson

from decision.decision_log.contract import Inputs
from decision.domain import (
    ChannelAdvice,
    Decision,
    Explanation,
    FeatureContribution,
    FeatureFreshness,
    FollowUp,
    OpenItem,
    Outcome,
    PolicyTrace,
    RankedAction,
    RuleFired,
    Suppression,
    Touchpoint,
)
from features.contact_history import Contact

PACKED = "z1:"  # zlib, then base64


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


def pack(data: bytes) -> str:
    """JSON as Redis keeps it: compressed with zlib's default level (its fastest keeps 8% more bytes)."""
    return PACKED + base64.b64encode(zlib.compress(data, 6)).decode("ascii")


def unpack(text: str | bytes) -> bytes:
    """The JSON of a packed value, or a plain JSON value as it is."""
    raw = text.encode() if isinstance(text, str) else text
    if raw.startswith(PACKED.encode()):
        return zlib.decompress(base64.b64decode(raw[len(PACKED) :]))
    return raw


def pack_decision(decision: Decision) -> str:
    return pack(orjson.dumps(decision))


def stream_fields(decision: Decision, record: str, inputs: Inputs) -> list[Any]:
    """The decision log entry: searchable columns, the whole decision and its inputs, packed."""
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
        "inputs", pack(orjson.dumps(inputs)),
    ]  # fmt: skip


def outcome_fields(decision: Decision, action_id: str, outcome: Outcome, at: float) -> list[Any]:
    """The outcome log entry: the outcome of one action of a decision, with what retraining joins it on."""
    return [
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


def decision_from_json(data: bytes | str) -> Decision:
    """The inverse of ``orjson.dumps(decision)`` and of ``pack_decision``."""
    d = orjson.loads(unpack(data))
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
        seats=tuple((action_id, pool) for action_id, pool in d.get("seats", ())),
    )
