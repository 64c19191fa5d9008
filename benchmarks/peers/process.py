"""A peer's server as a child process of its own: started with a log file, waited for, stopped with its children.

Each server runs in a new session (its own process group), so stopping it also stops the workers it forked
(gunicorn's for ``feast serve``, MLServer's inference pool) and nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from benchmarks.peers.errors import PeerStartError


class ServerProcess:
    """One peer server: ``start`` runs ``command`` and waits until ``ready()`` is true; ``stop`` ends its group."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log = log
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None

    def start(self, ready: Callable[[], bool], timeout_s: float = 180.0) -> ServerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                raise PeerStartError(f"{self.name} exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                if ready():
                    self.startup_seconds = time.perf_counter() - started
                    return self
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.stop()
                raise PeerStartError(f"{self.name} was not ready after {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout_s: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)  # the group this process leads: the server and its workers only
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=timeout_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers of the group that outlive their parent (a gunicorn worker mid-request) get the same end.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
