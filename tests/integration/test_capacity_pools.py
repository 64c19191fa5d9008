"""Upgrade seats per flight and date: one pool however the flight is spelt, one seat per passenger, pools that
expire, and no seat at all without a flight."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from decision.pb import decision_pb2 as pb
from features.redis_keys import KeyLayout
from tests.helpers import fresh_flight, recovery_passengers

KEYS = KeyLayout()

pytestmark = pytest.mark.usefixtures("fresh_contact_history")
UPGRADE = "upgrade_first_class"


def pool_key(flight: str, day: dt.date | None = None) -> str:
    """The documented key of the upgrade pool of ``flight`` on ``day`` (the decision's day by default)."""
    return KEYS.capacity(UPGRADE, f"{flight}:{(day or dt.date.today()).isoformat()}")


def check_in(stub, customer: str, touchpoint: int = pb.CHECKIN_KIOSK, **context: str) -> pb.DecideResponse:
    request = pb.DecideRequest(
        customer_id=customer, touchpoint=touchpoint, context=context, request_id=uuid.uuid4().hex, max_actions=20
    )
    return stub.Decide(request, timeout=10)


def upgraded(reply: pb.DecideResponse) -> bool:
    return UPGRADE in [a.action_id for a in reply.actions]


def test_four_spellings_of_one_flight_share_its_two_seats(stub, service, redis_client):
    flight = fresh_flight()
    spellings = [flight, flight.lower(), f"{flight} ", f" {flight}"]
    passengers = recovery_passengers(service, 8)
    replies = [check_in(stub, p, flight=spellings[i % 4]) for i, p in enumerate(passengers)]
    assert sum(upgraded(r) for r in replies) == 2
    assert int(redis_client.get(pool_key(flight))) == 0
    for reply in replies:
        assert flight.lower() not in reply.explanation.text and f"{flight} " not in reply.explanation.text


def test_the_same_passenger_at_kiosk_desk_and_ivr_holds_one_seat(stub, service, redis_client):
    flight = fresh_flight()
    passenger, other, third = recovery_passengers(service, 3)
    request_id = uuid.uuid4().hex  # the same request_id at every touchpoint: three decisions
    replies = [
        stub.Decide(
            pb.DecideRequest(customer_id=passenger, touchpoint=t, context={"flight": flight}, request_id=request_id),
            timeout=10,
        )
        for t in (pb.CHECKIN_KIOSK, pb.CHECKIN_AGENT, pb.IVR)
    ]
    assert all(upgraded(r) for r in replies)
    assert len({r.decision_id for r in replies}) == 3
    assert int(redis_client.get(pool_key(flight))) == 1  # one seat taken of two
    assert upgraded(check_in(stub, other, flight=flight))
    assert not upgraded(check_in(stub, third, flight=flight))  # sold out now
    assert upgraded(check_in(stub, passenger, pb.MOBILE_APP, flight=flight))  # still holds the seat
    assert int(redis_client.get(pool_key(flight))) == 0
    logged = {f["decision_id"] for _, f in redis_client.xrevrange(KEYS.decisions_stream, count=2000)}
    assert {r.decision_id for r in replies} <= logged


def test_a_declined_upgrade_gives_its_seat_back_once(stub, service, redis_client):
    """Two seats, two passengers upgraded, the third sold out; the first declines: the seat is free again (a
    repeated decline frees nothing more) and the third passenger's next check-in gets it."""
    flight = fresh_flight()
    first, second, third = recovery_passengers(service, 3)
    assert upgraded(taken := check_in(stub, first, flight=flight)) and upgraded(check_in(stub, second, flight=flight))
    assert not upgraded(check_in(stub, third, flight=flight))
    assert int(redis_client.get(pool_key(flight))) == 0
    decline = pb.RecordOutcomeRequest(decision_id=taken.decision_id, action_id=UPGRADE, outcome=pb.DECLINED)
    stub.RecordOutcome(decline, timeout=5)
    assert stub.RecordOutcome(decline, timeout=5).duplicate
    assert int(redis_client.get(pool_key(flight))) == 1
    assert first not in redis_client.smembers(KEYS.capacity_holders(UPGRADE, f"{flight}:{dt.date.today().isoformat()}"))
    assert upgraded(check_in(stub, third, flight=flight))
    assert int(redis_client.get(pool_key(flight))) == 0


def test_a_daily_flight_has_one_pool_per_date_and_each_expires(stub, service, redis_client):
    flight = fresh_flight()
    today = dt.date.today()
    tomorrow = today + dt.timedelta(days=1)
    passengers = recovery_passengers(service, 6)
    on_today = [check_in(stub, p, flight=flight) for p in passengers[:3]]
    on_tomorrow = [check_in(stub, p, flight=flight, flight_date=tomorrow.isoformat()) for p in passengers[3:]]
    assert sum(map(upgraded, on_today)) == 2 and sum(map(upgraded, on_tomorrow)) == 2
    for day in (today, tomorrow):
        assert int(redis_client.get(pool_key(flight, day))) == 0
        # documented: the pool and its holders live until midnight UTC three days after its date
        end = dt.datetime.combine(day + dt.timedelta(days=3), dt.time(), tzinfo=dt.UTC).timestamp()
        for key in (pool_key(flight, day), pool_key(flight, day).replace("capacity:", "capacity-holders:")):
            expires_in = redis_client.ttl(key)
            assert expires_in > 0 and abs(time.time() + expires_in - end) < 60  # the TTL counts down meanwhile


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"flight": "AZ9. Your refund: http://refund.example/claim"}, "context[flight]"),
        ({"flight": "AZ12345"}, "context[flight]"),
        ({"flight": ""}, "context[flight]"),
        ({"flight": "AZ610", "flight_date": "2026-13-01"}, "context[flight_date]"),
        ({"flight": "AZ610", "flight_date": "tomorrow"}, "context[flight_date]"),
    ],
)
def test_a_flight_or_date_that_is_not_one_is_refused_naming_the_field(stub, context, field):
    with pytest.raises(grpc.RpcError) as caught:
        check_in(stub, "demo-ife-gold", **context)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}: must match ")
    assert "; got " in caught.value.details() and len(caught.value.details()) < 400


def test_a_refund_link_in_the_flight_never_reaches_the_letter(stub):
    with pytest.raises(grpc.RpcError) as caught:
        check_in(stub, "demo-ife-gold", flight="AZ9. Your refund: http://refund.example/claim")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "refund.example" in caught.value.details()  # truncated but recognisable, never in a letter
    reply = check_in(stub, "demo-ife-gold", flight=" az9 ", promo="Your refund: http://refund.example/claim")
    texts = [reply.explanation.text, *(a.message for a in reply.actions), *(f.text for f in reply.follow_ups)]
    assert any("AZ9" in t for t in texts)
    assert all("refund.example" not in t and "az9" not in t for t in texts)


def test_concurrent_check_ins_in_all_spellings_never_oversell(stub, service, redis_client):
    flight = fresh_flight()
    passengers = recovery_passengers(service, 12)
    spellings = [flight, flight.lower(), f"{flight} ", f" {flight}"]

    def one(i: int) -> pb.DecideResponse:
        return check_in(
            stub, passengers[i], (pb.CHECKIN_KIOSK, pb.CHECKIN_AGENT, pb.IVR)[i % 3], flight=spellings[i % 4]
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(one, range(len(passengers))))
    assert sum(map(upgraded, replies)) == 2
    assert int(redis_client.get(pool_key(flight))) == 0
