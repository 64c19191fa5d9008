"""Scenarios S1, S2 and S7 end to end: a real gRPC server on a free port over a real Redis server."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import orjson
import pytest
import redis

from decision.app import Service
from decision.decision_log import unpack
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_keys import KeyLayout
from features.redis_store import RedisOnlineStore
from tests.helpers import forget_offers, fresh_flight

KEYS = KeyLayout()

pytestmark = pytest.mark.usefixtures("fresh_contact_history")


def decide(stub: pb_grpc.DecisionServiceStub, customer: str, touchpoint: int, **context: str) -> pb.DecideResponse:
    request = pb.DecideRequest(
        customer_id=customer, touchpoint=touchpoint, context=context, request_id=uuid.uuid4().hex
    )
    return stub.Decide(request, timeout=5)


def stream_entry(client: redis.Redis, stream: str, decision_id: str) -> dict[str, str]:
    for _, fields in client.xrevrange(stream, count=500):
        if fields.get("decision_id") == decision_id:
            return fields
    raise AssertionError(f"decision {decision_id} not in {stream}")


def test_s1_valuable_passenger_with_broken_entertainment_is_upgraded_at_the_kiosk(stub, redis_client):
    flight = fresh_flight()
    reply = decide(stub, "demo-ife-gold", pb.CHECKIN_KIOSK, flight=flight, cabin="economy")

    first = reply.actions[0]
    assert first.action_id == "upgrade_first_class"
    assert first.mandatory and "service_recovery" in first.reason_codes
    assert reply.explanation.delivery == "screen"
    assert reply.explanation.language == "en"
    assert "First Class" in reply.explanation.text and flight in reply.explanation.text
    assert "service_recovery_ife" in {r.rule_id for r in reply.explanation.rules_fired}
    assert not reply.degraded, reply.degraded_reason
    assert reply.features.found and 0 <= reply.features.age_ms < reply.features.max_age_ms
    assert reply.model_version.startswith("demo-") and reply.rules_version

    letter = [f for f in reply.follow_ups if f.kind == "apology_letter"]
    assert len(letter) == 1 and flight in letter[0].text and "AZ611" in letter[0].text

    logged = stream_entry(redis_client, KEYS.decisions_stream, reply.decision_id)
    assert logged["model_version"] == reply.model_version and logged["rules_version"] == reply.rules_version
    record = orjson.loads(unpack(logged["decision"]))
    assert "upgrade_first_class" in record["candidates"]
    assert all(0.0 <= p <= 1.0 for p, _ in record["candidates"].values())
    follow_ups = [orjson.loads(f["follow_up"]) for _, f in redis_client.xrevrange(KEYS.follow_ups_stream, count=500)]
    assert any(f["decision_id"] == reply.decision_id and f["kind"] == "apology_letter" for f in follow_ups)
    assert int(redis_client.get(KEYS.capacity("upgrade_first_class", f"{flight}:{dt.date.today().isoformat()}"))) == 1


@pytest.mark.parametrize(
    ("touchpoint", "delivery"), [(pb.CHECKIN_AGENT, "agent"), (pb.IVR, "voice"), (pb.MOBILE_APP, "screen")]
)
def test_s1_the_process_is_the_same_whatever_the_channel(stub, touchpoint, delivery):
    flight = fresh_flight()
    reply = decide(stub, "demo-ife-gold", touchpoint, flight=flight)
    assert reply.actions[0].action_id == "upgrade_first_class" and reply.actions[0].mandatory
    assert reply.explanation.delivery == delivery
    assert reply.actions[0].message == reply.actions[0].message.strip() and reply.actions[0].message
    if delivery == "agent":
        assert "Service recovery" in reply.explanation.text  # the agent is told why
    if delivery == "voice":
        assert flight not in reply.explanation.text  # IVR speaks no flight codes, just "today's flight"


def test_s1_no_flight_to_upgrade_means_the_next_best_recovery_and_its_letter(stub):
    reply = decide(stub, "demo-ife-gold", pb.CHECKIN_KIOSK)
    assert "upgrade_first_class" not in [a.action_id for a in reply.actions]
    assert any(s.action_id == "upgrade_first_class" for s in reply.explanation.suppressed)
    first = reply.actions[0]
    assert (first.action_id, first.mandatory) == ("bonus_points_recovery", True)
    assert first.reason_codes[0] == "service_recovery" and "recovery_fallback" in first.reason_codes
    (letter,) = reply.follow_ups
    assert (letter.kind, letter.action_id) == ("apology_letter", "bonus_points_recovery")
    assert "5,000 bonus points" in letter.text and "First Class" not in letter.text


def test_s2_italian_passenger_is_served_in_italian_everywhere(stub, service):
    for touchpoint in (pb.CHECKIN_KIOSK, pb.CHECKIN_AGENT, pb.IVR):
        forget_offers(service, "demo-italian")  # a trip each: the visit's offer limit does not bite
        reply = decide(stub, "demo-italian", touchpoint, flight=fresh_flight())
        assert reply.explanation.language == "it"
        assert reply.explanation.greeting.startswith(("Che piacere", "Buongiorno"))
        assert reply.actions, f"an ordinary passenger still gets offers: {reply.explanation.suppressed}"
        english_titles = {"Lounge access today", "Extra legroom seat", "Fast-track security"}
        assert not {a.title for a in reply.actions} & english_titles


def test_s2_context_language_overrides_the_first_language(stub):
    reply = decide(stub, "demo-italian", pb.CHECKIN_KIOSK, language="zh-Hant", flight=fresh_flight())
    assert reply.explanation.language == "zh-Hant"
    assert "歡迎" in reply.explanation.greeting


def test_s7_teller_sees_the_next_product_and_the_open_dispute(stub):
    reply = decide(stub, "demo-bank-open-issue", pb.BRANCH_TELLER)
    assert reply.actions and all(a.kind in ("product", "retention") for a in reply.actions)
    assert reply.explanation.delivery == "agent"
    assert "dispute" in reply.explanation.text.lower()
    assert reply.explanation.top_features


def test_s7_the_open_dispute_is_not_shown_on_customer_facing_screens(stub, service: Service):
    reply = decide(stub, "demo-bank-open-issue", pb.WEB)
    assert "dispute" not in reply.explanation.text.lower()
    schema = service.flow.schema
    for contribution in reply.explanation.top_features:
        feature = schema.feature_for(contribution.feature)
        assert feature is not None and not feature.sensitive, contribution.feature


def test_an_incident_reported_now_is_seen_by_the_next_decision(stub, service: Service):
    store = service.flow.store
    assert isinstance(store, RedisOnlineStore)
    customer = f"rt-{uuid.uuid4().hex[:8]}"
    now = time.time()
    store.write_profiles(
        [
            {
                "customer_id": customer,
                "domain": "airline",
                "tier": "gold",
                "predicted_ltv": "9000",
                "last_name": "Rossi",
                "title": "Mr",
            }
        ],
        written_at=now,
    )
    flight = fresh_flight()
    before = decide(stub, customer, pb.CHECKIN_AGENT, flight=flight)
    assert "upgrade_first_class" not in [a.action_id for a in before.actions]

    store.update(
        customer,
        {
            "last_incident_type": "ife_broken",
            "last_incident": repr(now - 3600),
            "last_incident_flight": "AZ777",
            "last_incident_long_haul": "1",
        },
        at=time.time(),
    )
    after = decide(stub, customer, pb.CHECKIN_AGENT, flight=flight)
    assert after.actions[0].action_id == "upgrade_first_class" and after.actions[0].mandatory
    assert "AZ777" in after.follow_ups[0].text


def test_unknown_customer_gets_a_decision_from_the_context_alone(stub):
    reply = decide(stub, "nobody-we-know", pb.CHECKIN_KIOSK, flight=fresh_flight())
    assert reply.decision_id and reply.actions
    assert reply.degraded and "unknown_customer" in reply.degraded_codes
    assert not reply.features.found and reply.features.age_ms == -1
    assert reply.explanation.greeting == "Welcome."


def test_stale_profile_is_reported(stub, service: Service):
    store = service.flow.store
    assert isinstance(store, RedisOnlineStore)
    customer = f"stale-{uuid.uuid4().hex[:8]}"
    store.write_profiles([{"customer_id": customer, "domain": "airline"}], written_at=time.time() - 30 * 86_400)
    reply = decide(stub, customer, pb.CHECKIN_KIOSK)
    assert reply.features.stale and reply.features.age_ms > reply.features.max_age_ms
    assert "features_stale" in reply.degraded_codes and "days old" in reply.degraded_reason


def test_ranking_is_mandatory_first_then_by_score_and_deterministic(stub, service):
    request = pb.DecideRequest(
        customer_id="demo-ife-gold",
        touchpoint=pb.CHECKIN_AGENT,
        context={"flight": fresh_flight()},
        max_actions=20,
    )
    first = stub.Decide(request, timeout=5)
    forget_offers(service, "demo-ife-gold")  # the same inputs: the first answer's offers not counted
    second = stub.Decide(request, timeout=5)
    mandatory = [a.mandatory for a in first.actions]
    assert mandatory == sorted(mandatory, reverse=True)
    optional = [a.score for a in first.actions if not a.mandatory]
    assert optional == sorted(optional, reverse=True)
    assert [a.rank for a in first.actions] == list(range(1, len(first.actions) + 1))
    # no request_id: two separate decisions, but the same ranking for the same inputs
    assert first.decision_id != second.decision_id
    assert [a.action_id for a in first.actions[1:]] == [a.action_id for a in second.actions[1:]]
    assert first.explanation.ranking_margin >= 0


def test_max_actions_limits_the_answer(stub):
    request = pb.DecideRequest(
        customer_id="demo-italian",
        touchpoint=pb.CHECKIN_AGENT,
        context={"flight": fresh_flight()},
        max_actions=1,
    )
    assert len(stub.Decide(request, timeout=5).actions) == 1
    request.max_actions = 0
    assert len(stub.Decide(request, timeout=5).actions) == 3  # the catalogue's default
