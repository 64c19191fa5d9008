"""The performance harness: Decide next to the floor, under load, against its peers, over time and as it grows,
all in one run on one machine with the same synthetic customers; writes benchmarks/RESULTS.md and the CDF.

    python -m benchmarks.decide_bench [--quick] [--write benchmarks/RESULTS.md] [--cdf benchmarks/latency-cdf.png]

Sections (RESULTS.md keeps this order):

a. the floor: an empty unary RPC to the same server process (gRPC health check) plus one Redis GET of 1 KB;
b. Decide (demo model, rules, explanation), closed loop with 1, 2, 8 and 32 calls in flight, in blocks of calls
   alternating with the floor's so that drift in the machine's speed hits both alike;
c. open loop at 30%, 50% and 70% of b's saturated throughput, latency from each call's scheduled send time;
d. throughput with 1 and 2 server processes (``benchmarks.workers_bench``) and the peers, Feast for features and
   MLServer for scoring (``benchmarks.peers``): each runs only when its module is there, else RESULTS.md says
   it was skipped;
e. memory: the server's RSS across the run, and an in-process soak of up to 100,000 decisions, RSS read every
   10,000; it runs last and gets what is left of the time budget (``Sizes.budget_s``), so the run keeps to it;
f. how the cost grows with candidate actions and features (``benchmarks.growth``), and with rules
   (``benchmarks.rules_bench``);
g. every latency distribution on one CDF chart, and the targets as ratios from this run, met or missed.

The service runs in its own process (``nba serve``), as in production, over its own Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks import frequent_customer, growth, rules_bench
from benchmarks.harness import (
    Contender,
    Latency,
    OpenLoopRun,
    Skipped,
    Target,
    elapsed,
    interleaved,
    latency_table,
    open_loop,
    rss_kib,
    targets_table,
    write_cdf,
)
from decision.catalogue import Catalogue
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_client import connect
from features.redis_server import RedisServer, free_port
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from features.schema import FeatureSchema
from training.demo_model import load_or_train_demo_model
from training.population import PERSONAS, generate_population

TOUCHPOINTS = [t for t in pb.Touchpoint.values() if t != pb.TOUCHPOINT_UNSPECIFIED]
IN_FLIGHT = (1, 2, 8, 32)
OPEN_LOOP_LOADS = (0.3, 0.5, 0.7)
NOTES_MARKER = "<!-- notes: kept by make bench -->"
# The performance issue's targets, each a ratio from the same run.
TARGET_P50_VS_FLOOR, TARGET_P99_VS_FLOOR = 1.3, 1.5
TARGET_TWO_PROCESSES = 1.7
TARGET_OPEN_LOOP_P99_MS = 10.0
TARGET_FREQUENT_VS_FRESH = 1.10
LEAK_TOLERANCE = 0.10


@dataclass(frozen=True)
class Sizes:
    """How many calls each section makes; ``--quick`` shrinks them all for development."""

    calls: int = 2000
    customers: int = 10_000
    open_loop_s: float = 15.0
    soak_decisions: int = 100_000
    soak_every: int = 10_000
    growth_decisions: int = 200
    rules_facts: int = 200
    peer_calls: int = 1000
    workers_s: float = 8.0
    # The harness's own sections (all but the peers and the processes, which bring their own) fit in this; the
    # memory soak, run last, gets what is left, at least soak_min_s: 100,000 decisions on a quiet machine.
    budget_s: float = 340.0
    soak_min_s: float = 30.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(200, 2_000, 3.0, 3_000, 1_000, 60, 100, 200, workers_s=3.0, budget_s=90.0, soak_min_s=10.0)


@dataclass
class World:
    """What every section shares: the one Redis, the demo model, the customers, the running server."""

    redis_url: str
    model_dir: Path
    work_dir: Path
    population: list[dict[str, str]]
    # The definitions the server runs with (its defaults: the bench sets no NBA_SCHEMA_PATH), read once here.
    schema: FeatureSchema = field(default_factory=FeatureSchema.load)
    catalogue: Catalogue = field(default_factory=Catalogue.load)
    target: str = ""
    server_pid: int = 0
    decisions: int = 0
    degraded: int = 0
    failed: int = 0
    rss_log: list[tuple[str, int, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def tally(self, sent: int = 0, degraded: int = 0, failed: int = 0) -> None:
        """Count decisions asked of the server, from any client thread or gRPC callback."""
        with self._lock:
            self.decisions += sent
            self.degraded += degraded
            self.failed += failed

    @property
    def customer_ids(self) -> list[str]:
        return [p["customer_id"] for p in self.population]

    def note_rss(self, when: str) -> None:
        """The server process's resident memory now, with the number of decisions it has made so far."""
        self.rss_log.append((when, self.decisions, rss_kib(self.server_pid)))


