"""``nba serve --workers N``: several server processes on one port, a supervisor that restarts them and stops
them together, one spool file per process (and the spools of earlier runs replayed)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
import pytest
import redis
from pydantic import ValidationError

from decision.app import Service
from decision.decision_log import unpack
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings
from features.redis_keys import KeyLayout
from tests.conftest import service_settings

KEYS = KeyLayout()

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0  # two cores shared with everything else: starting a process may be slow


@dataclass
class Served:
    """A running ``nba serve --workers N`` and what it announced."""

    process: subprocess.Popen[str]
    target: str
    pids: list[int]
    redis_url: str
    http_url: str
    log: queue.Queue[str] = field(default_factory=queue.Queue)

    def wait_for_log(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.log.get(timeout=0.5)
            except queue.Empty:
                assert self.process.poll() is None, "the supervisor exited"
                continue
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no log line matching {pattern!r}")


def serve_workers(workers: int, redis_url: str, model_dir: Path, data_dir: Path) -> Served:
    env = {
        **os.environ,
        "NBA_REDIS_URL": redis_url,
        "NBA_MODEL_DIR": str(model_dir),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_PORT": "0",
        "NBA_HTTP_PORT": "0",
        "NBA_RULES_RELOAD_S": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "serve", "--workers", str(workers)],
        env=env,
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr, stdout = process.stderr, process.stdout
    assert stderr is not None and stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    announced = stdout.readline()
    teller = stdout.readline()
    found = re.match(r"serving on (\S+) with \d+ processes, pids ([\d, ]+) \(Redis (\S+)\)", announced)
    assert found, f"not serving: {announced!r}"
    http = re.search(r"HTTP/JSON API: (\S+)/v1/", teller)
    assert http, teller
    pids = [int(pid) for pid in found.group(2).split(", ")]
    return Served(process, found.group(1), pids, found.group(3), http.group(1), lines)


def stop(served: Served) -> None:
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        served.process.wait(timeout=60)


def gone(pid: int, timeout_s: float = 30.0) -> bool:
    """True once no process ``pid`` is left (a zombie counts as gone: it runs nothing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):  # the second: reaped between the open and the read
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def decide(target: str, customer: str = "demo-italian") -> pb.DecideReply:
    with grpc.insecure_channel(target) as channel:
        # wait_for_ready: a connection the kernel gave to a process just killed is retried on another one
        return pb_grpc.DecisionServiceStub(channel).Decide(
            pb.DecideRequest(customer_id=customer, touchpoint=pb.IVR), timeout=30, wait_for_ready=True
        )


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


def a_spooled_decision(stub, redis_client, decision_id: str) -> bytes:
    """A spool line as a server process writes it while Redis is down, made from a real logged decision."""
    stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.IVR, request_id=decision_id), timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for _, entry in redis_client.xrevrange(KEYS.decisions_stream, count=50):
            if entry["request_id"] == decision_id:
                decision = orjson.loads(unpack(entry["decision"]))
                decision["decision_id"] = f"spooled-{decision_id}"
                return orjson.dumps({"decision": decision, "inputs": orjson.loads(unpack(entry["inputs"]))})
        time.sleep(0.1)
    raise AssertionError("the decision was not logged")


def logged(client: redis.Redis, decision_id: str) -> bool:
    return any(e["decision_id"] == decision_id for _, e in client.xrange(KEYS.decisions_stream))


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


def client_info_pid(url: str) -> str:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return str(client.info("server")["process_id"])
    finally:
        client.close()


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
        worker.flow.decision_log.flush()  # its first write to the log replays its spool
        assert logged(redis_client, "spooled-own-1")
    assert not logged(redis_client, "spooled-other-0")
    assert (data / "decision-spool-0.jsonl").read_bytes() == others  # process 0's, for process 0
