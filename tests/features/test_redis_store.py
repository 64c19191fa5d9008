"""The Redis online store against a real Redis server: bulk loads, real-time writes, freshness, declines."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.bulk_load import BulkLoadError, load_file
from features.contact_history import Contact, ContactQuery, Counter
from features.online_store import FeatureStoreUnavailable
from features.redis_client import connect
from features.redis_server import RedisServer, free_port
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from features.schema import FeatureSchema


@pytest.fixture()
def store(redis_server: RedisServer) -> RedisOnlineStore:
    config = RedisStoreConfig(url=redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:6]}:")
    return RedisOnlineStore(connect(config), config)


def test_bulk_load_csv_then_read(store: RedisOnlineStore, tmp_path: Path) -> None:
    csv = tmp_path / "profiles.csv"
    csv.write_text("customer_id,tier,predicted_ltv,unknown_column\nc1,gold,5000,x\nc2,,12.5,y\n")
    written_at = time.time() - 60
    assert load_file(csv, store, FeatureSchema.load(), written_at=written_at) == 2
    record = store.read("c1", time.time())
    assert record.found and record.raw == {"tier": "gold", "predicted_ltv": "5000"}
    assert record.written_at == pytest.approx(written_at)
    assert store.read("c2", time.time()).raw == {"predicted_ltv": "12.5"}  # empty cells are not stored
    assert not store.read("c3", time.time()).found


def test_bulk_load_parquet_replaces_the_profile(store: RedisOnlineStore, tmp_path: Path) -> None:
    store.write_profiles([{"customer_id": "p1", "tier": "gold", "age": "30"}], written_at=time.time())
    path = tmp_path / "profiles.parquet"
    pq.write_table(pa.table({"customer_id": ["p1"], "age": [31], "in_arrears": [True]}), path)
    load_file(path, store, FeatureSchema.load())
    assert store.read("p1", time.time()).raw == {"age": "31", "in_arrears": "1"}


def test_bulk_load_refuses_a_file_without_ids(store: RedisOnlineStore, tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("id,tier\n1,gold\n")
    with pytest.raises(BulkLoadError, match="column 'customer_id' is missing; columns found: id, tier"):
        load_file(csv, store, FeatureSchema.load())
    csv.write_text("customer_id,tier\nc1,gold\n,silver\n")
    with pytest.raises(BulkLoadError, match="row 2: customer_id is empty"):
        load_file(csv, store, FeatureSchema.load())


def test_real_time_update_keeps_the_batch_time(store: RedisOnlineStore) -> None:
    batch_time = time.time() - 3600
    store.write_profiles([{"customer_id": "u1", "tier": "silver"}], written_at=batch_time)
    store.update("u1", {"last_incident_type": "delay"}, at=time.time())
    record = store.read("u1", time.time())
    assert record.raw == {"tier": "silver", "last_incident_type": "delay"}
    assert record.written_at == pytest.approx(batch_time)  # an incident does not make old features fresh


COUNTERS = ContactQuery(
    (
        Counter("declines_30d__lounge_pass", "declined", 30 * 86_400, name="lounge_pass"),
        Counter("declines_100d__lounge_pass", "declined", 90 * 86_400, name="lounge_pass"),
        Counter("offers_4h", "offered", 4 * 3600),
        Counter("offers_1d__IVR", "offered", 86_400, touchpoint="IVR"),
        Counter("offers_1d__WEB", "offered", 86_400, touchpoint="WEB"),
    )
)


def test_contact_counters_are_read_in_the_feature_read(store: RedisOnlineStore) -> None:
    now = time.time()
    store.record_contacts(
        "d1",
        [
            Contact("declined", "lounge_pass", "CHECKIN_KIOSK", now - 40 * 86_400),
            Contact("declined", "lounge_pass", "CHECKIN_AGENT", now - 86_400),
            Contact("offered", "extra_bag", "IVR", now - 60),
            Contact("offered", "fast_track", "IVR", now - 60),
            Contact("offered", "extra_bag", "WEB", now - 10 * 3600),
        ],
        now,
    )
    assert store.read("d1", now, contacts=COUNTERS).contact_counts == {
        "declines_30d__lounge_pass": 1,
        "declines_100d__lounge_pass": 2,
        "offers_4h": 2,
        "offers_1d__IVR": 2,
        "offers_1d__WEB": 1,
    }
    assert store.read("d1", now).contact_counts == {}  # no counter asks: no history read
    assert 0 < store.client.ttl(store.keys.contacts("d1")) <= 91 * 86_400  # expires by itself
    assert store.read("nobody", now, contacts=COUNTERS).contact_counts == {}


def test_the_contact_history_keeps_a_bounded_number_of_buckets(store: RedisOnlineStore) -> None:
    """A customer met every hour for 200 days: each count field keeps 49 hours or 91 days, whatever the history."""
    start = time.time() - 200 * 86_400
    for day in range(200):
        at = start + day * 86_400
        events = [Contact("offered", "extra_bag", "IVR", at + h * 3600) for h in range(24)]
        store.record_contacts("d3", events, at + 23 * 3600)
    fields = store.client.hgetall(store.keys.contacts("d3"))
    assert len(fields) == 6  # (hour, day) x (offers, of extra_bag, at the IVR)
    hours, days = (window_count_entries(fields[f"{r}|offered||"]) for r in "hd")
    assert 24 <= hours <= 49 and days <= 91
    now = start + 199 * 86_400 + 23 * 3600
    assert store.read("d3", now, contacts=COUNTERS).contact_counts["offers_4h"] == 5  # 4 hours and the current one


def window_count_entries(value: str) -> int:
    return (len(value) - 8) // 14  # 8 digits of base, 14 per bucket (features/contact_history.py)


def test_a_stranger_in_a_count_field_counts_nothing(store: RedisOnlineStore) -> None:
    now = time.time()
    key = store.keys.contacts("d2")
    store.client.hset(key, mapping={"h|offered||": "garbage 12:3 x:y", "h|offered||IVR": "zz" * 11})
    counts = store.read("d2", now, contacts=COUNTERS).contact_counts
    assert counts["offers_4h"] == 0 and counts["offers_1d__IVR"] == 0
    store.record_contacts("d2", [Contact("offered", "extra_bag", "WEB", now)], now)  # a write starts it afresh
    assert store.read("d2", now, contacts=COUNTERS).contact_counts["offers_1d__WEB"] == 1


def test_unreachable_redis_fails_fast_and_then_is_skipped(tmp_path: Path) -> None:
    config = RedisStoreConfig(url=f"redis://127.0.0.1:{free_port()}/0", timeout_ms=50, retry_after_ms=60_000)
    store = RedisOnlineStore(connect(config), config)
    started = time.monotonic()
    with pytest.raises(FeatureStoreUnavailable):
        store.read("c1", time.time())
    with pytest.raises(FeatureStoreUnavailable, match="skipped after a recent failure"):
        store.read("c1", time.time())
    assert time.monotonic() - started < 0.5


def test_a_read_cut_short_by_the_callers_deadline_does_not_open_the_breaker(tmp_path: Path) -> None:
    """A stopped Redis (SIGSTOP: connections taken, nothing answered). A read given less time than the store's
    timeout fails as unavailable but opens no breaker: the next caller, with more time, still tries Redis. A
    read that waited the store's own timeout does open it."""
    server = RedisServer(tmp_path / "redis").start()
    config = RedisStoreConfig(url=server.url, timeout_ms=300, retry_after_ms=60_000)
    store = RedisOnlineStore(connect(config), config)
    store.write_profiles([{"customer_id": "c1", "tier": "gold"}], written_at=time.time())
    assert store.read("c1", time.time(), timeout_s=0.2).raw == {"tier": "gold"}  # bounded, and in time
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    try:
        for _ in range(2):  # the second on a new connection: the first's was dropped with its half-read reply
            started = time.monotonic()
            with pytest.raises(FeatureStoreUnavailable, match="cut short"):
                store.read("c1", time.time(), timeout_s=0.05)
            assert time.monotonic() - started < 0.25  # not the store's 300 ms in a connection handshake
        assert not store.breaker.open
        with pytest.raises(FeatureStoreUnavailable, match="read failed"):
            store.read("c1", time.time(), timeout_s=1.0)  # longer than the store's timeout: that one applies
        assert store.breaker.open
    finally:
        os.kill(server.pid, signal.SIGCONT)
        store.client.close()
        server.stop()


