"""Decide latency with and without the log shipper beside the server (issue 13 point 2).

``nba serve`` runs in its own process over a Redis of its own, with the demo population; a closed loop of
``--in-flight`` gRPC callers sends ``--calls`` decisions, first with ``NBA_LOG_SHIPPER=false``, then with the
shipper on and shipping often (a batch every second, or every 2,000 entries), so that it parses and writes
Parquet during the measured window. Prints decisions/s, p50 and p99 of each run and what the shipper shipped.

    .venv/bin/python -m benchmarks.shipper_bench [--calls 6000] [--in-flight 4]

On a 2-core machine the callers, the server, Redis and the shipper share the cores: the difference is what the
shipper's CPU takes from the rest, the cost a separate process cannot avoid (a thread would add the GIL).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import redis

from benchmarks.harness import closed_loop
from decision.decision_log.shipped_files import DECISIONS, LogDirectory
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer, free_port
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from training.demo_model import load_or_train_demo_model
from training.population import generate_population

CUSTOMERS = 2_000


def measure(target: str, calls: int, in_flight: int) -> tuple[float, np.ndarray]:
    """Decisions per second and each call's latency (seconds), ``in_flight`` callers at a time, each on a channel
    of its own (harness.closed_loop gives caller ``slot`` the calls ``slot, slot + in_flight, ...``)."""
    rng = np.random.default_rng(0)
    requests = [
        pb.DecideRequest(
            customer_id=f"cust-{rng.integers(1, CUSTOMERS + 1):06d}",
            touchpoint=pb.CHECKIN_KIOSK,
            context={"flight": f"AZ{rng.integers(100, 999)}"},
            request_id=uuid.uuid4().hex,
        )
        for _ in range(calls)
    ]
    channels = [grpc.insecure_channel(target) for _ in range(in_flight)]
    stubs = [pb_grpc.DecisionServiceStub(channel) for channel in channels]
    try:
        latencies, wall = closed_loop(
            lambda i: stubs[i % in_flight].Decide(requests[i], timeout=10), range(calls), in_flight
        )
    finally:
        for channel in channels:
            channel.close()
    return len(latencies) / wall, np.array(latencies)


def run_once(redis_url: str, model_dir: Path, work: Path, shipper: bool, calls: int, in_flight: int) -> str:
    forget_the_log(redis_url)  # the shipper ships this run's decisions, not a backlog of the one before
    port = free_port()
    log_dir = work / f"log-{'on' if shipper else 'off'}"
    env = {
        **os.environ,
        "NBA_PORT": str(port),
        "NBA_HTTP_ENABLED": "false",
        "NBA_REDIS_URL": redis_url,
        "NBA_REDIS_TIMEOUT_MS": "1000",
        "NBA_MODEL_DIR": str(model_dir),
        "NBA_DATA_DIR": str(work / "data"),
        "NBA_LOG_SHIPPER": "true" if shipper else "false",
        "NBA_LOG_DIR": str(log_dir),
        "NBA_LOG_SHIP_EVERY_S": "1",
        "NBA_LOG_BATCH_ENTRIES": "2000",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = f"127.0.0.1:{port}"
    try:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
        measure(target, 400, in_flight)  # warm-up
        rate, latencies = measure(target, calls, in_flight)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    shipped = sum(1 for _ in LogDirectory(log_dir).read(DECISIONS)) if shipper else 0
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return f"| {'on' if shipper else 'off'} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {len(latencies):,} | {shipped:,} |"


def forget_the_log(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = KeyLayout()
    client.delete(keys.decisions_stream, keys.outcomes_stream, keys.follow_ups_stream, keys.log_shipper)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=6_000)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="off, on, off, on, ... (order effects show)")
    args = parser.parse_args()
    model_dir = load_or_train_demo_model(Path(".nba-data/models/demo"))
    with tempfile.TemporaryDirectory(prefix="shipper-bench-") as tmp:
        work = Path(tmp)
        with RedisServer(work / "redis") as redis_server:
            config = RedisStoreConfig(url=redis_server.url, timeout_ms=5000)
            client = connect(config)
            RedisOnlineStore(client, config).write_profiles(
                generate_population(CUSTOMERS, now=time.time()), time.time()
            )
            client.close()
            print("| shipper | decisions/s | p50 ms | p99 ms | calls | decisions shipped |")
            print("|---|---:|---:|---:|---:|---:|")
            for round_ in range(args.rounds):
                for shipper in (False, True):
                    print(
                        run_once(redis_server.url, model_dir, work / str(round_), shipper, args.calls, args.in_flight)
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
