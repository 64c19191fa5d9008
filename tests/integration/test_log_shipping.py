"""``nba serve`` runs the log shipper beside it, as a process of its own: the log it answers reaches the Parquet
files; the shipper dies with the server; a log directory it cannot write is named in the log while the service
keeps deciding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import redis

from decision.decision_log.shipped_files import DECISIONS, LogDirectory
from decision.decision_log.shipper import SHIPPER_NICENESS, read_status
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from tests.integration.test_workers import gone
from training.population import generate_population


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        config = RedisStoreConfig(url=server.url, timeout_ms=5000)
        client = connect(config)
        RedisOnlineStore(client, config).write_profiles(generate_population(20, now=time.time()), time.time())
        client.close()
        yield server


@contextmanager
def nba_serve(
    redis_url: str, model_dir: Path, tmp_path: Path, log_dir: Path, ship_every_s: float = 0.2
) -> Iterator[tuple[subprocess.Popen, str]]:
    """``nba serve`` over ``redis_url``, its log shipped to ``log_dir`` ``ship_every_s`` after each decision;
    yields the process and its gRPC target. Its stderr goes to tmp_path/serve.err."""
    env = {
        **os.environ,
        "NBA_REDIS_URL": redis_url,
        "NBA_PORT": "0",
        "NBA_HTTP_ENABLED": "false",
        "NBA_MODEL_DIR": str(model_dir),
        "NBA_DATA_DIR": str(tmp_path / "data"),
        "NBA_LOG_DIR": str(log_dir),
        "NBA_LOG_SHIP_EVERY_S": str(ship_every_s),
        "NBA_EXPLORATION_SHARE": "0",
    }
    with (tmp_path / "serve.err").open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "decision.cli", "serve"], env=env, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("serving on "), line
            yield process, line.split()[2]
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)


def decide(target: str, n: int) -> list[pb.DecideResponse]:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        return [
            stub.Decide(
                pb.DecideRequest(customer_id=f"cust-{i % 20 + 1:06d}", touchpoint=pb.IVR, request_id=uuid.uuid4().hex),
                timeout=10,
            )
            for i in range(n)
        ]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def shipper_of(pid: int, timeout_s: float = 30.0) -> int:
    """The pid of the log shipper ``pid`` started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children(pid):
            if b"decision.decision_log.shipper" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        time.sleep(0.05)
    raise AssertionError(f"no log shipper beside pid {pid}")


def test_nba_serve_ships_its_log_and_its_shipper_dies_with_it(own_redis, demo_model_dir, tmp_path):
    log_dir = tmp_path / "log"
    with nba_serve(own_redis.url, demo_model_dir, tmp_path, log_dir) as (server, target):
        answered = {reply.decision_id for reply in decide(target, 30)}
        deadline = time.monotonic() + 60
        while not answered <= {r["decision_id"] for r in LogDirectory(log_dir).read(DECISIONS)}:
            assert time.monotonic() < deadline, "the decisions answered were not shipped within 60 s"
            time.sleep(0.1)
        shipper = shipper_of(server.pid)
        assert niceness(shipper) - niceness(server.pid) == SHIPPER_NICENESS  # the decisions get the cores first
        server.send_signal(signal.SIGKILL)
        server.wait()
        assert gone(shipper), "the log shipper outlived the server"


def test_a_stopped_server_leaves_its_whole_log_in_the_files(own_redis, demo_model_dir, tmp_path):
    """SIGTERM: the server finishes its calls and writes its log to Redis, then its shipper ships what is left,
    due or not, and Redis holds none of it."""
    log_dir = tmp_path / "log"
    client = redis.Redis.from_url(own_redis.url)
    with nba_serve(own_redis.url, demo_model_dir, tmp_path, log_dir, ship_every_s=3600) as (server, target):
        answered = [reply.decision_id for reply in decide(target, 40)]
        deadline = time.monotonic() + 30
        while read_status(client) is None:  # the shipper has made its first pass: it is running
            assert time.monotonic() < deadline, "the log shipper did not start"
            time.sleep(0.05)
        assert not LogDirectory(log_dir).files(DECISIONS)  # nothing due yet: an hour's batch, 40 of 10,000
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    assert sorted(r["decision_id"] for r in LogDirectory(log_dir).read(DECISIONS)) == sorted(answered)
    assert client.xlen(KeyLayout().decisions_stream) == 0
    client.close()
    assert "shipped the last 40 entries" in (tmp_path / "serve.err").read_text()


def test_an_unwritable_log_dir_is_named_and_the_service_still_decides(own_redis, demo_model_dir, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")  # a path under a file: not writable, even by root
    with nba_serve(own_redis.url, demo_model_dir, tmp_path, a_file / "log") as (_server, target):
        deadline = time.monotonic() + 30
        while "not writable" not in (tmp_path / "serve.err").read_text():
            assert time.monotonic() < deadline, "no error about the log directory"
            time.sleep(0.1)
        replies = decide(target, 5)
    assert all(r.decision_id for r in replies)
    assert not any(r.degraded for r in replies), [r.degraded_reason for r in replies]
    assert f"NBA_LOG_DIR={a_file / 'log'}: not writable" in (tmp_path / "serve.err").read_text()
