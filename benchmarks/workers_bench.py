"""Saturated Decide throughput of 1 and of 2 server processes on one port (``nba serve --workers N``).

    python -m benchmarks.workers_bench [--seconds 10] [--in-flight 16] [--customers 10000]

A closed loop: ``in_flight`` calls are always outstanding, spread over separate client processes (grpc.aio), so a
single client's GIL does not cap the rate. Each call loop has a connection of its own, as separate touchpoints
would: the kernel spreads connections (not calls) over the processes sharing the port. Each server process count
runs against the same Redis and population, with the same model, for the same time after a warm-up; the result
is decisions per second, and the ratio of 2 processes to 1 is the number to read.

Caveat of these machines: there are only 2 cores and the client processes, the server processes and Redis all
share them, so the client takes part of the CPU the servers would use, and 2 server processes can never give 2x.
Absolute rates drift from run to run with whatever else runs; the ratio within one run is steadier.

``measure_throughput`` is the function a harness calls; ``compare`` runs it for several process counts.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc

# The touchpoint mix of benchmarks/locustfile.py: its users' weights.
TOUCHPOINTS = (pb.CHECKIN_KIOSK, pb.CHECKIN_AGENT, pb.BRANCH_TELLER, pb.IVR)
TOUCHPOINT_WEIGHTS = (4, 2, 2, 2)
AIRLINE_TOUCHPOINTS = (pb.CHECKIN_KIOSK, pb.CHECKIN_AGENT)
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass(frozen=True)
class ThroughputResult:
    """What one measurement gave: ``decisions`` answered in ``seconds`` by ``processes`` server processes."""

    processes: int
    in_flight: int
    client_processes: int
    seconds: float
    decisions: int
    errors: int
    degraded: int
    p50_ms: float
    p99_ms: float

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.seconds


@dataclass(frozen=True)
class _ClientLoad:
    target: str
    calls: int
    customers: int
    warmup_s: float
    seconds: float
    seed: int


@dataclass(frozen=True)
class _ClientCount:
    latencies_s: list[float]
    errors: int
    degraded: int


def _request(rng: random.Random, customers: int) -> pb.DecideRequest:
    touchpoint = rng.choices(TOUCHPOINTS, TOUCHPOINT_WEIGHTS)[0]
    context = {"flight": f"AZ{rng.randrange(600, 2100)}"} if touchpoint in AIRLINE_TOUCHPOINTS else {}
    return pb.DecideRequest(
        customer_id=f"cust-{rng.randrange(1, customers + 1):06d}",
        touchpoint=touchpoint,
        context=context,
        request_id=uuid.UUID(int=rng.getrandbits(128)).hex,
    )


async def _closed_loop(load: _ClientLoad, start_at: float) -> _ClientCount:
    rng = random.Random(load.seed)
    latencies: list[float] = []
    counts = {"errors": 0, "degraded": 0}
    counted_from, end_at = start_at + load.warmup_s, start_at + load.warmup_s + load.seconds

    async def caller() -> None:
        # A connection of its own per caller (gRPC shares one per target by default): SO_REUSEPORT spreads
        # connections, not calls, so one shared connection would load one server process only.
        async with grpc.aio.insecure_channel(load.target, options=OWN_CONNECTION) as channel:
            stub = pb_grpc.DecisionServiceStub(channel)
            while (now := time.time()) < end_at:
                started = time.perf_counter()
                try:
                    reply = await stub.Decide(_request(rng, load.customers), timeout=10.0)
                except grpc.aio.AioRpcError:
                    if now >= counted_from:
                        counts["errors"] += 1
                    continue
                if now >= counted_from:  # calls started during the warm-up are not counted
                    latencies.append(time.perf_counter() - started)
                    counts["degraded"] += bool(reply.degraded)

    await asyncio.gather(*(caller() for _ in range(load.calls)))
    return _ClientCount(latencies, counts["errors"], counts["degraded"])


def _client_process(load: _ClientLoad, ready: Any, start: Any, results: Any) -> None:
    """One client process: once every client is up, the parent gives one start time to all."""
    ready.wait()
    results.put(asyncio.run(_closed_loop(load, start.get())))


def _start_server(processes: int, redis_url: str, model_dir: Path, data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "NBA_REDIS_URL": redis_url,
        "NBA_MODEL_DIR": str(model_dir),
        "NBA_DATA_DIR": str(data_dir),
        "NBA_PORT": "0",
        "NBA_HTTP_ENABLED": "false",
        "NBA_RULES_RELOAD_S": "0",
        # Saturated, a Redis reply may take longer than the production 25 ms: measure whole decisions,
        # not degraded ones (those that still degrade are counted).
        "NBA_REDIS_TIMEOUT_MS": "1000",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "serve", "--workers", str(processes)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None
    announced = server.stdout.readline()
    found = re.match(r"serving on (\S+)", announced)
    if not found:
        server.kill()
        raise RuntimeError(f"nba serve --workers {processes} did not start: {announced!r}")
    return server, found.group(1)


def _run_clients(loads: Sequence[_ClientLoad]) -> list[_ClientCount]:
    """Run the client processes (spawned: a fresh interpreter, no inherited gRPC state) at the same moment."""
    spawn = multiprocessing.get_context("spawn")
    ready, start, results = spawn.Barrier(len(loads) + 1), spawn.Queue(), spawn.Queue()
    clients = [spawn.Process(target=_client_process, args=(load, ready, start, results)) for load in loads]
    for client in clients:
        client.start()
    try:
        ready.wait(timeout=120)
        started_at = time.time()
        for _ in clients:
            start.put(started_at)
        return [results.get(timeout=sum(load.warmup_s + load.seconds for load in loads) + 120) for _ in loads]
    finally:
        for client in clients:
            client.join(timeout=10)
            if client.is_alive():
                client.kill()


def measure_throughput(
    processes: int,
    redis_url: str,
    model_dir: Path,
    *,
    seconds: float = 10.0,
    warmup_s: float = 3.0,
    in_flight: int = 16,
    client_processes: int = 2,
    customers: int = 10_000,
) -> ThroughputResult:
    """Saturated Decide throughput of ``nba serve --workers processes`` over ``redis_url`` (loaded with the demo
    population of ``customers``) and the model in ``model_dir``: ``in_flight`` calls always outstanding, from
    ``client_processes`` processes, counted for ``seconds`` after ``warmup_s``."""
    with tempfile.TemporaryDirectory(prefix="nba-workers-bench-") as data_dir:
        server, target = _start_server(processes, redis_url, Path(model_dir), Path(data_dir))
        try:
            share = [
                in_flight // client_processes + (i < in_flight % client_processes) for i in range(client_processes)
            ]
            loads = [
                _ClientLoad(target, calls, customers, warmup_s, seconds, seed)
                for seed, calls in enumerate(share)
                if calls
            ]
            counts = _run_clients(loads)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    latencies = np.array([s for c in counts for s in c.latencies_s]) * 1000
    return ThroughputResult(
        processes=processes,
        in_flight=in_flight,
        client_processes=len(loads),
        seconds=seconds,
        decisions=len(latencies),
        errors=sum(c.errors for c in counts),
        degraded=sum(c.degraded for c in counts),
        p50_ms=float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
    )


def compare(
    redis_url: str,
    model_dir: Path,
    process_counts: Sequence[int] = (1, 2),
    *,
    seconds: float = 10.0,
    in_flight: int = 16,
    client_processes: int = 2,
    customers: int = 10_000,
) -> list[ThroughputResult]:
    """``measure_throughput`` for each process count, one after the other, against the same Redis and model."""
    return [
        measure_throughput(
            n,
            redis_url,
            model_dir,
            seconds=seconds,
            in_flight=in_flight,
            client_processes=client_processes,
            customers=customers,
        )
        for n in process_counts
    ]


def table(results: Sequence[ThroughputResult]) -> str:
    """A markdown table of the results, with each rate as a ratio of the first."""
    base = results[0].decisions_per_s
    lines = [
        "| server processes | decisions/s | vs first | p50 ms | p99 ms | errors | degraded |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.processes} | {r.decisions_per_s:,.0f} | {r.decisions_per_s / base:.2f}x | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {r.errors} | {r.degraded} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from features.redis_client import connect
    from features.redis_server import RedisServer
    from features.redis_store import RedisOnlineStore, RedisStoreConfig
    from training.demo_model import load_or_train_demo_model
    from training.population import generate_population

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per process count")
    parser.add_argument("--in-flight", type=int, default=16, help="calls always outstanding")
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--customers", type=int, default=10_000, help="demo population loaded into Redis")
    parser.add_argument("--model-dir", type=Path, default=Path(".nba-data/models/demo"))
    args = parser.parse_args(argv)

    model_dir = load_or_train_demo_model(args.model_dir)
    with (
        tempfile.TemporaryDirectory(prefix="nba-workers-bench-redis-") as redis_dir,
        RedisServer(Path(redis_dir)) as redis_server,
    ):
        config = RedisStoreConfig(url=redis_server.url, timeout_ms=5000)
        client = connect(config)
        now = time.time()
        RedisOnlineStore(client, config).write_profiles(generate_population(args.customers, now=now), written_at=now)
        client.close()
        results = compare(
            redis_server.url,
            model_dir,
            seconds=args.seconds,
            in_flight=args.in_flight,
            client_processes=args.client_processes,
            customers=args.customers,
        )
    print(
        f"Saturated Decide, {args.in_flight} calls in flight from {args.client_processes} client processes, "
        f"{args.seconds:.0f} s each, {os.cpu_count()} cores shared by clients, servers and Redis:\n"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
