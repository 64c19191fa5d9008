"""Faults under load: what the service answers, keeps and loses while its Redis or a server process fails.

    python -m benchmarks.fault_bench [--quick] [--write benchmarks/RESULTS.md]

The real service runs as it does in production, in a session of its own: ``nba serve --workers 2`` (the
supervisor of ``decision.workers``, its embedded Redis under a temporary data directory, the demo model trained
once into it, the demo population loaded), on free ports of 127.0.0.1. A few client threads, each with a
connection of its own (SO_REUSEPORT spreads connections over the processes), send Decide calls at a fixed pace
(the mix of ``decide_bench.decide_requests``: every touchpoint, a flight in the context, so check-ins take
seats and the personas get letters) and a RecordOutcome for about half of the answered decisions; every call
has a deadline (250 ms). Each call's status is kept, with the decision id of an answered Decide and the
(decision, action, outcome) of an acknowledged RecordOutcome.

The faults come one after the other, each in its own window, with a settle period between:

1. ``redis kill -9``: SIGKILL of the embedded redis-server (found by its ``--dir`` under the data directory);
2. ``redis SIGSTOP``: redis-server stopped for a while (a hung Redis), then SIGCONT;
3. ``torn spool``: Redis stopped as in 2, so decisions go to the spool files; the first half of a spooled line
   is appended to one of them (power lost mid-append), then Redis continues;
4. ``worker kill -9``: SIGKILL of one server process (the supervisor should start another);
5. ``redis full``: ``maxmemory`` set just above the memory Redis uses, with ``noeviction``, then restored.

Per window RESULTS.md gets: calls and errors by status, degraded answers, the health service's answers,
acknowledged-but-lost outcomes (an OK RecordOutcome whose outcome is neither in the ``log:outcomes`` stream nor
in a spool file; target 0), committed-but-unanswered decisions (a decision stored in Redis whose Decide got no OK
answer), answered decisions that reached neither the log nor a spool, and the recovery time: from the fault's
end to the first of ``consecutive`` OK, non-degraded Decide answers in a row, or "not recovered" after a bounded
wait. When the service does not bring its Redis back itself, the benchmark restarts it (the same command line,
so the same port and append-only file) before the next fault, and says so.

Every wait is bounded and everything started here is stopped on the way out, an exception or Ctrl-C included:
the service's whole process group, any redis-server on the data directory, and a Redis the benchmark restarted.
The section is written between its own markers after the notes marker of RESULTS.md, which ``make bench``
keeps as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import orjson
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks import harness
from benchmarks.decide_bench import NOTES_MARKER, World, decide_requests
from benchmarks.harness import Target, targets_table
from benchmarks.workers_bench import OWN_CONNECTION
from decision.domain import DecisionRequest, Touchpoint
from decision.flow import decision_id_for
from decision.pb import decision_pb2 as pb
from decision.pb import decision_pb2_grpc as pb_grpc
from features.redis_client import connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from training.demo_model import load_or_train_demo_model
from training.population import generate_population

SECTION_BEGIN = "<!-- faults: written by make faults -->"
SECTION_END = "<!-- /faults -->"
KEYS = KeyLayout()
OUTCOMES = (pb.ACCEPTED, pb.DECLINED, pb.IGNORED)
FAULTS = ("redis kill -9", "redis SIGSTOP", "torn spool", "worker kill -9", "redis full")
OK = "OK"


@dataclass(frozen=True)
class Sizes:
    """How long each part runs; ``--quick`` shrinks them all (a test runs it so)."""

    customers: int = 10_000
    threads: int = 3
    per_thread_per_s: float = 25.0
    deadline_s: float = 0.25
    baseline_s: float = 5.0
    stopped_s: float = 2.0
    full_s: float = 4.0
    # After a fault's end, at most this long is waited for the service to recover.
    recovery_s: float = 20.0
    settle_s: float = 3.0
    # This many OK, non-degraded Decide answers in a row mean the service has recovered.
    consecutive: int = 20
    start_timeout_s: float = 120.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            customers=2_000,
            threads=2,
            per_thread_per_s=20.0,
            baseline_s=1.5,
            stopped_s=1.0,
            full_s=1.5,
            recovery_s=4.0,
            settle_s=0.5,
            consecutive=5,
        )


# -- the calls -----------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One call of the load and what it got."""

    kind: str  # "Decide" or "RecordOutcome"
    sent: float  # time.monotonic()
    answered: float = 0.0
    status: str = ""
    degraded: bool = False
    customer_id: str = ""
    touchpoint: int = 0
    request_id: str = ""
    decision_id: str = ""
    action_id: str = ""
    outcome: str = ""
    outcome_id: str = ""


