"""The background writer: decisions without side effects beyond the log are answered first and written a moment
later, many per round trip, off the request threads."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from decision.decision_log.contract import Inputs
from decision.domain import Decision

log = logging.getLogger(__name__)


class BackgroundWriter:
    """Writes decisions off the request path, in batches; keeps them findable in memory until written."""

    def __init__(
        self,
        write: Callable[[Sequence[tuple[Decision, Inputs]]], None],
        max_batch: int = 256,
        linger_s: float = 0.005,
    ) -> None:
        self.write = write
        self.max_batch = max_batch
        # Waiting a moment for more decisions makes batches: one round trip and one wake-up for many decisions,
        # which keeps the writer from competing with the request threads for the GIL on every decision.
        self.linger_s = linger_s
        self.waiting: dict[str, Decision] = {}
        self._queue: deque[tuple[Decision, Inputs]] = deque()
        self._wake = threading.Condition()
        self._busy = False
        self._closed = False
        self._flushing = 0
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    def submit(self, decision: Decision, inputs: Inputs) -> None:
        with self._wake:
            self.waiting[decision.decision_id] = decision
            self._queue.append((decision, inputs))
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._wake.notify()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait until everything submitted so far is written (or spooled)."""
        deadline = time.monotonic() + timeout_s
        with self._wake:
            self._flushing += 1
            self._wake.notify_all()
            try:
                while (self._queue or self._busy) and time.monotonic() < deadline:
                    self._wake.wait(0.01)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        self.flush()
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed and not self._queue:
                    return
                linger_until = time.monotonic() + self.linger_s
                while len(self._queue) < self.max_batch and not self._closed and not self._flushing:
                    left = linger_until - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)
                batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
                self._busy = True
            try:
                self.write(batch)
            except Exception:  # the writer must outlive any one batch
                log.exception("decision log batch failed")
            finally:
                with self._wake:
                    for decision, _ in batch:
                        self.waiting.pop(decision.decision_id, None)
                    self._busy = False
                    self._wake.notify_all()