@dataclass
class Report:
    """Everything measured, for RESULTS.md and the chart."""

    sizes: Sizes
    closed: dict[int, tuple[Latency, Latency, Latency]] = field(default_factory=dict)
    open: list[tuple[float, OpenLoopRun]] = field(default_factory=list)
    saturated_per_s: float = 0.0
    throughput: dict[int, float] = field(default_factory=dict)
    peers: list[tuple[Latency, Latency]] = field(default_factory=list)
    peer_installs: dict[str, float | None] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    soak: list[dict[str, float]] = field(default_factory=list)
    server_rss: list[tuple[str, int, int]] = field(default_factory=list)
    growth: list[growth.GrowthRow] = field(default_factory=list)
    rules: list[rules_bench.Row] = field(default_factory=list)
    served: tuple[int, int, int] = (0, 0, 0)
    soak_max_s: float = 0.0
    frequent: frequent_customer.Measured | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    load: list[tuple[str, tuple[float, float, float]]] = field(default_factory=list)


# -- d: sections built on other branches ---------------------------------------------------------------------


def optional_module(name: str) -> ModuleType | None:
    """The module, or None when it (or its package) is not in this checkout; a missing dependency *inside* a
    module that is there is an error, not a skip."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            return None
        raise


@dataclass(frozen=True)
class PeerHook:
    """A peer service measured beside Decide: ``build(module, world)`` gives the peer (with ``install()`` and
    ``call(i)``, one blocking call for the i-th customer of ``world.customer_ids``) and a context manager factory
    during which it serves the world's customers or model."""

    title: str
    module: str
    build: Callable[[ModuleType, World], tuple[Any, Callable[[], contextlib.AbstractContextManager[object]]]]


def _feast(module: ModuleType, world: World) -> tuple[Any, Callable[[], contextlib.AbstractContextManager[object]]]:
    # Feast's Redis online store in the same Redis server as ours (its keys are its own): the same machine's Redis.
    peer = module.FeastPeer(world.population, world.schema)
    return peer, partial(peer.start, world.redis_url)


def _mlserver(module: ModuleType, world: World) -> tuple[Any, Callable[[], contextlib.AbstractContextManager[object]]]:
    peer = module.MLServerPeer(world.population, world.model_dir, world.schema, world.catalogue.action_ids)
    return peer, peer.start


PEERS = (
    PeerHook("Feast (features only)", "benchmarks.peers", _feast),
    PeerHook("MLServer (scoring only)", "benchmarks.peers", _mlserver),
)
WORKERS_MODULE = "benchmarks.workers_bench"


def peer_contenders(world: World, report: Report) -> Iterator[Contender]:
    for hook in PEERS:
        module = optional_module(hook.module)
        if module is None:
            report.skipped.append(Skipped(hook.title, f"`{hook.module}` is not in this checkout"))
            continue
        peer, start = hook.build(module, world)
        peer.install()  # once per machine: a stamp in its venv makes it a no-op after
        report.peer_installs[hook.title] = peer.venv.first_install_seconds
        yield Contender(hook.title, peer.call, setup=start)


def measure_workers(world: World, report: Report) -> None:
    module = optional_module(WORKERS_MODULE)
    if module is None:
        report.skipped.append(Skipped("throughput with 1 and 2 server processes", f"`{WORKERS_MODULE}` is missing"))
        return
    # 1, 2, 2, 1 and the mean of each: a machine (or a Redis) that drifts during the section favours neither.
    runs: dict[int, list[float]] = {1: [], 2: []}
    for processes in (1, 2, 2, 1):
        result = module.measure_throughput(
            processes,
            world.redis_url,
            world.model_dir,
            seconds=report.sizes.workers_s,
            customers=len(world.population) - len(PERSONAS),
        )
        if result.errors:
            raise RuntimeError(f"{result.errors} calls failed while measuring {processes} server processes")
        runs[processes].append(float(result.decisions_per_s))
    report.throughput = {processes: sum(rates) / len(rates) for processes, rates in runs.items()}


