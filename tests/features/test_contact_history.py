"""Contact counters kept as time buckets: what a window counts, and the Redis script and this process agreeing."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.contact_history import (
    DAY_S,
    HOUR_S,
    Contact,
    ContactBuckets,
    ContactQuery,
    Counter,
    count_contacts,
    encode,
    window_count,
)
from features.redis_client import connect
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig

NOW = 1_780_000_000.0  # a Thursday, 20:26 UTC
VISIT = Counter("offers_4h", "offered", 4 * HOUR_S)
AT_IVR = Counter("offers_1d__IVR", "offered", DAY_S, touchpoint="IVR")
DECLINES = Counter("declines_30d__lounge_pass", "declined", 30 * DAY_S, name="lounge_pass")
LETTERS = Counter("sent_90d", "sent", 90 * DAY_S)
QUERY = ContactQuery((VISIT, AT_IVR, DECLINES, LETTERS))


def offer(ago_s: float, touchpoint: str = "WEB", action: str = "extra_bag") -> Contact:
    return Contact("offered", action, touchpoint, NOW - ago_s)


def decline(ago_s: float) -> Contact:
    return Contact("declined", "lounge_pass", "CHECKIN_KIOSK", NOW - ago_s)


def test_a_window_counts_whole_the_buckets_it_touches() -> None:
    """offers_4h at 20:26 counts the offers since 16:00; not those of 15:59."""
    since = NOW - NOW % HOUR_S - 4 * HOUR_S  # 16:00

    def at(t: float) -> Contact:
        return offer(NOW - t)

    assert count_contacts([at(since), at(since + 1), at(NOW - 4 * HOUR_S), at(NOW)], QUERY, NOW)["offers_4h"] == 4
    assert count_contacts([at(since - 1), at(since + 60)], QUERY, NOW)["offers_4h"] == 1


def test_a_count_is_never_below_the_exact_count_and_at_most_one_bucket_above() -> None:
    history = [decline(d * DAY_S + 3600) for d in range(40)]  # one decline a day for 40 days
    exact = sum(1 for c in history if c.at >= NOW - 30 * DAY_S)
    assert exact <= count_contacts(history, QUERY, NOW)["declines_30d__lounge_pass"] <= exact + 1


def test_counters_narrow_to_their_action_or_touchpoint_and_ignore_the_future() -> None:
    history = [offer(60, "IVR"), offer(120, "IVR", "fast_track"), offer(180, "WEB"), offer(-7200, "IVR")]
    counts = count_contacts(history, QUERY, NOW)
    assert counts == {"offers_4h": 3, "offers_1d__IVR": 2, "declines_30d__lounge_pass": 0, "sent_90d": 0}


def test_events_older_than_any_window_are_not_kept() -> None:
    buckets = ContactBuckets()
    buckets.add([decline(100 * DAY_S), offer(3 * DAY_S)], NOW)
    values = dict(zip(QUERY.fields, buckets.values(QUERY), strict=True))
    assert values["d|declined|lounge_pass|"] is None  # 100 days ago: no window reads it
    assert values["h|offered||"] is None  # three days ago: beyond the hours kept


def test_a_value_not_in_the_format_counts_nothing() -> None:
    for stranger in ("", "garbage", "0" * 8 + "zz" * 7, "0" * 9, "1:2 3:4"):
        assert window_count(stranger, 0, 10**6) == 0
    assert window_count(encode({10: 2, 12: 3}, base=5), 0, 11) == 2


@pytest.fixture(scope="module")
def store(redis_server: RedisServer) -> RedisOnlineStore:
    config = RedisStoreConfig(url=redis_server.url, key_prefix=f"h{uuid.uuid4().hex[:6]}:")
    return RedisOnlineStore(connect(config), config)


events = st.lists(
    st.tuples(
        st.sampled_from(["offered", "declined", "sent"]),
        st.sampled_from(["extra_bag", "lounge_pass"]),
        st.sampled_from(["IVR", "WEB"]),
        st.floats(min_value=-2 * HOUR_S, max_value=95 * DAY_S),  # how long ago; a little in the future too
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(batches=st.lists(events, min_size=1, max_size=4), later_s=st.floats(min_value=0, max_value=60 * DAY_S))
def test_redis_keeps_and_counts_as_this_process_does(
    store: RedisOnlineStore, batches: list[list[tuple[str, str, str, float]]], later_s: float
) -> None:
    """Batches written at successive times, out of order inside each: the Lua script and ContactBuckets hold the
    same values, so the service and the offline runs (rule scenarios, nba rules test) count alike."""
    customer = uuid.uuid4().hex
    query = ContactQuery(
        (
            VISIT,
            AT_IVR,
            Counter("declines_30d__lounge_pass", "declined", 30 * DAY_S, name="lounge_pass"),
            Counter("declines_2d__extra_bag", "declined", 2 * DAY_S, name="extra_bag"),
            Counter("sent_90d", "sent", 90 * DAY_S),
            Counter("offers_60d", "offered", 60 * DAY_S),
        )
    )
    here = ContactBuckets()
    for step, batch in enumerate(batches):
        now = NOW + step * 7 * HOUR_S
        contacts = [Contact(event, name, touchpoint, now - ago) for event, name, touchpoint, ago in batch]
        store.record_contacts(customer, contacts, now)
        here.add(contacts, now)
    now = NOW + len(batches) * 7 * HOUR_S + later_s
    stored = store.client.hmget(store.keys.contacts(customer), list(query.fields))
    assert stored == here.values(query)
    assert store.read(customer, now, contacts=query).contact_counts == (here.counts(query, now) if any(stored) else {})
