"""The locust gRPC user runs against the real service without a single failed call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_locust_gRPC_user_runs_headless_without_failures(service, tmp_path):
    csv = tmp_path / "locust"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "benchmarks" / "locustfile.py"),
            "--headless",
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "4s",
            "--host",
            service.grpc.target,
            "--csv",
            str(csv),
            "--only-summary",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    stats = (tmp_path / "locust_stats.csv").read_text().splitlines()
    decide = next(line.split(",") for line in stats if ",Decide," in line)
    requests, failures = int(decide[2]), int(decide[3])
    assert requests > 50 and failures == 0