def measure_peers(world: World, stub: pb_grpc.DecisionServiceStub, report: Report) -> None:
    """Each peer interleaved with sequential Decide, so both see the same machine. Each peer's Decide calls are
    new requests: the same request ids again would be retries, answered from the stored decision."""
    for peer in peer_contenders(world, report):
        requests = decide_requests(world, report.sizes.peer_calls, f"peers-{peer.name.split(' ')[0]}")
        decide = decide_contender(world, stub, requests)
        with peer.setup():
            runs = interleaved([peer, decide], report.sizes.peer_calls, 1)
        report.peers.append((runs[0], runs[1]))


# -- a, b, c: the server under closed and open loops ---------------------------------------------------------


def decide_requests(world: World, count: int, tag: str, seed: int = 7) -> list[pb.DecideRequest]:
    """``count`` fresh requests (unique request ids, so none is answered as a retry) over the customers."""
    rng = random.Random(seed)
    customers = world.customer_ids
    return [
        pb.DecideRequest(
            customer_id=PERSONAS[i % 3] if i % 10 == 0 else rng.choice(customers),
            touchpoint=rng.choice(TOUCHPOINTS),
            context={"flight": f"AZ{rng.randrange(100, 999)}", "cabin": "economy"},
            request_id=f"bench-{tag}-{i}",
        )
        for i in range(count)
    ]


def decide_contender(
    world: World, stub: pb_grpc.DecisionServiceStub, requests: Sequence[pb.DecideRequest]
) -> Contender:
    def call(i: int) -> object:
        world.tally(sent=1)
        reply = stub.Decide(requests[i % len(requests)], timeout=10)
        world.tally(degraded=int(reply.degraded))
        return reply

    return Contender("Decide", call)


def measure_closed(world: World, channel: grpc.Channel, report: Report) -> None:
    stub = pb_grpc.DecisionServiceStub(channel)
    check = health_pb2_grpc.HealthStub(channel).Check
    empty = health_pb2.HealthCheckRequest(service="")
    client = redis.Redis.from_url(world.redis_url)
    client.set("bench:1kb", os.urandom(1024))
    calls = report.sizes.calls
    warm = decide_contender(world, stub, decide_requests(world, 300, "warm"))
    for i in range(300):  # every path warm: connections, model, rules, Redis scripts
        warm.call(i)
        check(empty, timeout=5)
        client.get("bench:1kb")
    world.note_rss("after warm-up")
    for in_flight in IN_FLIGHT:
        decide = decide_contender(world, stub, decide_requests(world, calls, f"closed{in_flight}"))
        rpc, get, dec = interleaved(
            [
                Contender("empty RPC", lambda i: check(empty, timeout=5)),
                Contender("Redis GET", lambda i: client.get("bench:1kb")),
                decide,
            ],
            calls,
            in_flight,
        )
        report.closed[in_flight] = (rpc, get, dec)
    client.close()
    report.saturated_per_s = max(report.closed[n][2].per_s for n in IN_FLIGHT if n > 1)
    world.note_rss("after the closed loops")


def measure_frequent(world: World, channel: grpc.Channel, report: Report) -> None:
    persona = next(p for p in world.population if p["customer_id"] == PERSONAS[0])
    actions = world.catalogue.action_ids
    frequent_customer.prepare(world.redis_url, persona, actions)
    stub = pb_grpc.DecisionServiceStub(channel)
    report.frequent = frequent_customer.measure(stub, world.redis_url, actions, report.sizes.calls)
    world.tally(sent=2 * (report.sizes.calls + 50))


