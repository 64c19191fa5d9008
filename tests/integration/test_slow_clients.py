"""Slow HTTP clients take nothing from gRPC: a request must arrive whole within NBA_HTTP_READ_TIMEOUT_S (else 408),
at most NBA_HTTP_MAX_CONNECTIONS are open (beyond them 503), and the process's open-files limit is raised at start,
so 1,100 clients holding a body they promised do not take the descriptors that gRPC decisions need for Redis."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import grpc
import pytest
from pydantic import ValidationError

from decision.api.http_limits import connection_budget, raise_open_files_limit
from decision.app import Service
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from decision.settings import Settings
from tests.helpers import service_settings

SLOW_CLIENTS = 1_100
# One byte of a promised 100-byte body, then nothing.
HELD_BODY = b"POST /v1/decide HTTP/1.1\r\nHost: nba\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
HALF_THE_HEADERS = b"POST /v1/decide HTTP/1.1\r\nHost: nba\r\nContent-Le"
DEADLINE_S = 0.5

# Sets the soft open-files limit, then becomes the command: 1024 is the usual default soft limit.
_WITH_SOFT_LIMIT = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
os.execv(sys.argv[2], sys.argv[2:])
"""


def answer(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body) of what the server sends before it closes the connection. A connection
    refused at once is reset after its answer (the client's bytes were never read), so a reset ends it too."""
    sock.settimeout(10)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, json.loads(body)


def held(address: tuple[str, int], first_bytes: bytes = HELD_BODY) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(first_bytes)
    return sock


@contextmanager
def limited_service(redis_url: str, model_dir: Path, data_dir: Path, **limits: Any) -> Iterator[tuple[str, int]]:
    """A service in this process with these HTTP limits; yields its HTTP address."""
    with Service.start(service_settings(redis_url, model_dir, data_dir, **limits)) as service:
        assert service.http is not None
        yield service.http.host, service.http.port


# -- 1,100 slow clients, gRPC meanwhile ------------------------------------------------------------------------


class Served(NamedTuple):
    target: str
    http: tuple[str, int]
    log: Path


@contextmanager
def served_with_soft_limit(soft_limit: int, redis_url: str, model_dir: Path, data_dir: Path) -> Iterator[Served]:
    """``nba serve`` in a process of its own, started with this soft open-files limit; yields what it announced."""
    data_dir.mkdir(parents=True)
    env = {
        **os.environ,
        "NBA_REDIS_URL": redis_url,
        "NBA_MODEL_DIR": str(model_dir),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_PORT": "0",
        "NBA_HTTP_PORT": "0",
        "NBA_RULES_RELOAD_S": "0",
        "NBA_EXPLORATION_SHARE": "0",
        "NBA_REDIS_TIMEOUT_MS": "250",  # as the other tests' services: a busy test machine is not a Redis fault
        "NBA_HTTP_READ_TIMEOUT_S": "60",  # the slow clients are held for the whole test
    }
    log = data_dir / "serve.log"
    command = [sys.executable, "-c", _WITH_SOFT_LIMIT, str(soft_limit), sys.executable, "-m", "decision.cli", "serve"]
    with log.open("wb") as errors:
        process = subprocess.Popen(command, env=env, cwd=data_dir, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        assert process.stdout is not None
        serving = re.match(r"serving on (\S+) ", process.stdout.readline())
        http = re.search(r"HTTP/JSON API: (\S+)/v1/", process.stdout.readline())
        assert serving and http, log.read_text()
        url = urlsplit(http.group(1))
        assert url.hostname and url.port
        yield Served(serving.group(1), (url.hostname, url.port), log)
    finally:
        process.terminate()
        process.wait(timeout=60)


def decide_meanwhile(target: str, calls: int, outcomes: Counter[str]) -> None:
    """Decide calls one after the other on a new channel of its own, each with a 500 ms deadline."""
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.DecisionServiceStub(channel)
        for _ in range(calls):
            try:
                reply = stub.Decide(pb.DecideRequest(customer_id="demo-italian", touchpoint=pb.WEB), timeout=DEADLINE_S)
            except grpc.RpcError as error:
                outcomes[error.code().name] += 1
            else:
                outcomes["degraded" if reply.degraded else "OK"] += 1


def test_1100_slow_http_clients_take_nothing_from_grpc_decisions(loaded_redis, demo_model_dir, tmp_path):
    """Started with a soft open-files limit of 1024, as many machines do: 1,100 clients each holding one byte of
    a 100-byte body. Beyond the cap they are answered 503; Decide calls on four new channels (so new connections
    to gRPC, and from the server to Redis) are all answered within their 500 ms deadline, none of them degraded."""
    if raise_open_files_limit() < SLOW_CLIENTS + 100:
        pytest.skip(f"{SLOW_CLIENTS} client sockets do not fit in this test process's open-files limit")
    with served_with_soft_limit(1024, loaded_redis.url, demo_model_dir, tmp_path / "data") as served:
        clients = [held(served.http) for _ in range(SLOW_CLIENTS)]
        try:
            # Connections are taken in order: once the last one is answered, the server holds all it will.
            with contextlib.suppress(TimeoutError):  # (without a cap, none is ever answered)
                clients[-1].settimeout(5)
                clients[-1].recv(1, socket.MSG_PEEK)
            outcomes: list[Counter[str]] = [Counter() for _ in range(4)]
            callers = [threading.Thread(target=decide_meanwhile, args=(served.target, 50, c)) for c in outcomes]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join()
            assert sum(outcomes, Counter()) == {"OK": 200}
            refused = clients[Settings(_env_file=None).http_max_connections :]
            assert {answer(client)[0] for client in refused} == {503}
        finally:
            for client in clients:
                client.close()
        log = served.log.read_text(errors="replace")
        assert "Too many open files" not in log and "Traceback" not in log, log[-3000:]


# -- the read timeout ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_timeout(loaded_redis, demo_model_dir, tmp_path_factory) -> Iterator[tuple[str, int]]:
    """A service whose requests must arrive whole within 0.5 s."""
    data_dir = tmp_path_factory.mktemp("data")
    with limited_service(loaded_redis.url, demo_model_dir, data_dir, http_read_timeout_s=0.5) as address:
        yield address


@pytest.mark.parametrize(
    "first_bytes",
    [HELD_BODY, HALF_THE_HEADERS, b""],
    ids=["a body promised and not sent", "half the headers", "nothing at all"],
)
def test_a_request_that_does_not_arrive_whole_is_answered_408_and_closed(quick_timeout, first_bytes):
    status, headers, body = answer(held(quick_timeout, first_bytes))  # answer() reads until the server closes
    assert status == 408 and headers["connection"] == "close"
    assert body == {
        "error": {
            "code": 408,
            "status": "DEADLINE_EXCEEDED",
            "message": "the request did not arrive whole within 0.5 s",
        }
    }


def test_the_next_request_on_a_kept_alive_connection_has_the_same_time_to_arrive(quick_timeout):
    connection = HTTPConnection(*quick_timeout, timeout=10)
    connection.request("GET", "/openapi.json")
    first = connection.getresponse()
    assert first.status == 200 and first.read()
    assert connection.sock is not None
    connection.sock.sendall(HELD_BODY)
    assert answer(connection.sock)[0] == 408
    connection.close()


def test_a_request_that_arrives_whole_is_answered(quick_timeout):
    connection = HTTPConnection(*quick_timeout, timeout=10)
    body = json.dumps({"customerId": "demo-italian", "touchpoint": "WEB"})
    connection.request("POST", "/v1/decide", body, {"Content-Type": "application/json"})
    reply = connection.getresponse()
    assert reply.status == 200 and json.loads(reply.read())["decisionId"]
    connection.close()


# -- the connection cap ----------------------------------------------------------------------------------------


def test_connections_beyond_the_cap_are_answered_503_while_those_under_it_are_served(
    loaded_redis, demo_model_dir, tmp_path
):
    with limited_service(loaded_redis.url, demo_model_dir, tmp_path / "data", http_max_connections=20) as address:
        holding = [held(address, HALF_THE_HEADERS) for _ in range(19)]
        twentieth = HTTPConnection(*address, timeout=10)
        twentieth.request("GET", "/openapi.json")
        assert twentieth.getresponse().status == 200

        status, headers, body = answer(held(address))
        assert status == 503 and headers["retry-after"] == "1" and headers["connection"] == "close"
        assert body == {
            "error": {
                "code": 503,
                "status": "UNAVAILABLE",
                "message": "more than 20 HTTP connections are open; retry later",
            }
        }

        for sock in holding:
            sock.close()
        twentieth.close()
        assert served_once_there_is_room(address)


def served_once_there_is_room(address: tuple[str, int], tries: int = 100) -> bool:
    """True once a new connection is served (the server sees closed connections go a moment after they do)."""
    for _ in range(tries):
        connection = HTTPConnection(*address, timeout=10)
        try:
            connection.request("GET", "/openapi.json")
            if connection.getresponse().status == 200:
                return True
        except ConnectionError:
            pass
        finally:
            connection.close()
        threading.Event().wait(0.05)
    return False


def test_the_cap_fits_in_the_open_files_limit():
    """256 descriptors stay for gRPC and Redis; HTTP connections get at most half of the rest, the other half
    being for connections accepted in a burst and refused."""
    assert connection_budget(1000, 20_000).max_connections == 1000
    assert connection_budget(1000, 20_000).backlog == 2048
    assert connection_budget(1000, 1024).max_connections == 384
    assert connection_budget(1000, 1024).backlog == 192


# -- the settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("http_max_connections", 0),
        ("http_max_connections", -5),
        ("http_max_connections", "many"),
        ("http_read_timeout_s", 0),
        ("http_read_timeout_s", -1.0),
        ("http_read_timeout_s", "soon"),
    ],
)
def test_bad_limits_are_refused_naming_the_setting(name, value):
    with pytest.raises(ValidationError, match=name):
        Settings(_env_file=None, **{name: value})


def test_nba_serve_refuses_a_bad_limit_naming_the_setting(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "decision.cli", "serve"],
        env={**os.environ, "NBA_HTTP_READ_TIMEOUT_S": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "http_read_timeout_s" in result.stderr and "greater than 0" in result.stderr
    assert "Traceback" not in result.stderr
