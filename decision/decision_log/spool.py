"""The local spool: decisions that could not reach the log while Redis was down, kept in a file (one per server
process) until it is back."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from decision.decision_log.contract import Inputs
from decision.decision_log.records import decision_from_json
from decision.domain import Decision

log = logging.getLogger(__name__)


def spool_path(data_dir: Path, worker: int | None = None) -> Path:
    """A server process's spool file: one per process (``decision-spool-<worker>.jsonl`` when several share
    the port), so no two processes ever append to the same file."""
    name = "decision-spool.jsonl" if worker is None else f"decision-spool-{worker}.jsonl"
    return Path(data_dir) / name


class SpoolFull(RuntimeError):
    """The spool file reached its cap: the decision could not be kept anywhere."""


class DecisionSpool:
    """Decisions that could not reach the log while Redis was down, kept in a local file until it is back.

    One JSON line per decision. A line cut short (power loss, a full disk mid-append) costs that line only: the
    next append starts a fresh line, and a replay stores every readable line and keeps the unreadable bytes in
    ``<spool>.rejected`` beside it, named in the log, instead of failing or dropping them. ``fsync`` follows the
    embedded Redis's policy: "always" puts each line on disk before the decision is answered, "everysec" at most
    once a second. The file never grows past ``max_bytes``: a decision that does not fit is refused (SpoolFull),
    counted in ``dropped`` and logged as an error by the caller.
    """

    def __init__(self, path: Path, fsync: str = "everysec", max_bytes: int = 256 << 20) -> None:
        self.path = path
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.dropped = 0
        # The decisions appended since the file was last emptied: an outcome for one of them must be told to
        # retry, not that the decision is unknown. At most the cap's worth (~5 KB of file per decision).
        self.holds: set[str] = set()
        self._synced_at = 0.0
        self._lock = threading.Lock()

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rejected")

    @property
    def pending(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, record: bytes, decision_id: str = "") -> None:
        """Add one decision's line; raise SpoolFull when the file would pass its cap."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as spool:
                size = spool.seek(0, 2)
                # Each line starts with a newline too (replay skips empty lines): whatever precedes it, a torn tail
                # or bytes another writer appended a moment ago, it stays a line of its own, with no check to race.
                line = b"\n" + record + b"\n"
                if size + len(line) > self.max_bytes:
                    self.dropped += 1
                    raise SpoolFull(f"the spool {self.path.name} is full ({self.max_bytes >> 20} MB)")
                spool.write(line)
                spool.flush()
                now = time.monotonic()
                if self.fsync == "always" or now - self._synced_at >= 1.0:
                    os.fsync(spool.fileno())
                    self._synced_at = now
            if decision_id:
                self.holds.add(decision_id)

    def replay(self, store: Callable[[Sequence[tuple[Decision, Inputs]]], None], chunk: int = 256) -> int:
        """Write spooled decisions with ``store``, ``chunk`` at a time; the file is emptied only once every entry
        is in. A replay cut short is repeated whole next time, which stores nothing twice: the log skips a
        decision whose key exists. Unreadable lines go to ``rejected_path``; returns the decisions stored."""
        with self._lock:
            if not self.pending:
                return 0
            batch: list[tuple[Decision, Inputs]] = []
            rejected: list[bytes] = []
            for line in self.path.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    entry = orjson.loads(line)
                    batch.append((decision_from_json(orjson.dumps(entry["decision"])), entry["inputs"]))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    rejected.append(line)
            for start in range(0, len(batch), chunk):
                store(batch[start : start + chunk])
            if rejected:
                with self.rejected_path.open("ab") as kept:
                    kept.write(b"".join(line + b"\n" for line in rejected))
                    kept.flush()
                    os.fsync(kept.fileno())
                log.warning(
                    "%s: %d unreadable line(s) (cut short by a crash or a full disk) kept in %s; %d decisions replayed",
                    self.path.name,
                    len(rejected),
                    self.rejected_path.name,
                    len(batch),
                )
            self.path.write_bytes(b"")
            self.holds.clear()
            return len(batch)