def measure_open(world: World, channel: grpc.Channel, report: Report) -> None:
    """Fixed arrival rates below saturation; the sender never waits for an answer (gRPC futures)."""
    stub = pb_grpc.DecisionServiceStub(channel)

    def answered(future: grpc.Future, done: Callable[[], None]) -> None:
        done()
        if future.exception() is not None:
            world.tally(failed=1)
        else:
            world.tally(degraded=int(future.result().degraded))

    for load in OPEN_LOOP_LOADS:
        rate = load * report.saturated_per_s
        count = max(20, int(rate * report.sizes.open_loop_s))
        requests = decide_requests(world, count, f"open{load}", seed=int(load * 100))

        def submit(i: int, done: Callable[[], None], requests: list[pb.DecideRequest] = requests) -> None:
            world.tally(sent=1)
            future = stub.Decide.future(requests[i], timeout=10)
            future.add_done_callback(lambda f: answered(f, done))

        run = open_loop(f"open loop {load:.0%}", submit, rate, count)
        report.open.append((load, run))
    world.note_rss("after the open loops")


# -- e: memory -----------------------------------------------------------------------------------------------


def measure_soak(world: World, report: Report, max_s: float) -> None:
    sizes = report.sizes
    report.soak_max_s = max_s
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory_soak",
        "--redis-url",
        world.redis_url,
        "--model-dir",
        str(world.model_dir),
        "--data-dir",
        str(world.work_dir / "soak"),
        "--customers",
        str(len(world.population) - len(PERSONAS)),
        "--decisions",
        str(sizes.soak_decisions),
        "--every",
        str(sizes.soak_every),
        "--max-seconds",
        f"{max_s:.0f}",
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    report.soak = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