class Load:
    """``threads`` client threads, each on a connection of its own, each sending a Decide every
    ``1 / per_thread_per_s`` seconds and a RecordOutcome for about half of the answered ones."""

    def __init__(self, target: str, world: World, sizes: Sizes) -> None:
        self.target = target
        self.world = world
        self.sizes = sizes
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(sizes.threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5 * self.sizes.deadline_s + 5)

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def _keep(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _run(self, slot: int) -> None:
        rng = random.Random(slot)
        interval = 1.0 / self.sizes.per_thread_per_s
        chunk = 0
        with grpc.insecure_channel(self.target, options=OWN_CONNECTION) as channel:
            stub = pb_grpc.DecisionServiceStub(channel)
            next_at = time.monotonic()
            while not self._stop.is_set():
                requests = decide_requests(self.world, 200, f"fault-{slot}-{chunk}", seed=slot * 7919 + chunk)
                chunk += 1
                for request in requests:
                    if self._stop.wait(max(0.0, next_at - time.monotonic())):
                        return
                    next_at = max(next_at + interval, time.monotonic() - interval)
                    reply = self._decide(stub, request)
                    if reply is not None and reply.actions and rng.random() < 0.5:
                        self._record_outcome(stub, reply, rng)

    def _decide(self, stub: pb_grpc.DecisionServiceStub, request: pb.DecideRequest) -> pb.DecideResponse | None:
        call = Call(
            "Decide",
            time.monotonic(),
            customer_id=request.customer_id,
            touchpoint=request.touchpoint,
            request_id=request.request_id,
        )
        reply = None
        try:
            reply = stub.Decide(request, timeout=self.sizes.deadline_s)
            call.status, call.degraded, call.decision_id = OK, reply.degraded, reply.decision_id
        except grpc.RpcError as error:
            call.status = error.code().name
        call.answered = time.monotonic()
        self._keep(call)
        return reply

    def _record_outcome(
        self, stub: pb_grpc.DecisionServiceStub, decision: pb.DecideResponse, rng: random.Random
    ) -> None:
        action = rng.choice(decision.actions).action_id
        outcome = rng.choice(OUTCOMES)
        call = Call(
            "RecordOutcome",
            time.monotonic(),
            decision_id=decision.decision_id,
            action_id=action,
            outcome=pb.Outcome.Name(outcome),
        )
        request = pb.RecordOutcomeRequest(decision_id=decision.decision_id, action_id=action, outcome=outcome)
        try:
            reply = stub.RecordOutcome(request, timeout=self.sizes.deadline_s)
            call.status, call.outcome_id = OK, reply.outcome_id
        except grpc.RpcError as error:
            call.status = error.code().name
        call.answered = time.monotonic()
        self._keep(call)


def recovered_at(calls: Sequence[Call], since: float, consecutive: int) -> float | None:
    """When the first of ``consecutive`` OK, non-degraded Decide answers in a row (in the order sent, from
    ``since`` on) was sent; None if there is no such run yet."""
    run_start, run = 0.0, 0
    for call in sorted((c for c in calls if c.kind == "Decide" and c.sent >= since), key=lambda c: c.sent):
        if call.status == OK and not call.degraded:
            run_start = call.sent if run == 0 else run_start
            run += 1
            if run >= consecutive:
                return run_start
        else:
            run = 0
    return None


# -- the processes -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisProcess:
    pid: int
    port: int
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    return []


def _pids() -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _alive(pid: int) -> bool:
    """Running or stopped, not a zombie."""
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


def redis_processes(data_dir: Path) -> list[RedisProcess]:
    """Every redis-server working in ``data_dir`` or below. Redis rewrites its command line to
    ``redis-server HOST:PORT`` and works in its ``--dir``, so its working directory says whose it is."""
    root = data_dir.resolve()
    found = []
    for pid in _pids():
        args = _cmdline(pid)
        if not args or not Path(args[0].split(" ")[0]).name.startswith("redis-server") or not _alive(pid):
            continue
        with contextlib.suppress(OSError):
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            if cwd == root or root in cwd.parents:
                address = re.search(r":(\d+)", " ".join(args))
                found.append(RedisProcess(pid, int(address.group(1)) if address else 6379, cwd))
    return found


def service_processes(data_dir: Path) -> list[int]:
    """Every process started with ``NBA_DATA_DIR=data_dir`` (the supervisor and its server processes)."""
    marker = f"NBA_DATA_DIR={data_dir}".encode()
    found = []
    for pid in _pids():
        with contextlib.suppress(OSError):
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") and _alive(pid):
                found.append(pid)
    return found


def left_behind(data_dir: Path) -> list[int]:
    """What still runs on ``data_dir``: nothing, once the benchmark has cleaned up."""
    return sorted({*service_processes(data_dir), *(r.pid for r in redis_processes(data_dir))})


def worker_pids(data_dir: Path) -> list[int]:
    return [pid for pid in service_processes(data_dir) if "decision.workers" in _cmdline(pid)]


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class ServiceUnderTest:
    """``nba serve --workers 2`` in a session of its own over an embedded Redis in ``data_dir``."""

    def __init__(self, work: Path, model_dir: Path, sizes: Sizes) -> None:
        self.work = work
        self.data_dir = work / "data"
        self.model_dir = model_dir
        self.sizes = sizes
        self.process: subprocess.Popen[str] | None = None
        self.target = ""
        self.redis_url = ""
        self.redis_dir: Path | None = None
        self.redis_port = 0
        self.restarted_redis: list[RedisServer] = []
        self.output: list[str] = []
        self.stopped_cleanly: bool | None = None

    def start(self) -> ServiceUnderTest:
        env = {
            **os.environ,
            "NBA_HOST": "127.0.0.1",
            "NBA_PORT": "0",
            "NBA_HTTP_ENABLED": "false",
            "NBA_REDIS_URL": "",
            "NBA_DATA_DIR": str(self.data_dir),
            "NBA_MODEL_DIR": str(self.model_dir),
            "NBA_RULES_RELOAD_S": "0",
            # What it checks is in the streams: no shipper trims them meanwhile (its own kills: its tests).
            "NBA_LOG_SHIPPER": "false",
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines: queue.Queue[str] = queue.Queue()
        with (self.work / "serve.log").open("ab") as errors:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "decision.cli", "serve", "--workers", "2"],
                env=env,
                cwd=self.work,  # no .env of the checkout is read
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                start_new_session=True,  # one process group to stop, out of reach of the terminal's Ctrl-C
            )
        threading.Thread(target=self._read_output, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + self.sizes.start_timeout_s
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            found = re.match(r"serving on (\S+) .*\(Redis (\S+)\)", line)
            if found:
                self.target, self.redis_url = found.group(1), found.group(2)
                self.note_redis()
                return self
        raise RuntimeError(f"nba serve --workers 2 did not start: {self.log_tail()}")

    def _read_output(self, lines: queue.Queue[str]) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            lines.put(line)

    def log_tail(self, chars: int = 2000) -> str:
        path = self.work / "serve.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def redis(self) -> RedisProcess | None:
        """The redis-server on the data directory now (the service may have started another)."""
        found = redis_processes(self.data_dir)
        return found[-1] if found else None

    def note_redis(self) -> None:
        if (found := self.redis()) is not None:
            self.redis_dir, self.redis_port, self.redis_url = found.dir, found.port, found.url

    def ensure_redis(self, wait_s: float) -> str:
        """Redis answering again: '' if it does (within ``wait_s``), else a note that the benchmark restarted it."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if (found := self.redis()) is not None and _answers(found.url):
                self.note_redis()
                return ""
            time.sleep(0.1)
        if self.redis_dir is None:
            return "no Redis to restart"
        try:  # the same directory and port: the same append-only file, the URL the service was given
            self.restarted_redis.append(RedisServer(self.redis_dir, port=self.redis_port).start())
        except (RuntimeError, TimeoutError, OSError) as error:
            return f"Redis down: the service did not restart it, nor could the benchmark ({error})"
        return "Redis restarted by the benchmark (the service did not)"

    def health(self, channel: grpc.Channel) -> str:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
        except grpc.RpcError as error:
            return error.code().name
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to the supervisor, bounded; then SIGKILL to whatever of it or its Redis is left. A Redis the
        benchmark restarted is stopped first: what is left after the supervisor exits is the service's own."""
        for restarted in self.restarted_redis:
            restarted.stop()
        for found in redis_processes(self.data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(found.pid, signal.SIGCONT)  # a stopped Redis would hold up the graceful stop
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
                self.stopped_cleanly = not left_behind(self.data_dir)
            except subprocess.TimeoutExpired:
                self.stopped_cleanly = False
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        deadline = time.monotonic() + 5.0
        while (pids := left_behind(self.data_dir)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


# -- the faults ----------------------------------------------------------------------------------------------


@dataclass
class Window:
    """One fault (or the baseline before them): when it began and ended, and what was seen."""

    name: str
    began: float
    ended: float = 0.0
    closed: float = 0.0
    recovered: float | None = None
    waited_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    health: Counter[str] = field(default_factory=Counter)


def _signal_redis(service: ServiceUnderTest, signum: int, window: Window) -> bool:
    found = service.redis()
    if found is None:
        window.notes.append("no redis-server found on the data directory")
        return False
    os.kill(found.pid, signum)
    return True


def kill_redis(service: ServiceUnderTest, sizes: Sizes, window: Window) -> None:
    _signal_redis(service, signal.SIGKILL, window)


def stop_redis(service: ServiceUnderTest, sizes: Sizes, window: Window) -> None:
    if _signal_redis(service, signal.SIGSTOP, window):
        try:
            time.sleep(sizes.stopped_s)
        finally:
            _signal_redis(service, signal.SIGCONT, window)


def tear_spool(service: ServiceUnderTest, sizes: Sizes, window: Window) -> None:
    if not _signal_redis(service, signal.SIGSTOP, window):
        return
    try:
        time.sleep(sizes.stopped_s)
        spools = sorted(service.data_dir.glob("decision-spool*.jsonl"), key=lambda p: p.stat().st_size)
        path = spools[-1] if spools else service.data_dir / "decision-spool-0.jsonl"
        lines = [line for line in path.read_bytes().splitlines() if line] if path.exists() else []
        torn = lines[-1][: len(lines[-1]) // 2] if lines else b'{"decision": {"decision_id": "torn'
        with path.open("ab") as spool:
            spool.write(torn)
        window.notes.append(f"{len(lines)} lines spooled in {path.name}, half a line appended")
    finally:
        _signal_redis(service, signal.SIGCONT, window)


def kill_worker(service: ServiceUnderTest, sizes: Sizes, window: Window) -> None:
    pids = worker_pids(service.data_dir)
    if not pids:
        window.notes.append("no server process found")
        return
    os.kill(pids[0], signal.SIGKILL)


def fill_redis(service: ServiceUnderTest, sizes: Sizes, window: Window) -> None:
    client = redis.Redis.from_url(service.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        before: dict[str, str] = {str(k): str(v) for k, v in client.config_get("maxmemory*").items()}
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", str(used + 64 * 1024))
        try:
            time.sleep(sizes.full_s)
        finally:
            client.config_set("maxmemory", before.get("maxmemory", "0"))
            client.config_set("maxmemory-policy", before.get("maxmemory-policy", "noeviction"))
    except (redis.RedisError, OSError) as error:
        window.notes.append(f"could not fill Redis: {error}")
    finally:
        client.close()


FAULT_ACTIONS: dict[str, Callable[[ServiceUnderTest, Sizes, Window], None]] = {
    "redis kill -9": kill_redis,
    "redis SIGSTOP": stop_redis,
    "torn spool": tear_spool,
    "worker kill -9": kill_worker,
    "redis full": fill_redis,
}


# -- what was kept -------------------------------------------------------------------------------------------


@dataclass
class Kept:
    """What the log holds, checked against the calls: each count per window index; None when unreadable."""

    lost_outcomes: Counter[int] | None
    committed_unanswered: Counter[int] | None
    answered_in_spool: Counter[int] | None
    answered_not_logged: Counter[int] | None
    error: str = ""


def _spool_entries(data_dir: Path) -> tuple[set[str], set[tuple[str, str, str]]]:
    """Decision ids and outcomes in the spool files, torn lines skipped."""
    decisions: set[str] = set()
    outcomes: set[tuple[str, str, str]] = set()
    for path in data_dir.glob("*spool*.jsonl"):
        for line in path.read_bytes().splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(entry, dict):
                continue
            if isinstance(entry.get("decision"), dict):
                decisions.add(str(entry["decision"].get("decision_id", "")))
            record: dict = entry["outcome"] if isinstance(entry.get("outcome"), dict) else entry
            if "action_id" in record and "decision_id" in record:
                outcomes.add((str(record["decision_id"]), str(record["action_id"]), str(record.get("outcome", ""))))
    return decisions, outcomes


def _stored_outcomes(client: redis.Redis) -> set[tuple[str, str, str]]:
    """(decision_id, action_id, outcome) of every entry of the outcomes stream (fields: decision/decision_log)."""
    stored: set[tuple[str, str, str]] = set()
    start = "-"
    while True:
        entries: list[tuple[str, dict[str, str]]] = client.xrange(  # type: ignore[assignment]
            KEYS.outcomes_stream, min=start, count=2000
        )
        for _, entry in entries:
            stored.add((entry.get("decision_id", ""), entry.get("action_id", ""), entry.get("outcome", "")))
        if len(entries) < 2000:
            return stored
        start = "(" + entries[-1][0]


def _decision_id(call: Call) -> str:
    request = DecisionRequest(call.customer_id, Touchpoint(call.touchpoint), {}, call.request_id, 0)
    return decision_id_for(request)


def check_kept(service: ServiceUnderTest, calls: Sequence[Call], window_of: Callable[[Call], int]) -> Kept:
    spooled, spooled_outcomes = _spool_entries(service.data_dir)
    client = redis.Redis.from_url(service.redis_url, socket_timeout=10.0, decode_responses=True)
    try:
        stored = _stored_outcomes(client)
        decides = [c for c in calls if c.kind == "Decide"]
        pipe = client.pipeline(transaction=False)
        for call in decides:
            pipe.exists(KEYS.decision(call.decision_id or _decision_id(call)))
        exists = pipe.execute()
    except (redis.RedisError, OSError) as error:
        return Kept(None, None, None, None, error=f"Redis unreadable: {error}")
    finally:
        client.close()
    lost: Counter[int] = Counter()
    for call in calls:
        if call.kind == "RecordOutcome" and call.status == OK:
            key = (call.decision_id, call.action_id, call.outcome)
            if key not in stored and key not in spooled_outcomes:
                lost[window_of(call)] += 1
    unanswered: Counter[int] = Counter()
    in_spool: Counter[int] = Counter()
    not_logged: Counter[int] = Counter()
    for call, stored_decision in zip(decides, exists, strict=True):
        if call.status != OK:
            unanswered[window_of(call)] += bool(stored_decision)
        elif not stored_decision:
            (in_spool if call.decision_id in spooled else not_logged)[window_of(call)] += 1
    return Kept(lost, unanswered, in_spool, not_logged)


# -- the run -------------------------------------------------------------------------------------------------


@dataclass
class Report:
    sizes: Sizes
    work: Path
    windows: list[Window] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    at_window_end: list[Kept] = field(default_factory=list)
    final: Kept | None = None
    left_behind: list[int] = field(default_factory=list)
    stopped_cleanly: bool | None = None
    seconds: float = 0.0
    failure: str = ""

    def window_of(self, call: Call) -> int:
        index = 0
        for i, window in enumerate(self.windows):
            if call.sent >= window.began:
                index = i
        return index


def _watch(service: ServiceUnderTest, load: Load, window: Window, until: Callable[[], bool], limit_s: float) -> None:
    """Sample health every 0.25 s while waiting, up to ``limit_s``, for ``until()``."""
    deadline = time.monotonic() + limit_s
    with grpc.insecure_channel(service.target) as channel:
        while time.monotonic() < deadline and not until():
            window.health[service.health(channel)] += 1
            time.sleep(0.25)


def run_fault(service: ServiceUnderTest, load: Load, report: Report, name: str) -> None:
    sizes = report.sizes
    window = Window(name, time.monotonic())
    report.windows.append(window)
    FAULT_ACTIONS[name](service, sizes, window)
    window.ended = time.monotonic()

    def recovered() -> bool:
        window.recovered = recovered_at(load.snapshot(), window.ended, sizes.consecutive)
        return window.recovered is not None

    _watch(service, load, window, recovered, sizes.recovery_s)
    window.waited_s = time.monotonic() - window.ended
    note = service.ensure_redis(1.0)
    if note:
        window.notes.append(note)
    _watch(service, load, window, lambda: False, sizes.settle_s)
    window.closed = time.monotonic()
    report.at_window_end.append(check_kept(service, load.snapshot(), report.window_of))


def run(sizes: Sizes, model_dir: Path | None = None, keep: Path | None = None) -> Report:
    """The whole benchmark in a temporary directory (removed after, unless ``keep``: then the work is there)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="nba-faults-", dir=keep))
    try:
        return run_in(work, sizes, model_dir)
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def run_in(work: Path, sizes: Sizes, model_dir: Path | None) -> Report:
    started = time.monotonic()
    report = Report(sizes, work)
    model = load_or_train_demo_model(model_dir or work / "model")
    service = ServiceUnderTest(work, model, sizes)
    try:
        service.start()
        config = RedisStoreConfig(url=service.redis_url, timeout_ms=5000)
        client = connect(config)
        population = generate_population(sizes.customers, now=time.time())
        RedisOnlineStore(client, config).write_profiles(population, written_at=time.time())
        client.close()
        world = World(service.redis_url, model, work, population)
        with Load(service.target, world, sizes) as load:
            baseline = Window("baseline (no fault)", time.monotonic())
            report.windows.append(baseline)
            _watch(service, load, baseline, lambda: False, sizes.baseline_s)
            baseline.ended = baseline.closed = time.monotonic()
            baseline.recovered = recovered_at(load.snapshot(), baseline.began, sizes.consecutive)
            report.at_window_end.append(check_kept(service, load.snapshot(), report.window_of))
            for name in FAULTS:
                try:
                    run_fault(service, load, report, name)
                except Exception as error:  # one fault that cannot be made must not stop the others
                    report.windows[-1].notes.append(f"the benchmark failed here: {error!r}")
        report.calls = load.snapshot()
        time.sleep(sizes.settle_s)  # the background writers' last batches
        service.ensure_redis(1.0)
        report.final = check_kept(service, report.calls, report.window_of)
    except Exception as error:
        report.failure = f"{error!r}; service log: {service.log_tail(600)}"
    finally:
        service.stop()
        report.stopped_cleanly = service.stopped_cleanly
        report.left_behind = left_behind(service.data_dir)
        report.seconds = time.monotonic() - started
    return report


# -- RESULTS.md ----------------------------------------------------------------------------------------------


def _count(counter: Counter[int] | None, index: int) -> str:
    return "?" if counter is None else f"{counter[index]:,}"


def _statuses(calls: Sequence[Call], kind: str) -> str:
    errors = Counter(c.status for c in calls if c.kind == kind and c.status != OK)
    return ", ".join(f"{status} {n:,}" for status, n in errors.most_common()) or "none"


def _recovery(window: Window) -> str:
    if window.recovered is None:
        return f"**not recovered in {window.waited_s:.0f} s**"
    return f"{max(0.0, window.recovered - (window.ended or window.began)):.2f} s"


def targets(report: Report) -> list[Target]:
    kept = report.final
    found = []
    for i, window in enumerate(report.windows):
        lost = None if kept is None or kept.lost_outcomes is None else float(kept.lost_outcomes[i])
        found.append(Target(f"acknowledged outcomes lost, {window.name}", lost, 0.0, unit="", detail="end of run"))
    return found


def render(report: Report) -> str:
    sizes = report.sizes
    final = report.final or Kept(None, None, None, None, "not checked")
    lines = [
        SECTION_BEGIN,
        "",
        "## Faults under load (`make faults`)",
        "",
        f"Run on {dt.date.today().isoformat()}, {os.cpu_count()} cores, Python {platform.python_version()}, in "
        f"{report.seconds:.0f} s: `nba serve --workers 2` over its embedded Redis, {sizes.customers:,} demo "
        f"customers + the personas, {sizes.threads} client threads at {sizes.per_thread_per_s:g} Decide/s each "
        f"(RecordOutcome for about half the answered ones), every call with a {sizes.deadline_s * 1000:.0f} ms "
        f"deadline. Recovered = {sizes.consecutive} OK, non-degraded Decide answers in a row after the fault's "
        f"end (waited at most {sizes.recovery_s:.0f} s). See `benchmarks/fault_bench.py` for each fault.",
        "",
        targets_table(targets(report)),
        "",
        "| window | Decide calls | Decide errors | degraded | RecordOutcome calls | RecordOutcome errors "
        "| outcomes lost (window end / run end) | committed, unanswered | answered, only in spool "
        "| answered, not logged | recovery | health answers | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, window in enumerate(report.windows):
        calls = [c for c in report.calls if report.window_of(c) == i]
        at_end = report.at_window_end[i] if i < len(report.at_window_end) else None
        health = ", ".join(f"{s} {n}" for s, n in window.health.most_common()) or "-"
        notes = "; ".join(window.notes) or "-"
        lines.append(
            f"| {window.name} | {sum(c.kind == 'Decide' for c in calls):,} | {_statuses(calls, 'Decide')} "
            f"| {sum(c.degraded for c in calls):,} | {sum(c.kind == 'RecordOutcome' for c in calls):,} "
            f"| {_statuses(calls, 'RecordOutcome')} "
            f"| {_count(at_end.lost_outcomes if at_end else None, i)} / {_count(final.lost_outcomes, i)} "
            f"| {_count(final.committed_unanswered, i)} | {_count(final.answered_in_spool, i)} "
            f"| {_count(final.answered_not_logged, i)} | {_recovery(window)} | {health} | {notes} |"
        )
    lines += [""]
    if final.error:
        lines += [f"The log could not be checked at the end: {final.error}.", ""]
    if report.failure:
        lines += [f"**The run stopped early**: {report.failure}", ""]
    cleanly = {True: "yes", False: "**no**", None: "?"}[report.stopped_cleanly]
    left = ", ".join(map(str, report.left_behind)) or "none"
    lines += [
        f"Stopped by SIGTERM with nothing left on its data directory: {cleanly}; processes left after the "
        f"benchmark's own clean-up: {left}.",
        "",
        SECTION_END,
    ]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """This benchmark's section of RESULTS.md, replaced or added after the notes marker (harness.write_section)."""
    harness.write_section(path, text, SECTION_BEGIN, SECTION_END, NOTES_MARKER)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per fault (a test runs it so)")
    parser.add_argument("--write", type=Path, default=None, help="write the section into this RESULTS.md")
    parser.add_argument("--model-dir", type=Path, default=None, help="a demo model to reuse (default: train one)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work directory (logs, data) under here")
    args = parser.parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)  # clean up as on Ctrl-C
    try:
        report = run(Sizes.quick() if args.quick else Sizes(), args.model_dir, args.keep)
    except KeyboardInterrupt:
        print("fault_bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    text = render(report)
    print(text)
    if args.write:
        write_section(args.write, text)
    return 1 if report.failure else 0


if __name__ == "__main__":
    sys.exit(main())
