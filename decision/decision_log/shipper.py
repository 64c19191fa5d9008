"""The log shipper: moves the decisions, outcomes and follow-ups streams from Redis to Parquet files under the log
directory (``decision.decision_log.shipped_files``) and trims from Redis what it shipped.

Where it runs: a process of its own. Shipping parses every entry and writes compressed Parquet, seconds of CPU
per batch under load; in a server process that time would be taken from the decisions' threads (the GIL).
``nba serve`` and ``nba demo`` start it beside the server (``shipper_process``: it dies with them, as the embedded
Redis does); ``nba ship-log`` runs it alone (an operator's sidecar, or ``--once`` from cron) when
``NBA_LOG_SHIPPER=false``.

Exactly once in the files, at least once from Redis. For each stream, the watermark (the last id shipped) is
the largest last id in the files' names; a pass reads with XRANGE from just after it, writes a file under a
temporary name, renames it into place, then ``XTRIM <stream> MINID <watermark+1>``. Killed at any point:

* before the rename: the temporary file is removed at the next start and the batch ships again;
* after the rename, before the trim: the files' watermark skips what they hold, and the trim is done at start;
* after the trim: nothing to do.

Readers also drop a decision id seen twice (keeping the first), a second guard.

One shipper ships per Redis at a time: it holds a lease (``KeyLayout.log_shipper_lease``, SET NX PX, renewed
before every batch and checked again before a file is renamed); another one waits for it to lapse. Hosts sharing
a Redis must share the log directory (a bucket), since whichever holds the lease ships everything.

Its state (per stream: watermark, last shipped at, entries not shipped yet, age of the oldest) is written to
``KeyLayout.log_shipper`` after every pass, for ``nba ship-log --status``; a warning is logged while the oldest
entry waits longer than ``NBA_LOG_LAG_WARN_S``, and when entries after the watermark were trimmed from Redis
before they were shipped (the stream cap: the shipper fell behind).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis

from decision.decision_log.shipped_files import (
    DECISIONS,
    FOLLOW_UPS,
    KINDS,
    OUTCOMES,
    LogDirectory,
    LogDirectoryError,
    StreamId,
)
from decision.stopping import StopFlag, stop_on
from features.redis_keys import KeyLayout

log = logging.getLogger(__name__)

# Test-only: the stage ("before-rename", "after-rename", "after-trim") at which the process exits at once, as a
# kill -9 there would leave it (tests/decision/test_log_shipper.py).
EXIT_AT_ENV = "NBA_TEST_SHIPPER_EXIT_AT"
EXIT_CODE = 86

# Entries per XRANGE (and per XTRIM): ~1.5 MB of decisions, about 0.5 ms of Redis; a 10,000-entry XRANGE took
# 20 ms of Redis, then the time to send 30 MB (benchmarks/RESULTS.md, notes).
READ_PAGE = 500

# One script takes or renews the lease: 2 taken now, 1 renewed, 0 another shipper holds it.
_HOLD_LEASE = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if owner then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseLost(RuntimeError):
    """Another shipper holds the lease: this one ships nothing until it lapses."""


@dataclass
class StreamState:
    """What the shipper knows of one stream (published in its status)."""

    watermark: str | None = None
    shipped_at: float | None = None
    shipped_total: int = 0
    unshipped: int = 0
    oldest_unshipped_age_s: float | None = None
    next: str | None = None  # the first entry after the watermark, as last seen: a later one means entries lost
    lost: int = 0
    lagging: bool = False


class Lease:
    """The right to ship, in Redis; see the module docstring."""

    def __init__(self, client: redis.Redis, key: str, owner: str, lease_s: float) -> None:
        self.client, self.key, self.owner, self.ms = client, key, owner, int(lease_s * 1000)

    def hold(self) -> int:
        """2 taken just now, 1 renewed, 0 another shipper holds it."""
        return int(self.client.eval(_HOLD_LEASE, 1, self.key, self.owner, self.ms))  # type: ignore[arg-type]

    def holder(self) -> str | None:
        value = self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value  # type: ignore[return-value]

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError, OSError):
            self.client.eval(_RELEASE_LEASE, 1, self.key, self.owner)


class LogShipper:
    """Ships the three streams of one Redis to one log directory; see the module docstring."""

    def __init__(
        self,
        client: redis.Redis,
        directory: LogDirectory,
        *,
        keys: KeyLayout | None = None,
        batch_entries: int = 10_000,
        every_s: float = 60.0,
        lag_warn_s: float = 600.0,
        lease_s: float = 30.0,
    ) -> None:
        self.client = client
        self.directory = directory
        self.keys = keys or KeyLayout()
        self.batch_entries = batch_entries
        self.every_s = every_s
        self.lag_warn_s = lag_warn_s
        self.lease_s = lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = Lease(client, self.keys.log_shipper_lease, self.owner, lease_s)
        self.streams = {
            DECISIONS: self.keys.decisions_stream,
            OUTCOMES: self.keys.outcomes_stream,
            FOLLOW_UPS: self.keys.follow_ups_stream,
        }
        self.state = {kind: StreamState() for kind in KINDS}
        self._prepared = False
        self._exit_at = os.environ.get(EXIT_AT_ENV, "")

    def ship(self, force: bool = False) -> int | None:
        """One pass: every batch that is due (full, or its oldest entry ``every_s`` old; any with ``force``) of
        each stream. Returns the entries shipped; None while another shipper holds the lease."""
        taken = self.lease.hold()
        if not taken:
            return None
        if taken == 2 or not self._prepared:
            self._prepare()
        shipped = 0
        try:
            for kind in KINDS:
                shipped += self._ship_stream(kind, force)
        finally:
            self._publish_status()
        return shipped

    def run(self, stop: StopFlag | threading.Event, poll_s: float = 1.0, parent_pid: int | None = None) -> None:
        """Ship until ``stop`` is set (or ``parent_pid`` is no longer this process's parent), then ship what is
        left, due or not (a server stops its shipper once its whole log is in Redis: the files are then the whole
        log); Redis or the log directory failing is logged and retried, never fatal."""
        failing = ""
        orphaned = False
        # Renewed a few times per lease: a pass that found nothing to ship still keeps it.
        poll_s = min(poll_s, self.every_s, self.lease_s / 4)
        while not stop.is_set():
            # Besides the parent-death signal: a full test run once left a shipper behind its killed server.
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("log shipper: its server (pid %d) is gone, stopping", parent_pid)
                orphaned = True
                break
            try:
                if self.ship() is None and failing != "lease":
                    log.info("log shipper: %s holds the lease; waiting to take over", self.lease.holder())
                    failing = "lease"
                elif failing and failing != "lease":
                    log.info("log shipper: shipping again")
                    failing = ""
            except LeaseLost:
                self._prepared = False
            except LogDirectoryError as exc:
                if failing != str(exc):
                    log.error("log shipper: %s; nothing ships until it is fixed (retried every %.0f s)", exc, 5.0)
                    failing = str(exc)
                stop.wait(5.0)
            except (redis.RedisError, OSError) as exc:
                if failing != "redis":
                    log.warning("log shipper: Redis unavailable (%s); retrying", exc)
                    failing = "redis"
                self._prepared = False  # the lease may lapse meanwhile: find the watermark again
            except Exception:  # an entry it cannot write, say: never skipped, retried, and said each time
                log.exception("log shipper: the batch was not shipped; retrying in 5 s")
                self._prepared = False
                stop.wait(5.0)
            stop.wait(poll_s)
        if not orphaned:
            self._last_pass()
        self.lease.release()

    def _last_pass(self) -> None:
        """Everything left in the streams, once; what fails stays in Redis for the next shipper, as ever."""
        try:
            shipped = self.ship(force=True)
        except (LeaseLost, LogDirectoryError, redis.RedisError, OSError) as exc:
            log.warning("log shipper: the last pass did not finish (%s); the rest ships at the next start", exc)
            return
        if shipped:
            log.info("log shipper: shipped the last %d entries", shipped)

    def _prepare(self) -> None:
        """On taking the lease: a writable directory, no temporary files, the watermarks from the files, and what
        they hold trimmed from Redis (a shipper killed after a rename and before its trim)."""
        self.directory.check_writable()
        previous = self._read_status()
        for kind in KINDS:
            removed = self.directory.remove_temporaries(kind)
            if removed:
                log.info("log shipper: removed %d unfinished %s file(s); their entries ship again", removed, kind)
            watermark = self.directory.watermark(kind)
            carried = previous.get(kind, {})
            if carried.pop("watermark", None) != (str(watermark) if watermark else None):
                carried.pop("next", None)  # seen after another watermark: says nothing of entries lost after this one
            state = StreamState(**carried, watermark=str(watermark) if watermark else None)
            self.state[kind] = state
            if watermark is not None:
                self.client.xtrim(self.streams[kind], minid=str(watermark.following()), approximate=False)
        self._prepared = True

    def _ship_stream(self, kind: str, force: bool) -> int:
        shipped = 0
        while self._due(kind, force):
            count = self._ship_batch(kind)
            shipped += count
            if count < self.batch_entries:
                break
        return shipped

    def _due(self, kind: str, force: bool) -> bool:
        stream, state = self.streams[kind], self.state[kind]
        first = self._first_after_watermark(kind)
        if first is None:
            return False
        if state.next is not None and first > StreamId.parse(state.next):
            self._report_lost(kind, StreamId.parse(state.next), first)
        state.next = str(first)
        if force:
            return True
        return int(self.client.xlen(stream)) >= self.batch_entries or time.time() - first.ms / 1000 >= self.every_s

    def _ship_batch(self, kind: str) -> int:
        state = self.state[kind]
        entries = self._read_batch(kind)
        if not entries:
            return 0
        self.directory.write(kind, entries, before_rename=self._before_rename)
        self._stage("after-rename")
        last = entries[-1][0]
        state.watermark, state.next = str(last), None
        state.shipped_at = time.time()
        state.shipped_total += len(entries)
        # Trimmed a page at a time, oldest first, for the same reason as the read.
        for end in range(READ_PAGE - 1, len(entries) - 1, READ_PAGE):
            self.client.xtrim(self.streams[kind], minid=str(entries[end][0].following()), approximate=False)
        self.client.xtrim(self.streams[kind], minid=str(last.following()), approximate=False)
        self._stage("after-trim")
        return len(entries)

    def _read_batch(self, kind: str) -> list[tuple[StreamId, dict]]:
        """Up to ``batch_entries`` entries after the watermark, read ``READ_PAGE`` at a time: Redis runs one command
        at a time, and a single XRANGE of a whole batch held every decision waiting behind it."""
        watermark = self.state[kind].watermark
        entries: list[tuple[StreamId, dict]] = []
        while len(entries) < self.batch_entries:
            start = "-" if watermark is None else f"({watermark}"
            count = min(READ_PAGE, self.batch_entries - len(entries))
            raw: Any = self.client.xrange(self.streams[kind], min=start, max="+", count=count)
            entries += [(StreamId.parse(entry_id), fields or {}) for entry_id, fields in raw]
            if len(raw) < count:
                break
            watermark = str(entries[-1][0])
        return entries

    def _before_rename(self) -> None:
        self._stage("before-rename")
        # The lease may have lapsed while the batch was written (a pause longer than NBA_LOG_LEASE_S): renaming
        # now could put the same entries in the files twice, beside what the new holder ships.
        if self.lease.hold() != 1:
            raise LeaseLost("the lease lapsed while a batch was written; it is dropped")

    def _first_after_watermark(self, kind: str) -> StreamId | None:
        state = self.state[kind]
        start = "-" if state.watermark is None else f"({state.watermark}"
        first: Any = self.client.xrange(self.streams[kind], min=start, max="+", count=1)
        return StreamId.parse(first[0][0]) if first else None

    def _report_lost(self, kind: str, expected: StreamId, first: StreamId) -> None:
        """Entries after the watermark left Redis unshipped (trimmed by the stream cap): say so, and how many
        when Redis counts what it added (7.0 and later)."""
        lost = self._lost_count(kind)
        state = self.state[kind]
        if lost:
            state.lost += lost
        log.error(
            "log shipper: %s entries lost to the stream cap before they were shipped: %s, between %s and %s "
            "(the shipper fell behind; see NBA_LOG_BATCH_ENTRIES and the stream cap)",
            kind,
            f"{lost:,}" if lost else "an unknown number (Redis < 7 does not count them)",
            expected,
            first,
        )

    def _lost_count(self, kind: str) -> int:
        try:
            info: Any = self.client.xinfo_stream(self.streams[kind])
        except redis.ResponseError:
            return 0
        added = info.get("entries-added")
        if added is None:
            return 0
        return max(0, int(added) - int(info.get("length", 0)) - self.state[kind].shipped_total - self.state[kind].lost)

    def _publish_status(self) -> None:
        now = time.time()
        for kind in KINDS:
            state = self.state[kind]
            first = self._first_after_watermark(kind)
            state.unshipped = int(self.client.xlen(self.streams[kind]))
            state.oldest_unshipped_age_s = round(now - first.ms / 1000, 3) if first else None
            if state.next is None and first is not None:
                state.next = str(first)
            self._warn_lag(kind, state)
        status = {
            "owner": self.owner,
            "log_dir": self.directory.url,
            "updated_at": now,
            "streams": {kind: asdict(state) for kind, state in self.state.items()},
        }
        self.client.set(self.keys.log_shipper, orjson.dumps(status))

    def _warn_lag(self, kind: str, state: StreamState) -> None:
        lagging = (state.oldest_unshipped_age_s or 0.0) > self.lag_warn_s
        if lagging and not state.lagging:
            log.warning(
                "log shipper: %s lag %.0f s (%d entries not shipped), over NBA_LOG_LAG_WARN_S=%.0f",
                kind,
                state.oldest_unshipped_age_s,
                state.unshipped,
                self.lag_warn_s,
            )
        elif state.lagging and not lagging:
            log.info("log shipper: %s caught up (%d entries not shipped)", kind, state.unshipped)
        state.lagging = lagging

    def _read_status(self) -> dict[str, dict[str, Any]]:
        """The previous holder's counters (shipped, lost) and the first entry it saw after its watermark, carried
        on; the watermarks themselves come from the files."""
        raw = self.client.get(self.keys.log_shipper)
        if not raw:
            return {}
        streams = orjson.loads(raw).get("streams", {})  # type: ignore[arg-type]
        kept = ("shipped_total", "lost", "next", "watermark")
        return {kind: {k: v[k] for k in kept if k in v} for kind, v in streams.items()}

    def _stage(self, name: str) -> None:
        if self._exit_at == name:
            os._exit(EXIT_CODE)


def read_status(client: redis.Redis, keys: KeyLayout | None = None) -> dict[str, Any] | None:
    """The last status a shipper published (see ``LogShipper``), with the lease's holder; None if none ran."""
    keys = keys or KeyLayout()
    raw = client.get(keys.log_shipper)
    if not raw:
        return None
    status: dict[str, Any] = orjson.loads(raw)  # type: ignore[arg-type]
    holder = client.get(keys.log_shipper_lease)
    status["lease_holder"] = holder.decode() if isinstance(holder, bytes) else holder
    return status


def status_text(status: dict[str, Any] | None) -> str:
    """``nba ship-log --status``: one line per stream."""
    if status is None:
        return "no log shipper has run against this Redis"
    age = time.time() - float(status["updated_at"])
    lines = [
        f"log dir {status['log_dir']}; shipping: {status.get('lease_holder') or 'nobody (no lease held)'}; "
        f"status written {age:.0f} s ago by {status['owner']}",
        f"{'stream':<11} {'watermark':<22} {'shipped':>10} {'in Redis':>9} {'oldest':>9}  last shipped",
    ]
    for kind, s in status["streams"].items():
        oldest = "-" if s["oldest_unshipped_age_s"] is None else f"{s['oldest_unshipped_age_s']:.0f} s"
        shipped_at = "never" if s["shipped_at"] is None else f"{time.time() - s['shipped_at']:.0f} s ago"
        lost = f"  LOST {s['lost']:,}" if s.get("lost") else ""
        lines.append(
            f"{kind:<11} {s['watermark'] or '-':<22} {s['shipped_total']:>10,} {s['unshipped']:>9,} {oldest:>9}"
            f"  {shipped_at}{lost}"
        )
    return "\n".join(lines)


def die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies (Linux PR_SET_PDEATHSIG, as the embedded Redis); exit at once if
    the parent is already gone."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() != parent_pid:
        sys.exit(0)


# How much lower than its server's the priority of a shipper started beside one is (nice(2)).
SHIPPER_NICENESS = 10


def main(argv: Sequence[str] | None = None) -> int:
    """The shipper's process (``nba ship-log``, and the one ``nba serve`` starts with ``--parent-pid``)."""
    from decision.settings import Settings

    parser = argparse.ArgumentParser(description="Ship the decision log from Redis to Parquet files.")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--log-dir", default=None, help="default: NBA_LOG_DIR, else log under NBA_DATA_DIR")
    parser.add_argument("--once", action="store_true", help="ship what is there, then exit")
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process dies")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
        # Beside a server, shipping is background work: at saturation the decisions get the cores first (make
        # bench at normal priority: 2 processes' throughput fell from 1.64x one's to 1.22x once it shipped).
        os.nice(SHIPPER_NICENESS)
        # Ctrl-C reaches the whole process group: the server alone decides when its shipper stops (SIGTERM).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return run_shipper(Settings(), args.redis_url, args.log_dir, once=args.once, parent_pid=args.parent_pid)


def run_shipper(
    settings: Any, redis_url: str, log_dir: str | None = None, *, once: bool = False, parent_pid: int | None = None
) -> int:
    """Ship with ``settings`` (the ``NBA_LOG_*`` ones) until SIGTERM or SIGINT, or one pass with ``once``."""
    client = redis.Redis.from_url(redis_url, socket_timeout=10.0, socket_connect_timeout=5.0)
    try:
        shipper = LogShipper(
            client,
            LogDirectory(log_dir or settings.log_root),
            batch_entries=settings.log_batch_entries,
            every_s=settings.log_ship_every_s,
            lag_warn_s=settings.log_lag_warn_s,
            lease_s=settings.log_lease_s,
        )
        if once:
            return _ship_once(shipper)
        ignores_ctrl_c = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        stop = stop_on(signal.SIGTERM) if ignores_ctrl_c else stop_on(signal.SIGTERM, signal.SIGINT)
        log.info("log shipper %s: shipping to %s", shipper.owner, shipper.directory.url)
        shipper.run(stop, parent_pid=parent_pid)
        return 0
    except LogDirectoryError as exc:
        print(f"nba ship-log: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()


def _ship_once(shipper: LogShipper) -> int:
    try:
        shipped = shipper.ship(force=True)
    finally:
        shipper.lease.release()
    if shipped is None:
        print(f"another shipper ships ({shipper.lease.holder()}): nothing shipped", file=sys.stderr)
        return 1
    print(f"shipped {shipped:,} entries to {shipper.directory.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