# -- the run -------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(world: World) -> Iterator[grpc.Channel]:
    """``nba serve`` in its own process over the world's Redis and model; yields a ready channel."""
    port = free_port()
    env = dict(
        os.environ,
        NBA_PORT=str(port),
        NBA_HTTP_ENABLED="false",
        NBA_REDIS_URL=world.redis_url,
        # A busy machine must not turn decisions into degraded ones (which skip most of the work): every
        # measured decision reads Redis, however slow; degraded answers are counted all the same.
        NBA_REDIS_TIMEOUT_MS="1000",
        NBA_MODEL_DIR=str(world.model_dir),
        NBA_DATA_DIR=str(world.work_dir / "data"),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "decision.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    world.target, world.server_pid = f"127.0.0.1:{port}", server.pid
    try:
        with grpc.insecure_channel(world.target) as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
            yield channel
    finally:
        server.terminate()
        server.wait(timeout=10)


def run(sizes: Sizes, model_cache: Path) -> Report:
    """Every section, in an order that keeps the soak last; the work directory (Redis data, logs) is removed."""
    work = Path(tempfile.mkdtemp(prefix="nba-bench-"))
    try:
        return run_in(work, sizes, model_cache)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_in(work: Path, sizes: Sizes, model_cache: Path) -> Report:
    report = Report(sizes)
    seconds = report.seconds
    report.load.append(("start", os.getloadavg()))
    with elapsed(seconds, "set-up"):
        model_dir = load_or_train_demo_model(model_cache)
    with RedisServer(work / "redis") as redis_server:
        with elapsed(seconds, "set-up"):
            config = RedisStoreConfig(url=redis_server.url, timeout_ms=5000)
            client = connect(config)
            population = generate_population(sizes.customers, now=time.time())
            RedisOnlineStore(client, config).write_profiles(population, written_at=time.time())
            client.close()
        world = World(redis_server.url, model_dir, work, population)
        with serving(world) as channel:
            with elapsed(seconds, "a, b: floor and closed loops"):
                measure_closed(world, channel, report)
            with elapsed(seconds, "c: open loops"):
                measure_open(world, channel, report)
            with elapsed(seconds, "b: frequent customer"):
                measure_frequent(world, channel, report)
            with elapsed(seconds, "d: peers"):
                measure_peers(world, pb_grpc.DecisionServiceStub(channel), report)
            report.server_rss = list(world.rss_log)
            report.served = (world.decisions, world.degraded, world.failed)
        with elapsed(seconds, "d: processes"):
            measure_workers(world, report)
        with elapsed(seconds, "f: growth"), RedisServer(work / "growth-redis") as growth_redis:
            report.growth = growth.measure(growth_redis.url, sizes.growth_decisions)
        with elapsed(seconds, "f: rules"):
            report.rules = rules_bench.measure(sizes.rules_facts)
        own = sum(s for name, s in seconds.items() if not name.startswith("d: "))
        with elapsed(seconds, "e: memory soak"):
            measure_soak(world, report, max(sizes.soak_min_s, sizes.budget_s - own))
    report.load.append(("end", os.getloadavg()))
    return report


# -- g: RESULTS.md and the chart -----------------------------------------------------------------------------


def floor_of(rpc: Latency, get: Latency) -> tuple[float, float, float]:
    """The floor's p50, p99 and p99.9: each the empty RPC's plus the Redis GET's (no decision can do less)."""
    return rpc.p50 + get.p50, rpc.p99 + get.p99, rpc.p999 + get.p999


def targets(report: Report) -> list[Target]:
    rpc, get, decide = report.closed[1]
    floor50, floor99, _ = floor_of(rpc, get)
    found: list[Target] = [
        Target("Decide p50 / floor p50, sequential", decide.p50 / floor50, TARGET_P50_VS_FLOOR, detail="b"),
        Target("Decide p99 / floor p99, sequential", decide.p99 / floor99, TARGET_P99_VS_FLOOR, detail="b"),
    ]
    for hook in PEERS:
        pair = next(((p, d) for p, d in report.peers if p.name == hook.title), None)
        found.append(
            Target(
                f"Decide p99 / {hook.title.split(' ')[0]} p99",
                pair[1].p99 / pair[0].p99 if pair else None,
                1.0,
                detail="d, interleaved, sequential" if pair else f"`{hook.module}` missing",
            )
        )
    two = report.throughput.get(2, 0.0) / report.throughput[1] if 1 in report.throughput else None
    found.append(
        Target("throughput, 2 processes / 1", two, TARGET_TWO_PROCESSES, at_least=True, detail="d" if two else "")
    )
    if report.frequent is not None:
        found.append(
            Target(
                "100,000-contact customer p50 / fresh customer p50",
                report.frequent.frequent.p50 / report.frequent.fresh.p50,
                TARGET_FREQUENT_VS_FRESH,
                detail="b",
            )
        )
    p99_70 = next((r.latency.p99 for load, r in report.open if abs(load - 0.7) < 1e-9), None)
    found.append(Target("open loop p99 at 70% of saturation", p99_70, TARGET_OPEN_LOOP_P99_MS, unit=" ms", detail="c"))
    if len(report.soak) >= 2:
        first, last = report.soak[0], report.soak[-1]
        growth_ratio = last["rss_kib"] / first["rss_kib"]
        found.append(
            Target(
                f"RSS after {last['decisions']:,.0f} / after {first['decisions']:,.0f} decisions",
                growth_ratio,
                1 + LEAK_TOLERANCE,
                detail="e, in-process soak",
            )
        )
    return found


def render(report: Report) -> str:
    sizes = report.sizes
    start_load, end_load = report.load[0][1], report.load[-1][1]
    total = sum(report.seconds.values())
    lines = [
        "# Decide: latency against the floor, under load, against peers, over time and as it grows",
        "",
        f"Run on {dt.date.today().isoformat()}, {os.cpu_count()} cores, Python {platform.python_version()}; client, "
        "server (`nba serve`, its own process) and Redis on one machine, the same synthetic customers "
        f"({sizes.customers:,} + the personas) for every section. `make bench` regenerates everything above the "
        "notes marker in about the time listed below.",
        f"Load average (1, 5, 15 min) at the start {_load(start_load)}, at the end {_load(end_load)}: with other "
        "work on the machine the milliseconds are noisy; compare the ratios, which come from the same run.",
        "",
        "## Targets (ratios from this run)",
        "",
        targets_table(targets(report)),
        "",
    ]
    lines += _closed_section(report) + _open_section(report) + _peer_section(report) + _memory_section(report)
    lines += [growth.render(report.growth, sizes.growth_decisions), rules_bench.render(report.rules, sizes.rules_facts)]
    lines += [
        "## Latency CDF",
        "",
        "Every contender of this run on one chart (log-x): ![latency CDF](latency-cdf.png)",
        "",
        "## Where the run's time went",
        "",
        "| section | seconds |",
        "|---|---|",
        *[f"| {name} | {s:.0f} |" for name, s in report.seconds.items()],
        f"| total | {total:.0f} |",
        "",
    ]
    return "\n".join(lines)


def _closed_section(report: Report) -> list[str]:
    lines = [
        "## a, b. The floor and Decide, closed loop",
        "",
        f"{report.sizes.calls:,} calls per contender and concurrency, in blocks alternating the three contenders. "
        "Floor = an empty unary RPC to the same server (gRPC health check) + one Redis GET of 1 KB: each percentile "
        "is the sum of the two's. Decide = the demo model, the shipped rules and the explanation.",
        "",
        "| in flight | empty RPC p50 / p99 / p99.9 ms | Redis GET p50 / p99 / p99.9 ms | floor p50 / p99 / p99.9 ms "
        "| Decide p50 / p99 / p99.9 ms | Decide/s | Decide / floor p50 / p99 / p99.9 |",
        "|---|---|---|---|---|---|---|",
    ]
    for in_flight, (rpc, get, dec) in report.closed.items():
        f50, f99, f999 = floor_of(rpc, get)
        lines.append(
            f"| {in_flight} | {_three(rpc.p50, rpc.p99, rpc.p999)} | {_three(get.p50, get.p99, get.p999)} "
            f"| {_three(f50, f99, f999)} | {_three(dec.p50, dec.p99, dec.p999)} | {dec.per_s:,.0f} "
            f"| {dec.p50 / f50:.2f}x / {dec.p99 / f99:.2f}x / {dec.p999 / f999:.2f}x |"
        )
    lines += ["", f"Saturated throughput (best of 2, 8, 32 in flight): {report.saturated_per_s:,.0f} decisions/s.", ""]
    if report.frequent is not None:
        lines += [
            "### A customer met 100,000 times",
            "",
            frequent_customer.__doc__.split("\n\n")[1].replace("\n", " ").strip(),
            "",
            latency_table([report.frequent.fresh, report.frequent.frequent]),
            "",
            "Answers ranking other actions than the fresh customer's usual answer: "
            f"{report.frequent.differing[0]:,} of the fresh customer's, {report.frequent.differing[1]:,} of the "
            "frequent one's.",
            "",
        ]
    return lines


def _open_section(report: Report) -> list[str]:
    lines = [
        "## c. Open loop at fixed arrival rates",
        "",
        f"Calls sent at a fixed rate for ~{report.sizes.open_loop_s:.0f} s each, as gRPC futures (the sender never "
        "waits for an answer); latency runs from each call's *scheduled* send time, so a sender or server that falls "
        "behind shows in the latency (no coordinated omission). A call sent more than 1 ms after its scheduled "
        "time counts as late.",
        "",
        "| load | rate /s | calls | p50 ms | p99 ms | p99.9 ms | sent late | late p99 ms | latest ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for load, run in report.open:
        lat = run.latency
        lines.append(
            f"| {load:.0%} | {run.rate_per_s:,.0f} | {lat.count:,} | {lat.p50:.3f} | {lat.p99:.3f} | {lat.p999:.3f} "
            f"| {run.late:,} ({run.late / max(lat.count, 1):.1%}) | {run.late_p99_ms:.2f} | {run.worst_late_ms:.2f} |"
        )
    return lines + [""]


def _peer_section(report: Report) -> list[str]:
    lines = ["## d. Processes and peers", ""]
    if report.throughput:
        lines += [
            "`benchmarks.workers_bench`: `nba serve --workers N` on the same Redis and customers, 16 calls in flight "
            "from 2 client processes (asyncio, a connection per call so SO_REUSEPORT spreads them), runs in the "
            "order 1, 2, 2, 1 and the mean of each. The clients share the 2 cores with the servers and Redis.",
            "",
            "| server processes | decisions/s at saturation |",
            "|---|---|",
        ]
        lines += [f"| {n} | {per_s:,.0f} |" for n, per_s in sorted(report.throughput.items())]
        lines.append("")
    if report.peers:
        lines += [
            f"Each peer interleaved with sequential Decide, {report.sizes.peer_calls:,} calls each.",
            "",
            latency_table([run for pair in report.peers for run in pair]),
            "",
        ]
    if report.peer_installs:
        installs = ", ".join(
            f"{title.split(' ')[0]} {seconds:.0f} s" if seconds is not None else f"{title.split(' ')[0]} ?"
            for title, seconds in report.peer_installs.items()
        )
        lines += [
            f"Each peer runs in its own pinned venv under `.nba-data/peers/`, installed by the first run on a machine "
            f"(first install here: {installs}; later runs skip it).",
            "",
        ]
    lines += [s.line() for s in report.skipped] + [""]
    return lines


def _memory_section(report: Report) -> list[str]:
    lines = [
        "## e. Memory",
        "",
        "The server process's resident memory (VmRSS from /proc/PID/status) across this run's gRPC sections:",
        "",
        "| after | decisions served | RSS MiB |",
        "|---|---|---|",
        *[f"| {when} | {n:,} | {kib / 1024:.1f} |" for when, n, kib in report.server_rss],
        "",
    ]
    decisions, degraded, failed = report.served
    lines += [
        f"The server made {decisions:,} decisions in this run's gRPC sections: {degraded:,} answered degraded, "
        f"{failed:,} failed.",
        "",
    ]
    if len(report.soak) >= 2:
        first, last = report.soak[0], report.soak[-1]
        stopped = ""
        if last["decisions"] < report.sizes.soak_decisions:
            stopped = (
                f" **It stopped at {last['decisions']:,.0f} of {report.sizes.soak_decisions:,} decisions**, at its "
                f"share of the run's time budget ({report.soak_max_s:.0f} s; a busy machine): on a quiet one it "
                "gets through."
            )
        change = last["rss_kib"] / first["rss_kib"] - 1
        verdict = "no leak" if change <= LEAK_TOLERANCE else "**grows: look for a leak**"
        lines += [
            "Soak, in-process on `DecisionFlow` in a process of its own (`benchmarks/memory_soak.py`: the same wiring "
            "as the server, without gRPC, because 100,000 decisions through one server process do not fit in the "
            "run's budget), sequential, every touchpoint in turn, RSS read after every "
            f"{report.sizes.soak_every:,} decisions.{stopped}",
            "",
            "| decisions | RSS MiB | seconds | degraded so far |",
            "|---|---|---|---|",
            *[
                f"| {p['decisions']:,.0f} | {p['rss_kib'] / 1024:.1f} | {p['seconds']:.0f} | {p['degraded']:,.0f} |"
                for p in report.soak
            ],
            "",
            f"RSS changed by {change:+.1%} from the first reading to the last ({verdict}; within "
            f"{LEAK_TOLERANCE:.0%} means no leak).",
            "",
        ]
    return lines


def _three(a: float, b: float, c: float) -> str:
    return f"{a:.3f} / {b:.3f} / {c:.3f}"


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def cdf_runs(report: Report) -> list[Latency]:
    runs = []
    if 1 in report.closed:
        rpc, get, _ = report.closed[1]
        runs += [rpc, get]
    for in_flight, (_, _, dec) in report.closed.items():
        runs.append(Latency(f"Decide, {in_flight} in flight", dec.samples_ms, dec.per_s))
    runs += [Latency(f"Decide, open loop {load:.0%}", r.latency.samples_ms, r.latency.per_s) for load, r in report.open]
    runs += [peer for peer, _ in report.peers]
    return runs


def write_results(path: Path, text: str) -> None:
    """Everything from the notes marker on is written by people, not by the benchmark: keep it."""
    notes = NOTES_MARKER + "\n"
    if path.exists() and NOTES_MARKER in (old := path.read_text()):
        notes = old[old.index(NOTES_MARKER) :]
    path.write_text(text + "\n" + notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="far fewer calls: for developing the harness")
    parser.add_argument("--write", type=Path, default=None, help="write the results here (markdown)")
    parser.add_argument("--cdf", type=Path, default=None, help="write the latency CDF chart here (PNG)")
    parser.add_argument("--model-cache", type=Path, default=Path(".nba-data/models/demo"))
    args = parser.parse_args(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    started = time.perf_counter()
    report = run(sizes, args.model_cache)
    text = render(report)
    print(text)
    if args.cdf:
        write_cdf(cdf_runs(report), args.cdf, f"Decide and its floor, one run, {dt.date.today().isoformat()}")
    if args.write:
        write_results(args.write, text)
    print(f"make bench: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
