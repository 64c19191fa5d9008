"""The log streams keep at most NBA_LOG_MAX_ENTRIES entries each, whatever the shipper does: Redis stays bounded."""

from __future__ import annotations

import dataclasses
import uuid

from decision.decision_log import RedisDecisionLog, decision_from_json
from decision.domain import Outcome
from decision.pb import decision_pb2 as pb
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_store import RedisStoreConfig

CAP = 1_000
# XADD MAXLEN ~ trims whole nodes of the stream (stream-node-max-entries, 100 by default): never fewer than the
# cap, at most a node more.
NODE = 100


def test_the_streams_keep_the_newest_entries_up_to_their_cap(stub, service, redis_client, loaded_redis) -> None:
    reply = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.CHECKIN_KIOSK), timeout=5)
    service.flow.decision_log.flush()
    template = decision_from_json(redis_client.get(KeyLayout().decision(reply.decision_id)))
    prefix = f"cap{uuid.uuid4().hex[:6]}:"
    keys = KeyLayout(prefix)
    log = RedisDecisionLog(connect(RedisStoreConfig(url=loaded_redis.url)), 3600, max_entries=CAP, key_prefix=prefix)
    decisions = [dataclasses.replace(template, decision_id=f"d{i}", follow_ups=()) for i in range(3 * CAP)]
    for start in range(0, len(decisions), 100):
        log._store([(d, {}) for d in decisions[start : start + 100]])
    for decision in decisions[-CAP - 200 :]:
        log.record_outcome(decision, "lounge_pass", Outcome.IGNORED, 1.0)  # the log checks no action list
    log.close()

    assert CAP <= redis_client.xlen(keys.decisions_stream) <= CAP + NODE
    assert CAP <= redis_client.xlen(keys.outcomes_stream) <= CAP + NODE
    newest = redis_client.xrevrange(keys.decisions_stream, count=1)[0][1]
    assert newest["decision_id"] == decisions[-1].decision_id  # the oldest go first
    oldest = redis_client.xrange(keys.decisions_stream, count=1)[0][1]
    assert int(oldest["decision_id"][1:]) >= 2 * CAP - NODE
