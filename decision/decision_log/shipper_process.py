"""The log shipper beside a server: ``nba serve`` and ``nba demo`` start it as a process of their own
(``python -m decision.decision_log.shipper``), restart it when it dies, and stop it with them.

A process rather than a thread: shipping parses JSON and writes Parquet, CPU that a thread would take from the
decisions (the GIL). It dies with its owner (Linux PR_SET_PDEATHSIG, set by the shipper itself, as the embedded
Redis does), so a killed server leaves no shipper behind; its lease lapses and the next one takes over.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType

from decision.settings import Settings

log = logging.getLogger(__name__)

FIRST_BACK_OFF_S = 1.0
MAX_BACK_OFF_S = 60.0
STABLE_AFTER_S = 60.0


class ShipperProcess:
    """Runs the shipper for ``redis_url`` with ``settings`` (the NBA_LOG_* ones) until stopped."""

    def __init__(self, settings: Settings, redis_url: str) -> None:
        self.settings = settings
        self.redis_url = redis_url
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        # The thread that starts the process must live as long as it: the parent-death signal follows the thread.
        self._thread = threading.Thread(target=self._keep_running, name="log-shipper", daemon=True)
        self._started = threading.Event()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> ShipperProcess:
        self._thread.start()
        self._started.wait(10.0)
        return self

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "decision.decision_log.shipper",
            "--redis-url",
            self.redis_url,
            "--log-dir",
            self.settings.log_root,
            "--parent-pid",
            str(os.getpid()),
        ]

    def _env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "NBA_LOG_BATCH_ENTRIES": str(s.log_batch_entries),
            "NBA_LOG_SHIP_EVERY_S": repr(s.log_ship_every_s),
            "NBA_LOG_LAG_WARN_S": repr(s.log_lag_warn_s),
            "NBA_LOG_LEASE_S": repr(s.log_lease_s),
        }

    def _keep_running(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started_at = time.monotonic()
            self.process = subprocess.Popen(self._command(), env=self._env())
            self._started.set()
            log.info("log shipper started (pid %d), shipping to %s", self.process.pid, self.settings.log_root)
            code = self.process.wait()
            if self._stopping.is_set():
                return
            failures = 0 if time.monotonic() - started_at > STABLE_AFTER_S else failures + 1
            back_off = min(MAX_BACK_OFF_S, FIRST_BACK_OFF_S * 2 ** max(failures - 1, 0))
            log.warning("log shipper (pid %d) exited with %s; restarting in %.0f s", self.process.pid, code, back_off)
            self._stopping.wait(back_off)

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM: the shipper finishes the batch it writes, releases its lease and exits."""
        self._stopping.set()
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("log shipper pid %d did not stop in %.0f s: killed", process.pid, grace_s)
                process.kill()
                process.wait()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def __enter__(self) -> ShipperProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def shipping_beside(settings: Settings, redis_url: str) -> Iterator[ShipperProcess | None]:
    """The shipper for the duration of a ``with`` block, when ``NBA_LOG_SHIPPER`` is on."""
    if not settings.log_shipper:
        yield None
        return
    with ShipperProcess(settings, redis_url).start() as shipper:
        yield shipper
