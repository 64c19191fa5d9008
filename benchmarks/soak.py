"""The soak: a million decisions through the real gRPC server at a fixed rate, with the log shipper running; is
anything growing?

The service runs as in production (``nba serve``, its own process, over its own Redis, with the shipper), and
the load is open loop at ``--rate`` decisions a second: 1% of them for five customers met thousands of times,
the rest over 10,000 customers, every touchpoint in turn; a share of the answered decisions gets an outcome
(accepted, declined or ignored). After every ``--every`` decisions: Redis's ``used_memory``, the server's
resident memory, Decide p50 and p99 of those decisions (from each call's scheduled send time), and the shipper's
lag (entries of the decision stream not shipped yet, and the age of the oldest), and where the time went (CPU
per decision of each process, Redis's script calls). At the end, once the shipper has caught up, every answered
decision is looked up in the Parquet log: each must be there exactly once.

    python -m benchmarks.soak [--decisions 1000000] [--every 100000] [--rate 400] [--write benchmarks/RESULTS.md]

It takes decisions / rate seconds (about 42 minutes for the default million), so it is its own command
(``make soak``), not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow.dataset as ds
import redis

from benchmarks.decide_bench import NOTES_MARKER, TOUCHPOINTS
from benchmarks.harness import OpenLoopRun, open_loop, rss_kib, write_section
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer, free_port
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from training.demo_model import load_or_train_demo_model
from training.population import PERSONAS, generate_population

SECTION_BEGIN, SECTION_END = "<!-- soak: written by make soak -->", "<!-- /soak -->"
CUSTOMERS = 10_000
FREQUENT = PERSONAS[:3] + ("cust-000001", "cust-000002")
OUTCOMES = (pb.ACCEPTED, pb.DECLINED, pb.IGNORED)
KEYS = KeyLayout()
FLAT_TOLERANCE = 0.10
DECISION_TTL_S = 300


@dataclass
class Window:
    decisions: int
    used_memory_mib: float
    rss_mib: float
    p50_ms: float
    p99_ms: float
    unshipped: int
    oldest_unshipped_s: float
    degraded: int
    failed: int
    cost: Cost = field(default_factory=lambda: Cost(0, 0, 0, 0, 0, 0, 0))


@dataclass(frozen=True)
class Cost:
    """Where a window's time went, per decision: CPU ms of each process, and Redis's Lua script calls."""

    server_ms: float
    shipper_ms: float
    redis_ms: float
    load_ms: float  # this process: the open loop and its callbacks
    scripts: float  # EVALSHA calls (commits, outcomes, batches)
    script_us: float  # Redis's time in one, on average
    keys: int  # Redis's keys at the window's end


@dataclass(frozen=True)
class Meter:
    """Cumulative readings the next window's Cost is the difference from."""

    server_s: float
    shipper_s: float
    redis_s: float
    load_s: float
    script_calls: int
    script_usec: int

    @classmethod
    def read(cls, client: redis.Redis, server_pid: int) -> Meter:
        cpu = client.info("cpu")
        stats = client.info("commandstats").get("cmdstat_evalsha", {})
        shippers = [pid for pid in children(server_pid) if "shipper" in command_line(pid)]
        own = os.times()
        return cls(
            server_s=cpu_seconds(server_pid),
            shipper_s=sum(cpu_seconds(pid) for pid in shippers),
            redis_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
            load_s=own.user + own.system,
            script_calls=int(stats.get("calls", 0)),
            script_usec=int(stats.get("usec", 0)),
        )

    def cost(self, earlier: Meter, decisions: int, keys: int) -> Cost:
        per = 1000.0 / max(decisions, 1)
        calls = self.script_calls - earlier.script_calls
        return Cost(
            server_ms=(self.server_s - earlier.server_s) * per,
            shipper_ms=(self.shipper_s - earlier.shipper_s) * per,
            redis_ms=(self.redis_s - earlier.redis_s) * per,
            load_ms=(self.load_s - earlier.load_s) * per,
            scripts=calls / max(decisions, 1),
            script_us=(self.script_usec - earlier.script_usec) / max(calls, 1),
            keys=keys,
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Soak:
    """What the load saw, from the gRPC callbacks' threads."""

    answered: list[str] = field(default_factory=list)
    degraded: int = 0
    failed: int = 0
    outcomes_sent: int = 0
    outcomes_failed: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def requests(count: int, offset: int, seed: int) -> list[pb.DecideRequest]:
    rng = random.Random(seed)
    return [
        pb.DecideRequest(
            customer_id=rng.choice(FREQUENT) if rng.random() < 0.01 else f"cust-{rng.randrange(1, CUSTOMERS):06d}",
            touchpoint=TOUCHPOINTS[(offset + i) % len(TOUCHPOINTS)],
            context={"flight": f"AZ{rng.randrange(100, 999)}", "cabin": "economy"},
            request_id=f"soak-{offset + i}",
        )
        for i in range(count)
    ]


def run_window(
    stub: pb_grpc.DecisionServiceStub, soak: Soak, offset: int, count: int, rate: float, share: float
) -> OpenLoopRun:
    batch = requests(count, offset, seed=offset)
    rng = random.Random(offset + 1)

    def answered(future: grpc.Future, done: Callable[[], None]) -> None:
        done()
        if future.exception() is not None:
            with soak.lock:
                soak.failed += 1
            return
        reply = future.result()
        with soak.lock:
            soak.answered.append(reply.decision_id)
            soak.degraded += int(reply.degraded)
        if reply.actions and rng.random() < share:
            outcome = pb.RecordOutcomeRequest(
                decision_id=reply.decision_id, action_id=reply.actions[0].action_id, outcome=rng.choice(OUTCOMES)
            )
            stub.RecordOutcome.future(outcome, timeout=10).add_done_callback(outcome_answered)

    def outcome_answered(future: grpc.Future) -> None:
        with soak.lock:
            soak.outcomes_sent += 1
            if future.exception() is not None:
                soak.outcomes_failed[str(future.code().name)] += 1

    def submit(i: int, done: Callable[[], None]) -> None:
        stub.Decide.future(batch[i], timeout=10).add_done_callback(lambda f: answered(f, done))

    return open_loop(f"soak {offset:,}+", submit, rate, count, timeout_s=120)


def shipper_lag(client: redis.Redis) -> tuple[int, float]:
    """Entries of the decision stream not shipped yet, and the age of the oldest (seconds)."""
    unshipped = int(client.xlen(KEYS.decisions_stream))
    oldest = client.xrange(KEYS.decisions_stream, count=1)
    age = time.time() - int(str(oldest[0][0]).split("-")[0]) / 1000.0 if oldest else 0.0
    return unshipped, max(age, 0.0)


def shipped_decision_ids(log_dir: Path) -> list[str]:
    decisions = log_dir / "decisions"
    if not decisions.exists():
        return []
    dataset = ds.dataset(decisions, format="parquet", partitioning="hive")
    return dataset.to_table(columns=["decision_id"]).column("decision_id").to_pylist()


@contextlib.contextmanager
def serving(redis_url: str, model_dir: Path, work: Path) -> Iterator[tuple[grpc.Channel, int, Path]]:
    """``nba serve`` in its own process, with its log shipper, over the given Redis; yields (channel, pid, log dir)."""
    port = free_port()
    log_dir = work / "log"
    env = dict(
        os.environ,
        NBA_PORT=str(port),
        NBA_HTTP_ENABLED="false",
        NBA_REDIS_URL=redis_url,
        NBA_REDIS_TIMEOUT_MS="1000",
        NBA_MODEL_DIR=str(model_dir),
        NBA_DATA_DIR=str(work / "data"),
        NBA_LOG_DIR=str(log_dir),
        NBA_LOG_SHIP_EVERY_S="5",
        # Decisions expire after five minutes, so Redis reaches its plateau within the run: rate x 300 s x a
        # decision's bytes. With the default day it would keep growing for a day, at the same slope.
        NBA_DECISION_TTL_S=str(DECISION_TTL_S),
    )
    logs = (work / "server.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "decision.cli", "serve"], env=env, stdout=logs, stderr=logs)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
            yield channel, server.pid, log_dir
    finally:
        server.terminate()
        server.wait(timeout=30)
        logs.close()


def soak(
    decisions: int, every: int, rate: float, share: float, model_dir: Path, work: Path | None = None
) -> tuple[list[Window], dict[str, Any]]:
    work = work or Path(tempfile.mkdtemp(prefix="nba-soak-"))
    windows: list[Window] = []
    with RedisServer(work / "redis", maxmemory_mb=2048) as redis_server:
        config = RedisStoreConfig(url=redis_server.url, timeout_ms=5000)
        store_client = connect(config)
        RedisOnlineStore(store_client, config).write_profiles(
            generate_population(CUSTOMERS, now=time.time()), written_at=time.time()
        )
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        with serving(redis_server.url, model_dir, work) as (channel, pid, log_dir):
            stub = pb_grpc.DecisionServiceStub(channel)
            state = Soak()
            meter = Meter.read(client, pid)
            for offset in range(0, decisions, every):
                count = min(every, decisions - offset)
                run = run_window(stub, state, offset, count, rate, share)
                unshipped, age = shipper_lag(client)
                earlier, meter = meter, Meter.read(client, pid)
                windows.append(
                    Window(
                        decisions=offset + count,
                        used_memory_mib=int(client.info("memory")["used_memory"]) / 2**20,
                        rss_mib=rss_kib(pid) / 1024,
                        p50_ms=run.latency.p50,
                        p99_ms=run.latency.p99,
                        unshipped=unshipped,
                        oldest_unshipped_s=age,
                        degraded=state.degraded,
                        failed=state.failed,
                        cost=meter.cost(earlier, count, int(client.dbsize())),
                    )
                )
                print(windows[-1], file=sys.stderr, flush=True)
            deadline = time.monotonic() + 120
            while shipper_lag(client)[0] and time.monotonic() < deadline:
                time.sleep(1)
            shipped = Counter(shipped_decision_ids(log_dir))
        answered = set(state.answered)
        summary = {
            "answered": len(answered),
            "missing": sum(1 for d in answered if d not in shipped),
            "duplicated": sum(1 for n in shipped.values() if n > 1),
            "outcomes_sent": state.outcomes_sent,
            "outcomes_failed": dict(state.outcomes_failed),
            "log_bytes": sum(p.stat().st_size for p in log_dir.rglob("*.parquet")),
            "log_files": sum(1 for _ in log_dir.rglob("*.parquet")),
            "rate": rate,
        }
    return windows, summary


def steady(windows: list[Window], rate: float) -> list[Window]:
    """The readings after warm-up: of windows that began once decisions had started to expire (rate x their
    time in Redis), when Redis holds as many as it ever will; the last reading at least."""
    every = windows[0].decisions
    return [w for w in windows if w.decisions - every >= rate * DECISION_TTL_S] or windows[-1:]


def spread(values: Sequence[float]) -> float:
    """(highest - lowest) / lowest of some readings."""
    return (max(values) - min(values)) / min(values) if values and min(values) > 0 else 0.0


def render(windows: list[Window], summary: dict[str, Any], plot: str) -> str:
    lines = [
        SECTION_BEGIN,
        "",
        f"## Soak: {summary['answered']:,} decisions through the gRPC server (`make soak`)",
        "",
        __doc__.split("\n\n")[1].replace("\n", " "),
        f"Rate {summary['rate']:.0f}/s. Decisions are kept in Redis {DECISION_TTL_S} s in this run (the default is a "
        "day), so Redis reaches its plateau (rate x that x a decision's bytes) once rate x 300 decisions were made; "
        "the log shipper ships every 5 s.",
        "",
        "| decisions | Redis used_memory MiB | server RSS MiB | Decide p50 ms | p99 ms | unshipped entries "
        "| oldest unshipped s | degraded so far | failed so far |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {w.decisions:,} | {w.used_memory_mib:.1f} | {w.rss_mib:.1f} | {w.p50_ms:.2f} | {w.p99_ms:.2f} "
        f"| {w.unshipped:,} | {w.oldest_unshipped_s:.1f} | {w.degraded:,} | {w.failed:,} |"
        for w in windows
    ]
    lines += [
        "",
        "Where each window's time went, per decision: CPU ms of the server, its log shipper, Redis and the load "
        "generator (this process), Redis's Lua script calls (decision commits, outcomes, the writer's batches) "
        "and its time in one; and Redis's keys at the window's end.",
        "",
        "| decisions | server CPU ms | shipper CPU ms | Redis CPU ms | load CPU ms | scripts | µs a script | keys |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {w.decisions:,} | {w.cost.server_ms:.3f} | {w.cost.shipper_ms:.3f} | {w.cost.redis_ms:.3f} "
        f"| {w.cost.load_ms:.3f} | {w.cost.scripts:.2f} | {w.cost.script_us:.0f} | {w.cost.keys:,} |"
        for w in windows
    ]
    after = steady(windows, summary["rate"])
    memory = spread([w.used_memory_mib for w in after])
    rss = spread([w.rss_mib for w in after])
    p50 = spread([w.p50_ms for w in after])
    lines += [
        "",
        f"After warm-up (the {len(after)} readings from {after[0].decisions:,} decisions on), highest over lowest: "
        f"Redis memory {memory:+.1%}, server RSS {rss:+.1%}, Decide p50 {p50:+.1%} (target: each within "
        f"{FLAT_TOLERANCE:.0%}); p99, a single window's worst 1%, is noisier on a shared 2-core machine.",
        f"In the Parquet log: {summary['missing']:,} answered decisions missing, {summary['duplicated']:,} "
        f"duplicated ({summary['log_files']:,} files, {summary['log_bytes'] / 2**20:.1f} MiB, "
        f"{summary['log_bytes'] / max(summary['answered'], 1):,.0f} bytes a decision with its outcomes). "
        f"Outcomes sent: {summary['outcomes_sent']:,}, refused: {summary['outcomes_failed'] or 'none'}.",
        "",
        f"![soak]({plot})",
        "",
        SECTION_END,
    ]
    return "\n".join(lines)


def write_plot(windows: list[Window], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([w.decisions for w in windows]) / 1000
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), sharex=True)
    series = [
        ("Redis used_memory MiB", [w.used_memory_mib for w in windows]),
        ("server RSS MiB", [w.rss_mib for w in windows]),
        ("Decide p50 / p99 ms", ([w.p50_ms for w in windows], [w.p99_ms for w in windows])),
        ("unshipped entries", [w.unshipped for w in windows]),
    ]
    for ax, (title, values) in zip(axes.flat, series, strict=True):
        for line in values if isinstance(values, tuple) else (values,):
            ax.plot(x, line, marker="o")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("thousand decisions")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=400.0, help="decisions a second")
    parser.add_argument("--outcome-share", type=float, default=0.2, help="share of decisions that get an outcome")
    parser.add_argument("--write", type=Path, default=None, help="write the section into this RESULTS.md")
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/soak.png"))
    parser.add_argument("--model-cache", type=Path, default=Path(".nba-data/models/demo"))
    args = parser.parse_args(argv)
    model_dir = load_or_train_demo_model(args.model_cache)
    windows, summary = soak(args.decisions, args.every, args.rate, args.outcome_share, model_dir)
    write_plot(windows, args.plot)
    text = render(windows, summary, args.plot.name)
    print(text)
    if args.write:
        write_section(args.write, text, SECTION_BEGIN, SECTION_END, NOTES_MARKER)
    return 0 if not summary["missing"] and not summary["duplicated"] else 1


if __name__ == "__main__":
    sys.exit(main())