def test_the_breaker_logs_the_failure_that_opened_it_once_and_names_it_to_skipping_callers(tmp_path, caplog):
    """A Redis that keeps failing: one warning naming the failure, not one per attempt; the callers that skip
    Redis meanwhile say why; its return is logged once too."""
    caplog.set_level("INFO", logger="features.redis_client")
    server = RedisServer(tmp_path / "redis").start()
    config = RedisStoreConfig(url=server.url, timeout_ms=50, retry_after_ms=20)
    store = RedisOnlineStore(connect(config), config)
    store.read("c1", time.time())
    server.stop()
    try:
        skipped = []
        for _ in range(10):
            try:
                store.read("c1", time.time())
            except FeatureStoreUnavailable as exc:
                if "skipped" in str(exc):
                    skipped.append(str(exc))
            time.sleep(0.01)
        assert store.breaker.failure and store.breaker.opened == 1
        assert skipped and all(store.breaker.failure in reason for reason in skipped)
        server.start()
        deadline = time.monotonic() + 5
        while store.breaker.failure and time.monotonic() < deadline:
            time.sleep(0.03)
            with contextlib.suppress(FeatureStoreUnavailable):
                store.read("c1", time.time())
    finally:
        store.client.close()
        server.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if m.startswith("Redis failed")]) == 1, messages
    assert len([m for m in messages if m.startswith("Redis answers again")]) == 1, messages
