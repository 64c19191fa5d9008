"""One way to find the running service for every command: ``nba serve`` announces itself in the data directory
(its gRPC target, HTTP address and the port its embedded Redis got), and the commands read it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from decision.discovery import SERVICE_FILE
from tests.helpers import START_TIMEOUT_S


def nba(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decision.cli", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


@pytest.fixture()
def served(demo_model_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``nba serve`` on its own embedded Redis (a port picked at start) and free ports, as a user starts it;
    and the environment every command of the test runs in: no NBA_PORT, no NBA_REDIS_URL to tell them where."""
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBA_")}
    env |= {"NBA_DATA_DIR": str(data_dir), "NBA_MODEL_DIR": str(demo_model_dir), "NBA_RULES_RELOAD_S": "0"}
    serving = env | {"NBA_PORT": "0", "NBA_HTTP_PORT": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "serve"],
        env=serving,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        assert line.startswith("serving on "), line
        process.stdout.readline()  # the teller screen's address
        yield process, env
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=START_TIMEOUT_S)


def test_every_command_finds_the_running_service_without_target_or_redis_url(served, tmp_path):
    process, env = served
    announced = json.loads((Path(env["NBA_DATA_DIR"]) / SERVICE_FILE).read_text())
    assert announced["pid"] == process.pid and announced["redis_url"].startswith("redis://127.0.0.1:")

    profiles = tmp_path / "profiles.csv"
    profiles.write_text("customer_id,domain,tier,predicted_ltv,last_name,title\nfound-1,airline,gold,20000,Neri,Ms\n")
    loaded = nba(env, "load", str(profiles))
    assert loaded.returncode == 0 and "loaded 1 profiles" in loaded.stdout, loaded.stderr
    incident = nba(env, "incident", "--customer", "found-1", "--type", "ife_broken", "--flight", "AZ604")
    assert incident.returncode == 0, incident.stderr

    decided = nba(env, "decide", "--customer", "found-1", "--touchpoint", "CHECKIN_KIOSK", "--context",
                  "flight=AZ9200", "--json")  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    decision = json.loads(decided.stdout)
    assert decision["features"]["found"] is True, "the profile loaded through the same discovery"
    action = decision["actions"][0]["action_id"]
    recorded = nba(
        env, "outcome", "--decision-id", decision["decision_id"], "--action", action, "--outcome", "IGNORED", "--json"
    )
    assert recorded.returncode == 0 and json.loads(recorded.stdout)["duplicate"] is False, recorded.stderr

    explained = nba(env, "rules", "explain", "--customer", "found-1", "--touchpoint", "CHECKIN_KIOSK")
    assert explained.returncode == 0, explained.stderr
    assert "last_incident_type = 'ife_broken'" in explained.stdout, "the customer read from the service's Redis"
    status = nba(env, "ship-log", "--status", "--json")
    assert status.returncode == 0 and isinstance(json.loads(status.stdout), dict), status.stderr


def test_describe_and_call_work_by_reflection_without_grpcurl(served):
    _, env = served
    listed = nba(env, "describe")
    assert listed.returncode == 0, listed.stderr
    assert {"nba.v1.DecisionService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    service = nba(env, "describe", "nba.v1.DecisionService").stdout
    assert "rpc Decide(nba.v1.DecideRequest) returns (nba.v1.DecideResponse);" in service
    message = nba(env, "describe", "nba.v1.DecideRequest").stdout
    assert "  string customer_id = 1;" in message and re.search(r"map<string, string> context = \d+;", message)
    unknown = nba(env, "describe", "nba.v1.Nothing")
    assert unknown.returncode == 2 and "'nba.v1.Nothing' is not a service, method, message or enum" in unknown.stderr

    called = nba(env, "call", "nba.v1.DecisionService/Decide", '{"customer_id": "walk-in", "touchpoint": "IVR"}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["decision_id"]
    from_stdin = nba(env, "call", "grpc.health.v1.Health/Check", "-", stdin="{}")
    assert json.loads(from_stdin.stdout) == {"status": "SERVING"}
    bad = nba(env, "call", "nba.v1.DecisionService/Decide", '{"customer": "x"}')
    assert bad.returncode == 2 and "request: not a nba.v1.DecideRequest in JSON" in bad.stderr


def test_a_stopped_or_killed_service_is_not_found_and_the_command_says_what_to_do(served):
    process, env = served
    service_file = Path(env["NBA_DATA_DIR"]) / SERVICE_FILE
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert service_file.exists(), "kill -9 leaves the file behind"
    # The dead service's port is not tried; with NBA_PORT 0 (a port picked at start) there is none to guess.
    decided = nba(env | {"NBA_PORT": "0"}, "decide", "--customer", "c1", "--touchpoint", "IVR")
    assert decided.returncode == 2 and "Traceback" not in decided.stderr
    assert "--target: no running service found in" in decided.stderr and "start one (nba serve" in decided.stderr
    no_redis = nba(env, "load", "missing.csv")
    assert no_redis.returncode == 2 and "--redis-url: needed" in no_redis.stderr


def test_a_stopped_service_removes_its_file(served):
    process, env = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=START_TIMEOUT_S) == 0
    assert not (Path(env["NBA_DATA_DIR"]) / SERVICE_FILE).exists()


def test_a_reader_that_goes_away_ends_the_command_quietly(served):
    _, env = served
    process = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "describe", "nba.v1.DecideResponse"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # `| head` that has already exited
    errors = process.stderr.read()
    assert process.wait(timeout=60) == 128 + signal.SIGPIPE
    assert "Traceback" not in errors and "BrokenPipeError" not in errors, errors
