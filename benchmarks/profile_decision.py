"""Where one decision's time goes, in process: ``DecisionApi.decide`` as the gRPC servicer calls it (request proto
-> domain, ``DecisionFlow.decide``, decision -> response proto), over a real Redis with the demo population and
the demo model. No gRPC transport: its cost is the floor ``decide_bench`` measures.

    python -m benchmarks.profile_decision [--decisions 2000] [--runs 5] [--top 25] [--pyinstrument] [--cold MB]
    valgrind --tool=callgrind --instr-atstart=no python -m benchmarks.profile_decision --callgrind 200

Prints, for the same requests every time (fixed seed, fresh Redis):
  * CPU per decision of the calling thread (``time.thread_time``), p50 / p90, the median over ``--runs`` runs,
    and the wall-clock p50 next to it; CPU rather than wall time because the machine is shared;
  * function calls per decision (cProfile: Python functions and the built-ins they call) and the CPU of each
    stage under the profiler (which inflates it, in proportion to the calls);
  * the functions with the most time of their own; with ``--pyinstrument``, pyinstrument's call tree.

With ``--cold MB``, MB megabytes of memory are overwritten between two decisions (not timed), so each decision
starts with cold caches, as it does in the server, where the client, Redis and gRPC's threads run between two
calls: measured here, a decision's CPU went from 917 us to 1,661 us with 8 MB and 2,209 us with 32 MB. Under
callgrind add ``--cache-sim=yes`` to see which functions miss the caches (the overwriting is counted too, in
numpy's copy; compare functions, not totals).

With ``--callgrind N``, under valgrind as above, it makes N decisions with callgrind's instrumentation on (only
those: set-up runs uninstrumented) and prints nothing else; instructions per decision = the total ``Ir`` of
the callgrind output file / N: a count that other processes on a shared machine do not disturb.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from decision.api.grpc_server import DecisionApi
from decision.app import build_flow, definitions, store_config
from decision.decision_log import RedisDecisionLog
from decision.pb import decision_pb2 as pb
from decision.settings import Settings
from features.redis_client import connect
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore
from training.demo_model import load_or_train_demo_model
from training.population import PERSONAS, generate_population

TOUCHPOINTS = [t for t in pb.Touchpoint.values() if t != pb.TOUCHPOINT_UNSPECIFIED]

# (label, module path, function name): the outermost function of that name in that module is the stage.
STAGES = (
    ("DecisionApi.decide (all)", "decision/api/grpc_server.py", "decide"),
    ("  DecisionFlow.decide", "decision/flow.py", "decide"),
    ("    feature read (Redis round trip)", "features/redis_store.py", "read"),
    ("    schema parse", "features/schema.py", "parse"),
    ("    rules fact", "decision/eligibility.py", "fact"),
    ("    eligibility (rules evaluate inside)", "decision/eligibility.py", "evaluate"),
    ("      durable-rules evaluate", "rules/engine.py", "evaluate"),
    ("    scoring", "decision/scoring.py", "score"),
    ("    arbitration", "decision/arbitration.py", "arbitrate"),
    ("    explanation (texts, objects)", "decision/flow.py", "_explain"),
    ("      template fields", "decision/explanation.py", "template_values"),
    ("      top features (leaves + paths)", "decision/scoring.py", "explain"),
    ("    decision log commit", "decision/decision_log/redis_log.py", "commit"),
    ("  decision -> proto", "decision/api/grpc_server.py", "decision_to_proto"),
)


def requests(count: int, customers: list[str], tag: str) -> list[pb.DecideRequest]:
    """The same mix as decide_bench: one persona in ten, any touchpoint, a flight in the context."""
    rng = random.Random(7)
    made = []
    for i in range(count):
        customer = PERSONAS[i % 3] if i % 10 == 0 else rng.choice(customers)
        made.append(
            pb.DecideRequest(
                customer_id=customer,
                touchpoint=rng.choice(TOUCHPOINTS),
                context={"flight": f"AZ{rng.randrange(100, 999)}", "cabin": "economy"},
                request_id=f"profile-{tag}-{i}",
            )
        )
    return made


def timed(
    decide: Callable[[pb.DecideRequest], object], batch: list[pb.DecideRequest], between: Callable[[], None]
) -> tuple[list, list]:
    """CPU (this thread) and wall seconds of each call; ``between`` runs before each one, untimed."""
    cpu, wall = [], []
    for request in batch:
        between()
        c0, w0 = time.thread_time(), time.perf_counter()
        decide(request)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return cpu, wall


class Overwrite:
    """Overwrites ``megabytes`` of memory when called (evicting the caches); keeps the CPU it spent itself."""

    def __init__(self, megabytes: float) -> None:
        self.buffer = np.zeros(int(megabytes * 2**20) // 8) if megabytes > 0 else None
        self.cpu_s = 0.0

    def __call__(self) -> None:
        if self.buffer is not None:
            started = time.process_time()
            self.buffer += 1.0
            self.cpu_s += time.process_time() - started


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stage_table(stats: pstats.Stats, decisions: int) -> list[str]:
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for label, module, name in STAGES:
        found = [
            (cumulative, calls)
            for (filename, _, function), (_, calls, _, cumulative, _) in table.items()
            if function == name and filename.replace("\\", "/").endswith(module)
        ]
        if found:
            cumulative, calls = max(found)
            rows.append(f"| {label} | {cumulative / decisions * 1e6:.0f} | {calls / decisions:.2f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=2000, help="decisions per run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (the median is reported)")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25, help="functions listed by own time")
    parser.add_argument("--pyinstrument", action="store_true", help="also print pyinstrument's call tree")
    parser.add_argument("--callgrind", type=int, default=0, metavar="N", help="N decisions instrumented by callgrind")
    parser.add_argument("--cold", type=float, default=0.0, metavar="MB", help="overwrite MB between decisions")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nba-profile-"))
    try:
        return profile(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def profile(args: argparse.Namespace, work: Path) -> int:
    model_dir = load_or_train_demo_model(Path(".nba-data/models/demo"))
    with RedisServer(work / "redis") as redis_server:
        # A generous Redis timeout: on a shared machine the default (25 ms) now and then degrades a decision,
        # which then skips Redis and costs less, and the profile would no longer be of the usual decision.
        settings = Settings(
            _env_file=None,
            port=0,
            http_port=0,
            redis_url=redis_server.url,
            redis_timeout_ms=5000,
            model_dir=model_dir,
            data_dir=work,
        )
        config = store_config(settings, redis_server.url)
        client = connect(config)
        population = generate_population(args.customers, now=time.time())
        RedisOnlineStore(client, config).write_profiles(population, written_at=time.time())
        customers = [p["customer_id"] for p in population]
        flow = build_flow(settings, client, config, *definitions(settings))
        api = DecisionApi(flow, settings.max_context_entries, flow.catalogue.default_max_actions)
        decision_log = flow.decision_log
        assert isinstance(decision_log, RedisDecisionLog)  # build_flow's; its background writer is flushed below

        degraded = 0

        def decide(request: pb.DecideRequest) -> object:
            nonlocal degraded
            response = api.decide(request, None)
            degraded += "unknown_customer" not in response.degraded_codes and response.degraded
            return response

        for request in requests(300, customers, "warm"):
            decide(request)
        decision_log.writer.flush()

        overwrite = Overwrite(args.cold)
        if args.callgrind:
            batch = requests(args.callgrind, customers, "callgrind")
            subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True, capture_output=True)
            for request in batch:
                overwrite()
                decide(request)
            decision_log.writer.flush()
            subprocess.run(["callgrind_control", "--instr=off", str(os.getpid())], check=True, capture_output=True)
            decision_log.close()
            client.close()
            print(f"{args.callgrind} decisions instrumented: instructions per decision = total Ir / {args.callgrind}")
            return 0

        p50s, p90s, walls, process = [], [], [], []
        for run in range(args.runs):
            batch = requests(args.decisions, customers, f"run{run}")
            p0, o0 = time.process_time(), overwrite.cpu_s
            cpu, wall = timed(decide, batch, overwrite)
            decision_log.writer.flush()
            process.append((time.process_time() - p0 - (overwrite.cpu_s - o0)) / len(batch))
            p50s.append(percentile(cpu, 0.5))
            p90s.append(percentile(cpu, 0.9))
            walls.append(percentile(wall, 0.5))

        # The profiler's clock is this thread's CPU time: waiting for Redis or for the GIL is not the decision's
        # cost, and on a shared machine it is most of the wall time.
        profiler = cProfile.Profile(time.thread_time)
        batch = requests(args.decisions, customers, "profiled")
        profiler.enable()
        for request in batch:
            decide(request)
        profiler.disable()
        decision_log.writer.flush()
        stats = pstats.Stats(profiler)

        if args.pyinstrument:
            from pyinstrument import Profiler

            sampler = Profiler(interval=0.0001)
            with sampler:
                for request in requests(args.decisions, customers, "sampled"):
                    decide(request)
            decision_log.writer.flush()
        decision_log.close()
        client.close()

    n = args.decisions
    caches = f"{args.cold:g} MB overwritten before each timed decision" if args.cold else "caches warm"
    print(f"{n} decisions x {args.runs} runs, in process over a real Redis ({caches}); medians over runs")
    print(
        f"CPU per decision, calling thread: p50 {statistics.median(p50s) * 1e6:.0f} us, "
        f"p90 {statistics.median(p90s) * 1e6:.0f} us (runs' p50: {', '.join(f'{p * 1e6:.0f}' for p in p50s)})"
    )
    print(
        f"CPU per decision, whole process (with the background log writer): {statistics.median(process) * 1e6:.0f} us"
    )
    print(f"wall per decision p50: {statistics.median(walls) * 1e6:.0f} us")
    print(f"degraded decisions (other than by design): {degraded}")
    print(f"Python function calls per decision (cProfile): {stats.total_calls / n:.0f}")  # type: ignore[attr-defined]
    print()
    print("| stage (cProfile, CPU, inflated by the profiler) | us per decision | calls per decision |")
    print("|---|---|---|")
    print("\n".join(stage_table(stats, n)))
    print()
    stats.sort_stats("tottime").print_stats(args.top)
    if args.pyinstrument:
        print(sampler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
