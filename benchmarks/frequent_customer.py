"""A customer met 100,000 times decides as fast as a fresh one: the contact history's read cost does not grow.

Two customers with the same profile (a demo persona's): one fresh, one with 100,000 past contacts over the last
90 days (offers of every action at every touchpoint, declines of every action, follow-ups sent): every count
field the shipped rules read is full. The offers are older than two days, the declines and follow-ups older
than 30, so the contact policies hold back nothing they would not hold back for the fresh customer and both
decisions do the same work; only the history read differs. Each call is a Decide over gRPC to the running
server, after the forgetting of the previous call's offers (the fresh customer's whole history, the frequent one's
hourly offer counts), so the visit's offer limit never bites either. They check in for a flight no other section
books (its upgrade seats are theirs: a sold-out upgrade would make one of them decide twice). Blocks of calls
alternate between them; under the table, the answers whose ranked actions differ from the fresh customer's most
common answer are counted (0 and 0 when both did the same work).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import redis

from benchmarks.harness import Contender, Latency, interleaved
from decision.domain import Touchpoint
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.contact_history import Contact
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_store import RedisOnlineStore, RedisStoreConfig

FRESH, FREQUENT = "bench-fresh", "bench-frequent"
# The other sections' flights are AZ100-AZ998: this one's upgrade seats are the two customers' alone.
FLIGHT = "AZ1000"
PAST_CONTACTS = 100_000
EVENTS = ("offered", "offered", "offered", "declined", "sent")
FOLLOW_UPS = ("apology_letter", "card_renewal_reminder")
TOUCHPOINTS = tuple(t.name for t in Touchpoint)


def past_contacts(actions: list[str], now: float, count: int = PAST_CONTACTS, seed: int = 3) -> list[Contact]:
    """``count`` contacts over the last 90 days: offers until two days ago, the rest until 31 days ago."""
    rng = random.Random(seed)
    start = now - 90 * 86_400
    contacts = []
    for i in range(count):
        event = EVENTS[i % len(EVENTS)]
        name = rng.choice(FOLLOW_UPS) if event == "sent" else rng.choice(actions)
        end = now - (2 if event == "offered" else 31) * 86_400
        contacts.append(Contact(event, name, rng.choice(TOUCHPOINTS), start + (end - start) * i / count))
    return contacts


def prepare(redis_url: str, profile: Mapping[str, str], actions: list[str]) -> None:
    """The two customers: the profile twice, and the frequent one's history."""
    config = RedisStoreConfig(url=redis_url, timeout_ms=30_000)
    client = connect(config)
    store = RedisOnlineStore(client, config)
    now = time.time()
    store.write_profiles([{**profile, "customer_id": FRESH}, {**profile, "customer_id": FREQUENT}], written_at=now)
    client.delete(store.keys.contacts(FRESH), store.keys.contacts(FREQUENT))
    history = past_contacts(actions, now)
    for i in range(0, len(history), 5_000):
        store.record_contacts(FREQUENT, history[i : i + 5_000], now)
    client.close()


@dataclass(frozen=True)
class Measured:
    """Both customers' latencies, and how many of each one's answers ranked other actions than the fresh one's."""

    fresh: Latency
    frequent: Latency
    differing: tuple[int, int]


def measure(
    stub: pb_grpc.DecisionServiceStub, redis_url: str, actions: list[str], calls: int, key_prefix: str = "nba:"
) -> Measured:
    """Decide p50 of the fresh and the frequent customer, in alternating blocks."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = KeyLayout(key_prefix)
    hourly_offers = ["h|offered||", *(f"h|offered|{a}|" for a in actions), *(f"h|offered||{t}" for t in TOUCHPOINTS)]

    answers: dict[str, Counter[tuple[str, ...]]] = {FRESH: Counter(), FREQUENT: Counter()}

    def contender(customer_id: str) -> Contender:
        def call(i: int) -> object:
            forget_this_visit(client, keys, customer_id, hourly_offers)
            reply = stub.Decide(
                pb.DecideRequest(
                    customer_id=customer_id,
                    touchpoint=pb.CHECKIN_KIOSK,
                    context={"flight": FLIGHT, "cabin": "economy"},
                    request_id=f"{customer_id}-{i}-{time.monotonic_ns()}",
                ),
                timeout=10,
            )
            answers[customer_id][tuple(a.action_id for a in reply.actions)] += 1
            return reply

        return Contender("fresh customer" if customer_id == FRESH else "100,000-contact customer", call)

    for i in range(50):  # warm: the scripts, the connections
        contender(FRESH).call(i)
        contender(FREQUENT).call(i)
    for counted in answers.values():
        counted.clear()
    fresh, frequent = interleaved([contender(FRESH), contender(FREQUENT)], calls, in_flight=1)
    client.close()
    usual = answers[FRESH].most_common(1)[0][0]
    differing = tuple(sum(n for ranked, n in answers[c].items() if ranked != usual) for c in (FRESH, FREQUENT))
    return Measured(fresh, frequent, (differing[0], differing[1]))


def forget_this_visit(client: redis.Redis, keys: KeyLayout, customer_id: str, hourly_offers: list[str]) -> None:
    """One command either way: the fresh customer's history goes, the frequent one's hourly offer counts."""
    if customer_id == FRESH:
        client.delete(keys.contacts(customer_id))
    else:
        client.hdel(keys.contacts(customer_id), *hourly_offers)
