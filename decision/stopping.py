"""Stopping on a signal: a flag the handler sets and the main thread polls.

A ``threading.Event`` set from a signal handler can deadlock: the handler runs in the main thread, between two
bytecodes of whatever it was doing, and ``Event.set`` takes the lock that the interrupted ``Event.wait`` holds (a
full test run once left a log shipper that SIGTERM no longer stopped). A plain attribute cannot.
"""

from __future__ import annotations

import signal
import time


class StopFlag:
    """Set by a signal handler, polled by the loop it stops."""

    def __init__(self) -> None:
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped

    def wait(self, timeout_s: float) -> bool:
        """Sleep until set or ``timeout_s`` passed, in steps of at most 0.1 s; True when set."""
        deadline = time.monotonic() + timeout_s
        while not self.stopped and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        return self.stopped


def stop_on(*signals: signal.Signals) -> StopFlag:
    """A flag that each of ``signals`` sets (installed now, in the main thread)."""
    flag = StopFlag()
    for signum in signals:
        signal.signal(signum, lambda *_: flag.set())
    return flag
