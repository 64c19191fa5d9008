"""``nba serve --workers N``: several server processes on one port, a supervisor that restarts them and stops
them together, one spool file per process (and the spools of earlier runs replayed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from pydantic import ValidationError

from decision.app import Service
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings
from features.redis_keys import KeyLayout
from tests.helpers import (
    Served,
    a_spooled_decision,
    client_info_pid,
    decide,
    gone,
    logged,
    parent_of,
    serve_workers,
    service_settings,
    stop,
)

KEYS = KeyLayout()

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def two_workers(loaded_redis, demo_model_dir, tmp_path) -> Iterator[Served]:
    served = serve_workers(2, loaded_redis.url, demo_model_dir, tmp_path / "data")
    yield served
    stop(served)


def test_two_processes_serve_one_port_and_each_is_restarted_when_killed(two_workers):
    served = two_workers
    supervisor = served.process.pid
    assert len(set(served.pids)) == 2 and all(parent_of(pid) == supervisor for pid in served.pids)
    assert decide(served.target).explanation.language == "it"
    body = json.dumps({"customerId": "demo-italian", "touchpoint": "IVR"}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{served.http_url}/v1/decide", data=body), timeout=30) as r:
        assert json.loads(r.read())["explanation"]["language"] == "it"  # the HTTP port is shared too

    # Kill each original process in turn: the service keeps answering, so the other one serves the port,
    # and the supervisor starts a successor under the same index.
    successors = []
    for index, pid in enumerate(served.pids):
        os.kill(pid, signal.SIGKILL)
        served.wait_for_log(rf"server process {index} \(pid {pid}\) exited with -9")
        assert decide(served.target).explanation.language == "it"
        restarted = served.wait_for_log(rf"server process {index} restarted \(pid (\d+)\)")
        successor = int(restarted.group(1))
        served.wait_for_log(rf"server process {index} \(pid {successor}\) serves")
        assert successor not in served.pids and parent_of(successor) == supervisor
        successors.append(successor)
    assert decide(served.target, "demo-ife-gold").decision_id

    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=60) == 0
    assert all(gone(pid) for pid in [*served.pids, *successors])


def test_the_supervisor_starts_redis_replays_earlier_spools_and_stops_everything(
    stub, redis_client, demo_model_dir, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    # An earlier run with three processes left two spools; this one runs two processes (no index 2).
    (data / "decision-spool-0.jsonl").write_bytes(a_spooled_decision(stub, redis_client, "earlier-0") + b"\n")
    (data / "decision-spool-2.jsonl").write_bytes(a_spooled_decision(stub, redis_client, "earlier-2") + b"\n")
    served = serve_workers(2, "", demo_model_dir, data)
    try:
        redis_pid = int(client_info_pid(served.redis_url))
        assert parent_of(redis_pid) == served.process.pid
        client = redis.Redis.from_url(served.redis_url, decode_responses=True)
        assert logged(client, "spooled-earlier-0") and logged(client, "spooled-earlier-2")
        assert (data / "decision-spool-2.jsonl").read_bytes() == b""
        assert "unknown_customer" in decide(served.target).degraded_codes  # its own, empty, Redis
        client.close()
    finally:
        stop(served)
    assert served.process.returncode == 0
    assert all(gone(pid) for pid in [*served.pids, redis_pid])


def test_one_process_replays_the_spools_of_an_earlier_run_with_several(
    stub, redis_client, loaded_redis, demo_model_dir, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    (data / "decision-spool-1.jsonl").write_bytes(a_spooled_decision(stub, redis_client, "earlier-1") + b"\n")
    with Service.start(service_settings(loaded_redis.url, demo_model_dir, data)):
        assert logged(redis_client, "spooled-earlier-1")


def test_zero_workers_is_refused_naming_the_setting(tmp_path):
    with pytest.raises(ValidationError, match="workers"):
        Settings(_env_file=None, workers=0)
    result = subprocess.run(
        [sys.executable, "-m", "decision.cli", "serve"],
        env={**os.environ, "NBA_WORKERS": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "workers" in result.stderr and "greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_process_replays_its_own_spool_and_no_other(
    stub, redis_client, loaded_redis, demo_model_dir, tmp_path
):
    data = tmp_path / "data"
    data.mkdir()
    (data / "decision-spool-1.jsonl").write_bytes(a_spooled_decision(stub, redis_client, "own-1") + b"\n")
    others = a_spooled_decision(stub, redis_client, "other-0") + b"\n"
    (data / "decision-spool-0.jsonl").write_bytes(others)
    with Service.start(service_settings(loaded_redis.url, demo_model_dir, data), worker=1) as worker:
        with grpc.insecure_channel(worker.grpc.target) as channel:
            pb_grpc.DecisionServiceStub(channel).Decide(
                pb.DecideRequest(customer_id="cust-000001", touchpoint=pb.WEB), timeout=10
            )
        worker.flush_log()  # its first write to the log replays its spool
        assert logged(redis_client, "spooled-own-1")
    assert not logged(redis_client, "spooled-other-0")
    assert (data / "decision-spool-0.jsonl").read_bytes() == others  # process 0's, for process 0
