"""Several server processes on one port: ``nba serve --workers N`` (or ``NBA_WORKERS=N``).

One Python process decides on one core at a time (the GIL), so to use every core the service runs N processes
that bind the same gRPC and HTTP ports with ``SO_REUSEPORT``; the kernel spreads connections over them. This
module is their supervisor:

1. starts the embedded Redis once when ``NBA_REDIS_URL`` is empty (every process then shares it), and restarts it
   on its port when it dies (``features.redis_server``); it dies with the supervisor;
2. picks the ports (a free one for 0) and keeps them reserved by a bound, non-listening socket of its own;
3. replays the spool files of an earlier run, before any process may append to them;
4. starts the N processes with ``subprocess`` (a fresh interpreter each: gRPC Python does not support ``fork``
   once a server runs), each with its index (its own spool file ``decision-spool-<i>.jsonl``);
5. announces the service only once every process said it serves and the port answers a gRPC health check;
6. restarts a process that dies, after a back-off that doubles while they keep dying;
7. on SIGTERM or SIGINT stops the processes (SIGTERM: each drains its calls and writes its pending log), then
   the Redis it started.

A server process watches its parent: if the supervisor itself is killed, the processes stop too.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from decision.settings import Settings
from decision.stopping import stop_on
from features.redis_server import RedisServer

log = logging.getLogger(__name__)

READY = "ready"
FIRST_BACK_OFF_S = 0.5
MAX_BACK_OFF_S = 30.0
# A process that served this long before dying was healthy: its successor starts without waiting.
STABLE_AFTER_S = 60.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening socket holding ``port`` (a free one for 0) for the server processes: with
    SO_REUSEPORT they can bind it too, while nothing else can; never listening, it is never sent a connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class WorkerProcess:
    """One server process and what the supervisor knows about it."""

    index: int
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def start(self) -> None:
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [*self.command, str(self.index)], env=self.env, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        threading.Thread(target=self._read_announcements, name=f"worker-{self.index}", daemon=True).start()

    def _read_announcements(self) -> None:
        process, ready = self.process, self.ready
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            if line.strip() == READY:
                log.info("server process %d (pid %d) serves", self.index, process.pid)
                ready.set()
            else:
                sys.stdout.write(line)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()


class Supervisor:
    """Runs ``settings.workers`` server processes on one port; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded_redis: RedisServer | None = None
        self.redis_url = settings.redis_url
        self.workers: list[WorkerProcess] = []
        self._reserved: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self.port = settings.port
        self.http_port = settings.http_port

    @property
    def target(self) -> str:
        return f"{self.settings.host}:{self.port}"

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self.workers]

    def start(self, timeout_s: float = 120.0) -> Supervisor:
        settings = self.settings
        try:
            if not self.redis_url:
                redis_dir = Path(settings.data_dir) / "redis"
                self.embedded_redis = RedisServer(
                    redis_dir, fsync=settings.redis_fsync, restart=True, maxmemory_mb=settings.redis_maxmemory_mb
                ).start()
                self.redis_url = self.embedded_redis.url
                log.info("embedded Redis started at %s", self.redis_url)
            self._replay_earlier_spools()
            grpc_socket = reserve_port(settings.host, settings.port)
            self._reserved.append(grpc_socket)
            self.port = grpc_socket.getsockname()[1]
            if settings.http_enabled:
                http_socket = reserve_port(settings.host, settings.http_port)
                self._reserved.append(http_socket)
                self.http_port = http_socket.getsockname()[1]
            env = {
                **os.environ,
                "NBA_REDIS_URL": self.redis_url,
                "NBA_PORT": str(self.port),
                "NBA_HTTP_PORT": str(self.http_port),
                "NBA_WORKERS": "1",
            }
            command = [sys.executable, "-m", "decision.workers"]
            self.workers = [WorkerProcess(i, command, env) for i in range(settings.workers)]
            for worker in self.workers:
                worker.start()
            self._wait_until_serving(timeout_s)
        except BaseException:
            self.stop()
            raise
        self._monitor = threading.Thread(target=self._keep_running, name="supervisor", daemon=True)
        self._monitor.start()
        return self

    def _replay_earlier_spools(self) -> None:
        from decision.app import decision_log, replay_earlier_spools, store_config
        from features.redis_client import connect
        from features.redis_store import BULK_TIMEOUT_MS

        config = dataclasses.replace(store_config(self.settings, self.redis_url), timeout_ms=BULK_TIMEOUT_MS)
        client = connect(config)
        log_to = decision_log(self.settings, client, config)
        try:
            replay_earlier_spools(self.settings, log_to)
        finally:
            log_to.close()
            client.close()

    def _wait_until_serving(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            while not worker.ready.wait(0.1):
                code = worker.exited()
                if code is not None:
                    raise RuntimeError(f"server process {worker.index} exited with {code} while starting")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"server process {worker.index} did not start in {timeout_s:.0f} s")
        # The decision service, not "": a process whose Redis is down still serves (degraded) and must start.
        if not health_check(self.target, max(1.0, deadline - time.monotonic()), "nba.v1.DecisionService"):
            raise TimeoutError(f"no health check answered on {self.target}")

    def _keep_running(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                for worker in self.workers:
                    self._look_after(worker)

    def _look_after(self, worker: WorkerProcess) -> None:
        now = time.monotonic()
        if worker.restart_at is not None:
            if now >= worker.restart_at and not self._stopping.is_set():
                worker.start()
                log.info("server process %d restarted (pid %d)", worker.index, worker.pid)
            return
        code = worker.exited()
        if code is None:
            return
        lived = now - worker.started_at
        worker.failures = 0 if lived > STABLE_AFTER_S else worker.failures + 1
        back_off = min(MAX_BACK_OFF_S, FIRST_BACK_OFF_S * 2 ** max(worker.failures - 1, 0)) if worker.failures else 0
        worker.restart_at = now + back_off
        log.warning(
            "server process %d (pid %d) exited with %s after %.1f s; restarting in %.1f s",
            worker.index,
            worker.pid,
            code,
            lived,
            back_off,
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the server processes (each finishes its calls and writes its log), then the Redis started here."""
        self.stop_serving(grace_s)
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
            self.embedded_redis = None

    def stop_serving(self, grace_s: float = 10.0) -> None:
        """Stop the server processes; Redis stays up (for the log shipper's last pass). Idempotent."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join()
        with self._lock:
            running = [w.process for w in self.workers if w.process is not None and w.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("server process pid %d did not stop in %.0f s: killed", process.pid, grace_s)
                process.kill()
                process.wait()
        for sock in self._reserved:
            sock.close()
        self._reserved.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def health_check(target: str, timeout_s: float = 10.0, service: str = "") -> bool:
    """True once the gRPC health service on ``target`` says ``service`` ("": the whole server) is SERVING."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    return False


def serve_worker(index: int) -> int:
    """A server process: serve on the supervisor's ports with its Redis until SIGTERM or the supervisor is gone."""
    from decision.app import Service

    # Ctrl-C reaches the whole process group: the supervisor alone decides when its processes stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = stop_on(signal.SIGTERM)
    supervisor = os.getppid()
    with Service.start(Settings(), worker=index):
        print(READY, flush=True)
        while not stop.wait(0.5):
            if os.getppid() != supervisor:
                log.warning("server process %d: the supervisor is gone, stopping", index)
                break
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One server process of `nba serve --workers N` (started by it).")
    parser.add_argument("index", type=int, help="this process's index, naming its spool file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s %(name)s [{args.index}]: %(message)s")
    return serve_worker(args.index)


if __name__ == "__main__":
    sys.exit(main())
