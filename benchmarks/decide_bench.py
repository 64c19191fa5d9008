"""Decide latency next to the floor measured in the same run, on the same server.

The floor is what no decision service can beat here: an empty unary RPC to the same server process (the gRPC
health check) plus one Redis GET of a 1 KB value. Each is measured at the same concurrency as Decide, and
Decide is reported as a ratio of it, so the numbers compare across machines and runs.

    python -m benchmarks.decide_bench [--calls 3000] [--write benchmarks/RESULTS.md]

The service runs in its own process (``nba serve``), as in production, with its own embedded Redis.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks import rules_bench
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_server import RedisServer, free_port
from features.redis_store import RedisOnlineStore, RedisStoreConfig, connect
from training.demo_model import load_or_train_demo_model
from training.population import PERSONAS, generate_population

TOUCHPOINTS = [t for t in pb.Touchpoint.values() if t != pb.TOUCHPOINT_UNSPECIFIED]
TARGET_P50, TARGET_P99 = 1.5, 2.0
NOTES_MARKER = "<!-- notes: kept by make bench -->"


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    per_s: float

    @classmethod
    def of(cls, samples: list[float], wall_s: float) -> Latency:
        array = np.array(samples) * 1000
        return cls(float(np.percentile(array, 50)), float(np.percentile(array, 99)), len(samples) / wall_s)


def run(call: Callable[[int], None], calls: range, in_flight: int) -> tuple[list[float], float]:
    """The calls numbered ``calls``, split over ``in_flight`` client threads; (latencies, wall seconds)."""
    samples: list[list[float]] = [[] for _ in range(in_flight)]

    def worker(slot: int) -> None:
        for i in calls[slot::in_flight]:
            started = time.perf_counter()
            call(i)
            samples[slot].append(time.perf_counter() - started)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(in_flight)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [s for slot in samples for s in slot], time.perf_counter() - wall


def interleaved(
    kinds: dict[str, Callable[[int], None]], calls: int, in_flight: int, block: int = 100
) -> dict[str, Latency]:
    """Each kind of call measured in alternating blocks, so drift in the machine's speed hits all alike."""
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    walls = dict.fromkeys(kinds, 0.0)
    for start in range(0, calls, block):
        for kind, call in kinds.items():
            latencies, wall = run(call, range(start, min(calls, start + block)), in_flight)
            samples[kind] += latencies
            walls[kind] += wall
    return {k: Latency.of(samples[k], walls[k]) for k in kinds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--write", type=Path, default=None, help="write the results table here (markdown)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nba-bench-"))
    model_dir = load_or_train_demo_model(Path(".nba-data/models/demo"))
    with RedisServer(work / "redis") as redis_server:
        config = RedisStoreConfig(url=redis_server.url, timeout_ms=5000)
        store = RedisOnlineStore(connect(config), config)
        population = generate_population(args.customers, now=time.time())
        store.write_profiles(population, written_at=time.time())
        customer_ids = [p["customer_id"] for p in population]

        port = free_port()
        env = dict(
            os.environ,
            NBA_PORT=str(port),
            NBA_REDIS_URL=redis_server.url,
            NBA_MODEL_DIR=str(model_dir),
            NBA_DATA_DIR=str(work / "data"),
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "decision.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            target = f"127.0.0.1:{port}"
            with grpc.insecure_channel(target) as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
                rows = measure(channel, redis_server.url, customer_ids, args.calls)
        finally:
            server.terminate()
            server.wait(timeout=10)

    table = render(rows, args.calls) + "\n" + rules_bench.render(rules_bench.measure(2000), 2000)
    print(table)
    if args.write:
        # Everything from the notes marker on is written by people, not by the benchmark: keep it.
        notes = ""
        if args.write.exists() and NOTES_MARKER in (old := args.write.read_text()):
            notes = old[old.index(NOTES_MARKER) :]
        args.write.write_text(table + "\n" + (notes or NOTES_MARKER + "\n"))
    return 0


def measure(channel: grpc.Channel, redis_url: str, customers: list[str], calls: int) -> list[tuple]:
    decide = pb_grpc.DecisionServiceStub(channel).Decide
    check = health_pb2_grpc.HealthStub(channel).Check
    empty = health_pb2.HealthCheckRequest(service="")
    client = redis.Redis.from_url(redis_url)
    client.set("bench:1kb", os.urandom(1024))
    rng = random.Random(7)
    requests = []
    for i in range(calls):
        customer = PERSONAS[i % 3] if i % 10 == 0 else rng.choice(customers)
        context = {"flight": f"AZ{rng.randrange(100, 999)}", "cabin": "economy"}
        requests.append(
            pb.DecideRequest(
                customer_id=customer,
                touchpoint=rng.choice(TOUCHPOINTS),
                context=context,
                request_id=f"bench-{time.time_ns()}-{i}",
            )
        )

    # warm up every path (connections, model, rules, Redis scripts)
    for i in range(300):
        decide(requests[i % len(requests)], timeout=5)
        check(empty, timeout=5)
        client.get("bench:1kb")

    rows = []
    for in_flight in (1, 2, 8):
        fresh = [
            pb.DecideRequest(
                customer_id=r.customer_id,
                touchpoint=r.touchpoint,
                context=r.context,
                request_id=f"{r.request_id}-{in_flight}",
            )
            for r in requests
        ]
        result = interleaved(
            {
                "rpc": lambda i: check(empty, timeout=5),
                "get": lambda i: client.get("bench:1kb"),
                "decide": lambda i, fresh=fresh: decide(fresh[i], timeout=5),
            },
            calls,
            in_flight,
        )
        rows.append((in_flight, result["rpc"], result["get"], result["decide"]))
    client.close()
    return rows


def render(rows: list[tuple], calls: int) -> str:
    lines = [
        "# Decide latency against the floor",
        "",
        f"Run on {dt.date.today().isoformat()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{calls} calls per row, client and server (separate processes) and Redis on one machine.",
        "Floor = an empty unary RPC to the same server (gRPC health check) + one Redis GET of 1 KB, measured at the",
        "same concurrency in the same run, in blocks of 100 calls alternating with Decide's so that drift in the",
        "machine's speed hits both alike. `make bench` regenerates this file.",
        "",
        "| in flight | empty RPC p50 / p99 ms | Redis GET p50 / p99 ms | floor p50 / p99 ms | Decide p50 / p99 ms "
        "| Decide/s | p50 ratio | p99 ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for in_flight, rpc, get, dec in rows:
        floor50, floor99 = rpc.p50_ms + get.p50_ms, rpc.p99_ms + get.p99_ms
        r50, r99 = dec.p50_ms / floor50, dec.p99_ms / floor99
        lines.append(
            f"| {in_flight} | {rpc.p50_ms:.3f} / {rpc.p99_ms:.3f} | {get.p50_ms:.3f} / {get.p99_ms:.3f} "
            f"| {floor50:.3f} / {floor99:.3f} | {dec.p50_ms:.3f} / {dec.p99_ms:.3f} | {dec.per_s:,.0f} "
            f"| {r50:.2f}x{' ✓' if r50 <= TARGET_P50 else ''} | {r99:.2f}x{' ✓' if r99 <= TARGET_P99 else ''} |"
        )
    lines += ["", f"Targets: p50 at most {TARGET_P50}x the floor, p99 at most {TARGET_P99}x (✓ = met).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
