"""The embedded Redis process: restarted on its port with its data when it dies, gone when its owner dies, and a
stale one left on a data directory by an earlier run stopped by the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from features.redis_server import RedisServer, free_port, redis_server_binary
from tests.helpers import gone

ROOT = Path(__file__).resolve().parents[2]


def answering_pid(url: str, timeout_s: float = 20.0, other_than: int = 0) -> int:
    """The pid of the redis-server answering on ``url`` (waiting for one other than ``other_than``)."""
    deadline = time.monotonic() + timeout_s
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        while time.monotonic() < deadline:
            try:
                pid = int(client.info("server")["process_id"])
                if pid != other_than:
                    return pid
            except redis.RedisError:
                pass
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f"no redis-server answered on {url}")


def test_a_killed_redis_is_restarted_on_its_port_with_what_it_acknowledged(tmp_path):
    changes: list[bool] = []
    with RedisServer(tmp_path / "redis", fsync="always", restart=True, on_change=changes.append) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.set("acknowledged", "yes")
        first = server.pid
        assert first and answering_pid(server.url) == first
        os.kill(first, signal.SIGKILL)
        second = answering_pid(server.url, other_than=first)
        assert server.pid == second and server.running
        assert client.get("acknowledged") == "yes"  # redis-py reconnects; the append-only file was replayed
        assert changes == [False, True]
        client.close()
    assert gone(second)


def test_a_redis_that_keeps_dying_is_restarted_later_each_time(tmp_path, caplog):
    caplog.set_level("WARNING", logger="features.redis_server")
    with RedisServer(tmp_path / "redis", restart=True) as server:
        pid = server.pid
        for _ in range(3):
            os.kill(pid, signal.SIGKILL)
            pid = answering_pid(server.url, other_than=pid)
    # A kill that lands while the watchdog still checks the new process logs "did not restart" first, then the
    # same back-off as a death: only the restarts' delays are compared.
    restarts = [r.getMessage() for r in caplog.records if "restarting in " in r.getMessage()]
    delays = [float(message.rsplit("restarting in ", 1)[1].split()[0]) for message in restarts]
    assert len(delays) == 3 and delays[0] < delays[1] < delays[2]


def test_without_restart_a_dead_redis_stays_dead(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        pid = server.pid
        os.kill(pid, signal.SIGKILL)
        assert gone(pid)
        time.sleep(1.0)  # longer than the first restart's back-off
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(server.url, socket_connect_timeout=1.0).ping()


OWNER = """
import os, signal, sys, time
from pathlib import Path
from features.redis_server import RedisServer
server = RedisServer(Path(sys.argv[1]), restart=True).start()
print(server.url, server.pid, flush=True)
while True:
    time.sleep(1)
"""


@pytest.mark.parametrize("restarted_first", [False, True], ids=["first", "restarted"])
def test_redis_dies_with_the_process_that_started_it(tmp_path, restarted_first):
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / "redis")], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        url, pid = owner.stdout.readline().split()
        redis_pid = int(pid)
        if restarted_first:  # the watchdog's restart: its redis-server must die with the owner too
            os.kill(redis_pid, signal.SIGKILL)
            redis_pid = answering_pid(url, other_than=redis_pid)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=10)
        assert gone(redis_pid), "an orphaned redis-server outlived its owner"
    finally:
        owner.kill()
        owner.wait()


def test_a_stale_redis_left_on_the_data_dir_is_stopped_by_the_next_start(tmp_path):
    data = tmp_path / "redis"
    data.mkdir()
    port = free_port()
    # As an earlier run, killed, left it: running on the data dir, with its pidfile, not a child of the new owner.
    command = [
        redis_server_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
        "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
        "--pidfile", str(data / "redis.pid"), "--logfile", str(data / "stale.log"),
    ]  # fmt: skip
    stale = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (data / "redis.pid").exists():
            assert time.monotonic() < deadline and stale.poll() is None
            time.sleep(0.05)
        answering_pid(f"redis://127.0.0.1:{port}/0")
        redis.Redis.from_url(f"redis://127.0.0.1:{port}/0").set("left-by", "earlier run")
        with RedisServer(data) as server:
            assert stale.wait(timeout=20) == 0  # SIGTERM: it wrote its append-only file and exited
            client = redis.Redis.from_url(server.url, decode_responses=True)
            assert client.get("left-by") == "earlier run"
            client.close()
    finally:
        stale.kill()
        stale.wait()


def test_a_data_dir_in_use_by_a_running_owner_is_refused(tmp_path):
    with RedisServer(tmp_path / "redis") as first:
        with pytest.raises(RuntimeError, match="in use"):
            RedisServer(tmp_path / "redis").start()
        assert first.running
