"""The log shipper, as a real process over a real Redis: what it ships is every entry once, whatever moment it,
or Redis, is killed at; one shipper ships at a time; a log directory it cannot write is named.

The entries are written straight to the streams with the fields the decision log writes (records.py), many at a
time, so that crashes land inside batches; tests/training/test_shipped_log.py ships the real service's log.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from decision.decision_log.shipped_files import COLUMNS, DECISIONS, LogDirectory, StreamId
from decision.decision_log.shipper import EXIT_AT_ENV, EXIT_CODE, READ_PAGE
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer, free_port
from tests.helpers import ship_log_command

KEYS = KeyLayout()


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own (append-only file, restarted when it dies): its streams hold this test's log."""
    with RedisServer(tmp_path / "redis", restart=True) as server:
        yield server


@pytest.fixture()
def client(own_redis: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(own_redis.url, decode_responses=True)
    yield c
    c.close()


def shipper_env(**overrides: str) -> dict[str, str]:
    """Small batches shipped soon, a short lease: a killed shipper's successor takes over within a second."""
    base = {"NBA_LOG_BATCH_ENTRIES": "40", "NBA_LOG_SHIP_EVERY_S": "0.1", "NBA_LOG_LEASE_S": "1"}
    return {k: v for k, v in os.environ.items() if k != EXIT_AT_ENV} | base | overrides


def ship_once(redis_url: str, log_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ship_log_command(redis_url, log_dir, "--once"),
        env=shipper_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def decision_entry(decision_id: str) -> dict[str, str]:
    """A decisions-stream entry with the fields records.stream_fields writes."""
    decision = {"decision_id": decision_id, "customer_id": "cust-000001", "actions": [{"action_id": "lounge_pass"}]}
    return {
        "decision_id": decision_id,
        "request_id": uuid.uuid4().hex,
        "customer_id": "cust-000001",
        "touchpoint": "IVR",
        "model_version": "m1",
        "rules_version": "r1",
        "catalogue_version": "c1",
        "decided_at_ms": str(int(time.time() * 1000)),
        "degraded": "",
        "actions": "lounge_pass",
        "decision": orjson.dumps(decision).decode(),
        "inputs": orjson.dumps({"features": {"tier": "gold"}, "context": {}}).decode(),
    }


def add_decisions(client: redis.Redis, n: int) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(n)]
    pipe = client.pipeline(transaction=False)
    for decision_id in ids:
        pipe.xadd(KEYS.decisions_stream, decision_entry(decision_id))
    pipe.execute()
    return ids


def shipped_ids(log_dir: Path, kind: str = DECISIONS) -> list[str]:
    return [row["decision_id"] for row in LogDirectory(log_dir).read(kind)]


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.05)


