"""The locust touchpoint users run against the real service without a single failed call, standalone and
distributed (a master and one worker process), and the README's own locust line passes against ``nba demo``."""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from decision.app import Service
from features.redis_server import free_port
from tests.helpers import TEST_POPULATION, running_demo, service_settings

ROOT = Path(__file__).resolve().parents[2]
TOUCHPOINTS = ("CHECKIN_KIOSK", "CHECKIN_AGENT", "BRANCH_TELLER", "IVR")


def locust(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "benchmarks" / "locustfile.py"),
        "--customers",
        str(TEST_POPULATION),
        *args,
    ]


def run_options(target: str, csv_prefix: Path) -> list[str]:
    # 10 users: the weights (4, 2, 2, 2) give every touchpoint at least one
    return ["--headless", "-u", "10", "-r", "10", "-t", "6s", "--host", target, "--csv", str(csv_prefix)]


def stats(csv_prefix: Path) -> dict[str, dict[str, str]]:
    with Path(f"{csv_prefix}_stats.csv").open() as rows:
        return {row["Name"]: row for row in csv.DictReader(rows)}


def assert_served_without_failures(rows: dict[str, dict[str, str]]) -> None:
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, total
    for touchpoint in TOUCHPOINTS:
        assert int(rows[f"Decide {touchpoint}"]["Request Count"]) > 0, touchpoint
    assert int(rows["RecordOutcome"]["Request Count"]) > 0
    # Unknown ids are part of every touchpoint's mix: their decisions are named apart, not hidden among the rest.
    assert any(name.endswith("degraded: unknown_customer") and int(row["Request Count"]) > 0
               for name, row in rows.items()), sorted(rows)  # fmt: skip


@pytest.fixture(scope="module")
def service(loaded_redis, demo_model_dir, tmp_path_factory) -> Iterator[Service]:
    """The service under load on a box whose two cores also run locust and Redis: a Redis call may wait longer
    than the default 25 ms there, which would make decisions degrade and outcomes be refused (UNAVAILABLE)."""
    settings = service_settings(
        loaded_redis.url, demo_model_dir, tmp_path_factory.mktemp("data"), redis_timeout_ms=2000.0
    )
    with Service.start(settings) as running:
        yield running


def test_touchpoint_users_run_headless_without_failures(service, tmp_path):
    result = subprocess.run(
        locust(*run_options(service.grpc.target, tmp_path / "locust"), "--only-summary"),
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert_served_without_failures(stats(tmp_path / "locust"))


def test_touchpoint_users_run_distributed_without_failures(service, tmp_path):
    port = str(free_port())
    master = subprocess.Popen(
        locust(
            *run_options(service.grpc.target, tmp_path / "locust"),
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--expect-workers",
            "1",
            "--only-summary",
        ),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    worker = subprocess.Popen(
        locust("--worker", "--master-host", "127.0.0.1", "--master-port", port),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _, errors = master.communicate(timeout=180)
        assert master.returncode == 0, errors[-2000:]
        assert worker.wait(timeout=60) == 0  # the master tells its worker to quit when the run ends
    finally:
        for process in (master, worker):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert_served_without_failures(stats(tmp_path / "locust"))


def readme_locust_line() -> list[str]:
    """The README's standalone locust command line, as words."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = re.findall(r"^\.venv/bin/locust -f benchmarks/locustfile\.py .+$", readme, re.M)
    standalone = [shlex.split(line) for line in lines if "--master" not in line and "--worker" not in line]
    assert len(standalone) == 1, lines
    return standalone[0]


@pytest.fixture()
def demo_target(demo_model_dir: Path, tmp_path: Path) -> Iterator[str]:
    """``nba demo`` as a user starts it (its default settings: Redis timeout 25 ms, 10,000 customers, the rules
    reloaded when they change), on free ports with a data directory of its own; its gRPC target."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBA_")}
    env |= {"NBA_DATA_DIR": str(tmp_path / "data"), "NBA_MODEL_DIR": str(demo_model_dir)}
    with running_demo(env) as printed:
        serving = [line for line in printed if line.startswith("serving nba.v1.DecisionService on ")]
        assert serving, "the demo never said where it serves"
        yield serving[0].split(" on ", 1)[1].strip()


def test_the_readmes_locust_line_passes_against_the_demo(demo_target, tmp_path):
    """The README's command line as it stands (10 users, all started at once), for 15 s instead of 30, against
    ``nba demo``: locust exits 0 and no call failed, once retried as a touchpoint retries an UNAVAILABLE."""
    argv = readme_locust_line()
    assert argv[0] == ".venv/bin/locust" and argv[argv.index("-u") + 1] == "10" and argv[argv.index("-r") + 1] == "10"
    replaced = {"-f": str(ROOT / "benchmarks" / "locustfile.py"), "-t": "15s", "--host": demo_target,
                "--csv": str(tmp_path / "load")}  # fmt: skip
    args = [replaced.get(before, word) for before, word in zip(["", *argv], argv, strict=False)][1:]
    result = subprocess.run(
        [sys.executable, "-m", "locust", *args, "--only-summary"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_served_without_failures(stats(tmp_path / "load"))
