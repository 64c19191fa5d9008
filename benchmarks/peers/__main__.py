"""Sequential latency of each peer: ``python -m benchmarks.peers [--calls 2000] [--peers feast,mlserver]``.

Installs each peer once (its own venv under ``--root``), starts it for the demo population, checks its answers,
warms it up, then times ``--calls`` sequential calls and prints p50 / p99 / p99.9 with the set-up timings. Next to
each peer, in alternating blocks of 100 calls, the project's own read of the same customer's features from the
same Redis, as a reference for how loaded the machine was during that peer's run.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from benchmarks.peers.errors import WrongAnswer
from benchmarks.peers.feast_peer import FeastPeer
from benchmarks.peers.mlserver_peer import MLServerPeer
from benchmarks.peers.venv import DEFAULT_ROOT
from decision.catalogue import Catalogue
from features.redis_client import connect
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from features.schema import FeatureSchema
from training.demo_model import load_or_train_demo_model
from training.population import generate_population

DEMO_MODEL_DIR = Path(".nba-data/models/demo")
WARM_UP = 200


def alternating(kinds: dict[str, Callable[[int], None]], calls: int, block: int = 100) -> dict[str, np.ndarray]:
    """Milliseconds of ``calls`` sequential calls of each kind, in alternating blocks, so drift hits all alike."""
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for first in range(0, calls, block):
        for kind, call in kinds.items():
            for i in range(first, min(calls, first + block)):
                started = time.perf_counter()
                call(i)
                samples[kind].append(time.perf_counter() - started)
    return {kind: np.array(values) * 1000.0 for kind, values in samples.items()}


def summary(name: str, samples: np.ndarray) -> str:
    p50, p99, p999 = np.percentile(samples, [50, 99, 99.9])
    return f"{name:<24} {len(samples):>6} calls   p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   p99.9 {p999:7.3f} ms"


@contextlib.contextmanager
def running(
    name: str, population: list[dict[str, str]], args: argparse.Namespace, redis_url: str
) -> Iterator[FeastPeer | MLServerPeer]:
    root = args.root
    if name == "feast":
        feast = FeastPeer(population, FeatureSchema.load(), root)
        report_install(feast.name, feast.install(), feast.venv.first_install_seconds)
        with feast.start(redis_url):
            yield feast
    elif name == "mlserver":
        model_dir = load_or_train_demo_model(DEMO_MODEL_DIR)
        mlserver = MLServerPeer(
            population, model_dir, FeatureSchema.load(), Catalogue.load().action_ids, root,
            parallel_workers=args.mlserver_parallel_workers,
        )  # fmt: skip
        report_install(mlserver.name, mlserver.install(), mlserver.venv.first_install_seconds)
        with mlserver.start():
            yield mlserver
    else:
        raise SystemExit(f"unknown peer {name!r}: feast or mlserver")


def report_install(name: str, seconds: float, first: float | None) -> None:
    if seconds:
        print(f"{name}: installed in {seconds:.0f} s", flush=True)
    else:
        print(f"{name}: already installed (the first install took {first} s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per peer")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--peers", default="feast,mlserver", help="comma-separated: feast, mlserver")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="where the peers' venvs and files live")
    parser.add_argument(
        "--mlserver-parallel-workers",
        type=int,
        default=None,
        help="MLServer's parallel_workers (default: MLServer's own, 1; 0 scores in the server process)",
    )
    args = parser.parse_args()

    now = time.time()
    population = generate_population(args.customers, now=now)
    customer_ids = [p["customer_id"] for p in population]
    lines = []
    with tempfile.TemporaryDirectory(prefix="nba-peers-") as work, RedisServer(Path(work) / "redis") as redis_server:
        # The reference in the same blocks: the project's own read of one customer's features from the same Redis.
        config = RedisStoreConfig(url=redis_server.url, timeout_ms=5000)
        store = RedisOnlineStore(connect(config), config)
        store.write_profiles(population, written_at=now)

        def reference(i: int) -> None:
            if not store.read(customer_ids[i % len(customer_ids)], now).found:
                raise WrongAnswer(f"{customer_ids[i % len(customer_ids)]} not in Redis")

        for name in args.peers.split(","):
            with running(name.strip(), population, args, redis_server.url) as peer:
                timings = ", ".join(f"{k} {v:.1f}" for k, v in peer.timings.items())
                print(f"{peer.name}: answers checked; {timings}", flush=True)
                alternating({"peer": peer.call, "reference": reference}, WARM_UP)
                result = alternating({"peer": peer.call, "reference": reference}, args.calls)
                lines += [
                    summary(peer.name, result["peer"]),
                    summary("  nba Redis read, same run", result["reference"]),
                ]
                print("\n".join(lines[-2:]), flush=True)
        store.client.close()
    print("\n".join(["", f"sequential, {len(population):,} customers, one client thread:", *lines]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
