"""The shipped rule scenarios, end to end: the profile and contact history in Redis, the question over gRPC."""

from __future__ import annotations

import datetime as dt
import time

import orjson
import pytest
import redis

from decision.app import Service
from decision.decision_log import unpack
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.scenarios import DEFAULT_SCENARIO_DIR, Scenario, compare, load_scenarios
from features.redis_keys import KeyLayout
from features.redis_store import RedisOnlineStore
from tests.helpers import SCHEMA

KEYS = KeyLayout()

SCENARIOS = load_scenarios(DEFAULT_SCENARIO_DIR, SCHEMA)


def summarise_reply(reply: pb.DecideResponse, candidates: list[str]) -> dict:
    """What scenarios speak about, from the gRPC answer (decision.scenarios.summarise does it offline)."""
    return {
        "fired": [r.rule_id for r in reply.explanation.rules_fired],
        "actions": [(a.action_id, a.mandatory) for a in reply.actions],
        "candidates": candidates,
        "suppressed": {s.action_id: s.reason_code for s in reply.explanation.suppressed},
        "language": reply.explanation.language,
        "channel": reply.channel.channel,
        "text": " ".join([reply.explanation.greeting, reply.explanation.text, *(a.message for a in reply.actions)]),
        "follow_ups": {f.kind: f.text for f in reply.follow_ups},
        "follow_up_channels": {f.kind: f.channel for f in reply.follow_ups},
        "open_items": [(i.kind, i.detailed, i.text) for i in reply.open_items],
        "degraded_codes": list(reply.degraded_codes),
    }


def given_in_redis(scenario: Scenario, service: Service, client: redis.Redis) -> None:
    store = service.flow.store
    assert isinstance(store, RedisOnlineStore)
    now = time.time()
    client.delete(store.keys.customer(scenario.customer_id), store.keys.contacts(scenario.customer_id))
    profile = scenario.profile(service.flow.schema, now)
    if profile is not None:
        store.write_profiles([profile], written_at=now)
    store.record_contacts(scenario.customer_id, scenario.contact_history(now), now)
    for action in service.flow.catalogue.actions.values():  # stock: full, unless the scenario says otherwise
        if action.capacity is not None and action.capacity.per in scenario.context:
            flight = scenario.context[action.capacity.per].strip().upper()
            key = KEYS.capacity(action.action_id, f"{flight}:{dt.date.today().isoformat()}")
            client.set(key, scenario.capacity_left.get(action.action_id, action.capacity.units))


def stored_candidates(client: redis.Redis, decision_id: str) -> list[str]:
    """Every candidate that reached the model, from the decision log (the answer names only those decided)."""
    deadline = time.monotonic() + 5
    while (stored := client.get(KEYS.decision(decision_id))) is None:
        assert time.monotonic() < deadline, "the decision never reached the log"
        time.sleep(0.01)
    return sorted(orjson.loads(unpack(stored))["candidates"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.scenario_id for s in SCENARIOS])
def test_scenario_end_to_end(
    scenario: Scenario, service: Service, stub: pb_grpc.DecisionServiceStub, redis_client: redis.Redis
) -> None:
    given_in_redis(scenario, service, redis_client)
    reply = stub.Decide(
        pb.DecideRequest(
            customer_id=scenario.customer_id,
            touchpoint=pb.Touchpoint.Value(scenario.touchpoint.name),
            context=dict(scenario.context),
            max_actions=20,
        ),
        timeout=5,
    )
    candidates = stored_candidates(redis_client, reply.decision_id)
    assert compare(summarise_reply(reply, candidates), scenario.expect) == []
