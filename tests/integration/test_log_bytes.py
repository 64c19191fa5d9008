"""What a decision costs Redis: packed (compressed) in its key and its stream entry, and still read back whole."""

from __future__ import annotations

import orjson

from decision.decision_log import decision_from_json, pack, unpack
from decision.pb import decision_pb2 as pb
from features.redis_keys import KeyLayout

KEYS = KeyLayout()


def test_a_decision_is_kept_packed_and_reads_back_the_same(stub, service, redis_client) -> None:
    reply = stub.Decide(pb.DecideRequest(customer_id="demo-ife-gold", touchpoint=pb.CHECKIN_KIOSK), timeout=5)
    service.flow.decision_log.flush()
    stored = redis_client.get(KEYS.decision(reply.decision_id))
    decision = decision_from_json(stored)
    plain = orjson.dumps(decision)
    assert stored.startswith("z1:") and len(stored) < len(plain) / 2
    assert decision.decision_id == reply.decision_id and [a.action_id for a in decision.actions] == [
        a.action_id for a in reply.actions
    ]
    assert decision_from_json(plain) == decision  # a plain JSON decision (an earlier version's) still reads
    entry = next(
        e for _, e in redis_client.xrevrange(KEYS.decisions_stream, count=200) if e["decision_id"] == reply.decision_id
    )
    assert entry["decision"] == stored and orjson.loads(unpack(entry["inputs"]))["features"]


def test_unpack_leaves_plain_json_alone() -> None:
    assert unpack(b'{"a": 1}') == b'{"a": 1}' and unpack(pack(b'{"a": 1}')) == b'{"a": 1}'