def test_ships_every_entry_once_partitioned_and_compressed_and_trims_redis(client, own_redis, tmp_path):
    ids = add_decisions(client, 130)
    client.xadd(
        KEYS.outcomes_stream,
        {"decision_id": ids[0], "action_id": "lounge_pass", "outcome": "ACCEPTED", "propensity": "0.25", "at": "1.5"},
    )
    letter = {"decision_id": ids[1], "kind": "apology", "action_id": "x", "language": "it", "text": "Ci scusi"}
    client.xadd(KEYS.follow_ups_stream, {"follow_up": orjson.dumps({**letter, "channel": "email"})})

    done = ship_once(own_redis.url, tmp_path / "log")

    assert done.returncode == 0, done.stderr
    assert "shipped 132 entries" in done.stdout
    decisions = ds.dataset(tmp_path / "log" / "decisions", partitioning="hive").to_table()
    assert sorted(decisions.column("decision_id").to_pylist()) == sorted(ids)  # each once
    assert decisions.column_names == [name for name, _ in COLUMNS[DECISIONS]] + ["date"]
    days = [StreamId.parse(stream_id).day for stream_id in decisions.column("stream_id").to_pylist()]
    assert decisions.column("date").to_pylist() == days  # partitioned by the UTC day of the entry
    files = LogDirectory(tmp_path / "log").files(DECISIONS)
    assert len(files) == 4  # batches of 40
    assert all(pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD" for _, _, path in files)
    outcome = ds.dataset(tmp_path / "log" / "outcomes", partitioning="hive").to_table().to_pylist()
    assert [(o["decision_id"], o["outcome"], o["propensity"], o["at"]) for o in outcome] == [
        (ids[0], "ACCEPTED", 0.25, 1.5)
    ]
    follow_up = ds.dataset(tmp_path / "log" / "follow-ups", partitioning="hive").to_table().to_pylist()
    assert [{k: f[k] for k in letter} | {"channel": f["channel"]} for f in follow_up] == [letter | {"channel": "email"}]
    assert [client.xlen(s) for s in (KEYS.decisions_stream, KEYS.outcomes_stream, KEYS.follow_ups_stream)] == [0, 0, 0]

    status = subprocess.run(
        [sys.executable, "-m", "decision.cli", "ship-log", "--redis-url", own_redis.url, "--status", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    streams = orjson.loads(status.stdout)["streams"]
    assert streams[DECISIONS]["shipped_total"] == 130 and streams[DECISIONS]["unshipped"] == 0
    assert streams[DECISIONS]["watermark"] == files[-1][1].__str__()


def test_a_batch_of_several_read_pages_is_one_file_of_every_entry_in_order(client, own_redis, tmp_path):
    """A batch is read (and trimmed) READ_PAGE entries at a time, so that no XRANGE holds Redis long; its file
    still holds the whole batch."""
    batch = 2 * READ_PAGE + 37
    ids = add_decisions(client, batch + 5)

    done = ship_once(own_redis.url, tmp_path / "log", NBA_LOG_BATCH_ENTRIES=str(batch))

    assert done.returncode == 0, done.stderr
    files = LogDirectory(tmp_path / "log").files(DECISIONS)
    assert [pq.ParquetFile(path).metadata.num_rows for _, _, path in files] == [batch, 5]
    assert shipped_ids(tmp_path / "log") == ids  # every entry once, in the stream's order
    assert client.xlen(KEYS.decisions_stream) == 0


@pytest.mark.parametrize("stage", ["before-rename", "after-rename", "after-trim"])
def test_a_shipper_killed_at_any_stage_loses_and_duplicates_nothing(client, own_redis, tmp_path, stage):
    ids = add_decisions(client, 100)
    log_dir = tmp_path / "log"

    killed = ship_once(own_redis.url, log_dir, **{EXIT_AT_ENV: stage})
    assert killed.returncode == EXIT_CODE, killed.stderr
    temporaries = [p for p in log_dir.rglob(".tmp-*")]
    if stage == "before-rename":
        assert temporaries and not shipped_ids(log_dir)  # written, never renamed: not shipped
    if stage == "after-rename":
        assert len(shipped_ids(log_dir)) == 40 and client.xlen(KEYS.decisions_stream) == 100  # shipped, not trimmed
    if stage == "after-trim":
        assert len(shipped_ids(log_dir)) == 40 and client.xlen(KEYS.decisions_stream) == 60

    client.delete(KEYS.log_shipper_lease)  # the killed one's lease lapses (here: at once)
    again = ship_once(own_redis.url, log_dir)
    assert again.returncode == 0, again.stderr
    assert sorted(shipped_ids(log_dir)) == sorted(ids)  # every one, once
    assert not list(log_dir.rglob(".tmp-*"))
    assert client.xlen(KEYS.decisions_stream) == 0


def test_sigkill_at_random_moments_under_load_loses_and_duplicates_nothing(client, own_redis, tmp_path):
    log_dir = tmp_path / "log"
    written: list[str] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            written.extend(add_decisions(client, 7))
            time.sleep(0.002)

    writer = threading.Thread(target=load)
    writer.start()
    rng = random.Random(13)
    kills = 0
    try:
        for _ in range(10):
            process = subprocess.Popen(
                ship_log_command(own_redis.url, log_dir),
                env=shipper_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            time.sleep(rng.uniform(0.3, 2.0))  # a random moment: taking the lease, writing, renaming or trimming
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    finally:
        stop.set()
        writer.join()
    assert kills == 10 and shipped_ids(log_dir), "the shipper shipped nothing between the kills"

    wait_for(lambda: ship_once(own_redis.url, log_dir).returncode == 0, what="the last lease lapsed")
    shipped = shipped_ids(log_dir)
    assert len(shipped) == len(set(shipped)), "an entry was shipped twice"
    assert set(shipped) == set(written)
    assert client.xlen(KEYS.decisions_stream) == 0


def test_redis_killed_while_shipping_everything_it_acknowledged_is_shipped_once(client, own_redis, tmp_path):
    log_dir = tmp_path / "log"
    acknowledged: list[str] = []
    stop = threading.Event()
    # No retries: a pipeline re-sent after a lost connection would add its entries twice, under new ids.
    writer_client = redis.Redis.from_url(own_redis.url, decode_responses=True, retry=Retry(NoBackoff(), 0))

    def load() -> None:
        while not stop.is_set():
            try:
                acknowledged.extend(add_decisions(writer_client, 5))
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                time.sleep(0.01)  # not acknowledged: not counted
            time.sleep(0.002)

    errors = tmp_path / "shipper.err"
    with errors.open("w") as err:
        process = subprocess.Popen(
            ship_log_command(own_redis.url, log_dir),
            env=shipper_env(NBA_LOG_LEASE_S="30", NBA_LOG_BATCH_ENTRIES="200"),
            stderr=err,
        )
    writer = threading.Thread(target=load)
    writer.start()
    try:
        for _ in range(3):
            before = _shipped_total(client)
            wait_for(
                lambda b=before: _shipped_total(client) >= b + 200, what=f"shipping under load: {errors.read_text()}"
            )
            old_pid = own_redis.pid
            assert old_pid is not None
            os.kill(old_pid, signal.SIGKILL)
            wait_for(lambda old=old_pid: own_redis.pid not in (None, old), what="Redis restarted")
        stop.set()
        writer.join()
        wait_for(lambda: _unshipped(client) == 0, what=f"all shipped: {errors.read_text()[-3000:]}")
    finally:
        stop.set()
        writer.join()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    shipped = shipped_ids(log_dir)
    assert len(shipped) == len(set(shipped)), "an entry was shipped twice"
    assert set(acknowledged) <= set(shipped), f"{len(set(acknowledged) - set(shipped))} acknowledged, not shipped"
    assert "Redis unavailable" in errors.read_text()  # it saw Redis go, and kept going


def _unshipped(client: redis.Redis) -> int | None:
    """Entries left in the decisions stream; None while Redis restarts."""
    try:
        return int(client.xlen(KEYS.decisions_stream))
    except (redis.ConnectionError, redis.BusyLoadingError):
        return None


def _shipped_total(client: redis.Redis) -> int:
    try:
        raw = client.get(KEYS.log_shipper)
    except (redis.ConnectionError, redis.BusyLoadingError):
        return 0
    return orjson.loads(raw)["streams"][DECISIONS]["shipped_total"] if raw else 0


def test_of_two_shippers_one_ships(client, own_redis, tmp_path):
    log_dir = tmp_path / "log"
    env = shipper_env(NBA_LOG_LEASE_S="30")
    first, second = (
        subprocess.Popen(ship_log_command(own_redis.url, log_dir), env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    )
    try:
        ids = add_decisions(client, 200)
        wait_for(lambda: sorted(shipped_ids(log_dir)) == sorted(ids), what="all shipped")
        holder = client.get(KEYS.log_shipper_lease)
        assert holder is not None
        refused = ship_once(own_redis.url, log_dir)
        assert refused.returncode == 1 and "another shipper ships" in refused.stderr
    finally:
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
    logs = [process.communicate(timeout=60)[1] for process in (first, second)]
    assert sum("holds the lease; waiting" in text for text in logs) == 1, logs
    assert sum(f":{process.pid}:" in holder for process in (first, second)) == 1


def test_an_unwritable_log_dir_is_named(own_redis, tmp_path):
    a_file = tmp_path / "not-a-directory"
    a_file.write_text("")  # root may write anywhere: a path under a file is one nobody can create

    done = ship_once(own_redis.url, a_file / "log")

    assert done.returncode == 2
    assert f"NBA_LOG_DIR={a_file / 'log'}: not writable" in done.stderr


def test_entries_trimmed_before_they_were_shipped_are_reported(client, own_redis, tmp_path):
    log_dir = tmp_path / "log"
    add_decisions(client, 10)
    assert ship_once(own_redis.url, log_dir).returncode == 0
    add_decisions(client, 50)
    # The shipper sees the first entry after its watermark, then the stream cap trims past it.
    env = shipper_env(NBA_LOG_SHIP_EVERY_S="3600", NBA_LOG_BATCH_ENTRIES="1000")
    process = subprocess.Popen(ship_log_command(own_redis.url, log_dir), env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _next_seen(client) is not None, what="the shipper looked at the stream")
        first_seen = _next_seen(client)
        client.xtrim(KEYS.decisions_stream, maxlen=20, approximate=False)
        wait_for(
            lambda: _next_seen(client) != first_seen,
            what="the shipper saw the trim",
        )
    finally:
        process.send_signal(signal.SIGTERM)
    errors = process.communicate(timeout=60)[1]
    assert "decisions entries lost to the stream cap" in errors and first_seen in errors


def _next_seen(client: redis.Redis) -> str | None:
    """The first entry after the watermark, as the shipper last saw it (its status)."""
    raw = client.get(KEYS.log_shipper)
    return orjson.loads(raw)["streams"][DECISIONS]["next"] if raw else None


def test_a_batch_across_midnight_is_a_file_per_day_and_none_is_renamed_before_all_are_written(tmp_path):
    midnight_ms = 1_796_342_400_000  # 2026-12-04 00:00:00 UTC
    entries = [(StreamId(midnight_ms + offset, 0), decision_entry(f"d{offset}")) for offset in (-2, -1, 0, 1)]
    directory = LogDirectory(tmp_path / "log")

    def killed_before_rename() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        directory.write(DECISIONS, entries, before_rename=killed_before_rename)
    assert directory.files(DECISIONS) == [] and directory.remove_temporaries(DECISIONS) == 2

    directory.write(DECISIONS, entries)
    files = directory.files(DECISIONS)
    assert [(str(first), str(last)) for first, last, _ in files] == [
        (f"{midnight_ms - 2}-0", f"{midnight_ms - 1}-0"),
        (f"{midnight_ms}-0", f"{midnight_ms + 1}-0"),
    ]
    assert ["date=2026-12-03" in files[0][2], "date=2026-12-04" in files[1][2]] == [True, True]
    assert directory.watermark(DECISIONS) == StreamId(midnight_ms + 1, 0)


@pytest.fixture()
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    """An S3-compatible server (moto's) on 127.0.0.1, with one bucket, ``nba-log``: its host:port."""
    port = free_port()
    with (tmp_path / "s3.log").open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    try:
        endpoint = f"127.0.0.1:{port}"
        s3 = pafs.S3FileSystem(
            access_key="test", secret_key="test", region="us-east-1", scheme="http", endpoint_override=endpoint,
            allow_bucket_creation=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.create_dir("nba-log")
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "s3.log").read_text()
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_log_ships_to_an_object_store_and_reads_back_once(client, own_redis, tmp_path, s3_endpoint, monkeypatch):
    """NBA_LOG_DIR as an s3:// URL: the files land in the bucket, and a second shipper finds its watermark in the
    objects' names (nothing shipped twice)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    url = f"s3://nba-log/log?endpoint_override={s3_endpoint}&scheme=http"
    ids = add_decisions(client, 130)

    first = subprocess.run(
        ship_log_command(own_redis.url, url, "--once"), env=shipper_env(), capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    ids += add_decisions(client, 10)
    second = subprocess.run(
        ship_log_command(own_redis.url, url, "--once"), env=shipper_env(), capture_output=True, text=True, timeout=120
    )

    assert second.returncode == 0, second.stderr
    assert "shipped 10 entries" in second.stdout
    assert sorted(r["decision_id"] for r in LogDirectory(url).read(DECISIONS)) == sorted(ids)
    assert len(LogDirectory(url).files(DECISIONS)) == 5  # batches of 40, then the 10
    assert client.xlen(KEYS.decisions_stream) == 0
