"""The pieces every benchmark section is made of: contenders, the closed and open loops, percentiles, targets,
tables, the latency CDF and a process's resident memory.

A contender is a name, a ``call(i)`` that makes the i-th call and waits for it, and an optional set-up and
tear-down (a context manager): the floor, Decide and the peers (Feast, MLServer) all go through the same loops,
so adding one is a few lines. A section whose module is not there (built on another branch) is a
:class:`Skipped` with the reason, and RESULTS.md says so.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Call = Callable[[int], object]
"""Makes the i-th call of a run and returns when it is answered."""

Submit = Callable[[int, Callable[[], None]], None]
"""Sends the i-th call without waiting for it; calls ``done()`` once it is answered (from any thread)."""


@dataclass(frozen=True)
class Contender:
    """Something measured: a name, the call, and what must run around the calls (start a server, ...)."""

    name: str
    call: Call
    setup: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext


@dataclass(frozen=True)
class Skipped:
    """A section that did not run, and why (its module comes from another branch, a peer failed to install)."""

    section: str
    reason: str

    def line(self) -> str:
        return f"- **{self.section}**: skipped: {self.reason}."


@dataclass(frozen=True)
class Latency:
    """Percentiles of one run, in milliseconds, and its throughput."""

    name: str
    samples_ms: np.ndarray = field(repr=False)
    per_s: float

    @classmethod
    def of(cls, name: str, samples_s: Sequence[float], wall_s: float) -> Latency:
        return cls(name, np.asarray(samples_s, dtype=np.float64) * 1000.0, len(samples_s) / wall_s if wall_s else 0.0)

    @property
    def count(self) -> int:
        return int(self.samples_ms.size)

    def percentile(self, p: float) -> float:
        return float(np.percentile(self.samples_ms, p)) if self.count else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def p999(self) -> float:
        return self.percentile(99.9)


def closed_loop(call: Call, calls: range, in_flight: int) -> tuple[list[float], float]:
    """The calls numbered ``calls`` from ``in_flight`` client threads, each sending its next call when the
    previous one is answered; (latency of each call in seconds, wall seconds)."""
    samples: list[list[float]] = [[] for _ in range(in_flight)]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            for i in calls[slot::in_flight]:
                started = time.perf_counter()
                call(i)
                samples[slot].append(time.perf_counter() - started)
        except BaseException as error:  # a failed call fails the run, not just its thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(in_flight)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [s for slot in samples for s in slot], time.perf_counter() - wall


def interleaved(contenders: Sequence[Contender], calls: int, in_flight: int, block: int = 100) -> list[Latency]:
    """Each contender measured in alternating blocks of calls, so drift in the machine's speed hits all alike."""
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    walls = dict.fromkeys(samples, 0.0)
    block = max(block, 8 * in_flight)  # each thread makes several calls per block, or start-up dominates
    for start in range(0, calls, block):
        for contender in contenders:
            latencies, wall = closed_loop(contender.call, range(start, min(calls, start + block)), in_flight)
            samples[contender.name] += latencies
            walls[contender.name] += wall
    return [Latency.of(c.name, samples[c.name], walls[c.name]) for c in contenders]


@dataclass(frozen=True)
class OpenLoopRun:
    """An open-loop run: latency of each call from the time it was scheduled to be sent, and how late sends were."""

    latency: Latency
    rate_per_s: float
    late_ms: np.ndarray = field(repr=False)
    late_threshold_ms: float

    @property
    def late(self) -> int:
        return int((self.late_ms > self.late_threshold_ms).sum())

    @property
    def worst_late_ms(self) -> float:
        return float(self.late_ms.max()) if self.late_ms.size else 0.0

    @property
    def late_p99_ms(self) -> float:
        return float(np.percentile(self.late_ms, 99)) if self.late_ms.size else 0.0


def open_loop(
    name: str, submit: Submit, rate_per_s: float, count: int, late_threshold_ms: float = 1.0, timeout_s: float = 60.0
) -> OpenLoopRun:
    """Send ``count`` calls at a fixed ``rate_per_s``, whatever the answers do (no coordinated omission).

    Call i is scheduled at ``start + i / rate``; its latency runs from that scheduled time to its answer, so a
    sender that falls behind (a busy machine, a slow ``submit``) adds its delay to the latency instead of hiding
    it. How late each call was actually sent is kept too: more than ``late_threshold_ms`` counts as late.
    """
    interval = 1.0 / rate_per_s
    scheduled = np.empty(count)
    sent = np.empty(count)
    answered = np.full(count, np.nan)
    remaining = [count]
    lock = threading.Lock()
    finished = threading.Event()

    def completion(i: int) -> Callable[[], None]:
        def done() -> None:
            answered[i] = time.perf_counter()
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    finished.set()

        return done

    start = time.perf_counter() + 0.01
    for i in range(count):
        scheduled[i] = start + i * interval
        delay = scheduled[i] - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent[i] = time.perf_counter()
        submit(i, completion(i))
    if count and not finished.wait(timeout_s):
        raise TimeoutError(f"{name}: {remaining[0]} of {count} calls unanswered after {timeout_s:.0f} s")
    wall = float(np.nanmax(answered) - start) if count else 0.0
    return OpenLoopRun(
        latency=Latency.of(name, list(answered - scheduled), wall),
        rate_per_s=rate_per_s,
        late_ms=np.maximum(sent - scheduled, 0.0) * 1000.0,
        late_threshold_ms=late_threshold_ms,
    )


@dataclass(frozen=True)
class Target:
    """A goal written as a ratio from the same run: ``measured`` must be <= ``limit`` (or >= when ``at_least``)."""

    goal: str
    measured: float | None
    limit: float
    unit: str = "x"
    at_least: bool = False
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def row(self) -> str:
        if self.measured is None:
            return f"| {self.goal} | not measured | | skipped | {self.detail} |"
        gap = self.measured - self.limit
        sign = "<=" if not self.at_least else ">="
        verdict = "**met**" if self.met else "**missed**"
        shown = f"{self.measured:.2f}{self.unit} (target {sign} {self.limit:g}{self.unit})"
        gap_text = f"{gap:+.2f}{self.unit}" if not self.met else f"margin {abs(gap):.2f}{self.unit}"
        return f"| {self.goal} | {shown} | {gap_text} | {verdict} | {self.detail} |"


def targets_table(targets: Sequence[Target]) -> str:
    lines = ["| target | measured | gap | verdict | from |", "|---|---|---|---|---|"]
    return "\n".join(lines + [t.row() for t in targets])


def latency_table(runs: Sequence[Latency], floor: Latency | None = None) -> str:
    """p50 / p99 / p99.9 and throughput of each run; with a floor, each percentile as a ratio of the floor's."""
    header = "| contender | calls | p50 ms | p99 ms | p99.9 ms | calls/s |"
    rule = "|---|---|---|---|---|---|"
    if floor is not None:
        header += " p50 / floor | p99 / floor | p99.9 / floor |"
        rule += "---|---|---|"
    lines = [header, rule]
    for run in runs:
        line = f"| {run.name} | {run.count:,} | {run.p50:.3f} | {run.p99:.3f} | {run.p999:.3f} | {run.per_s:,.0f} |"
        if floor is not None:
            line += f" {run.p50 / floor.p50:.2f}x | {run.p99 / floor.p99:.2f}x | {run.p999 / floor.p999:.2f}x |"
        lines.append(line)
    return "\n".join(lines)


def write_cdf(runs: Sequence[Latency], path: Path, title: str) -> Path:
    """One chart, every run's latency CDF on a log-x axis; a small PNG (each curve thinned to 400 points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.8), dpi=80)
    quantiles = np.concatenate([np.linspace(0, 0.99, 300), 1 - np.logspace(-2, -4, 100)])
    for run in runs:
        if run.count == 0:
            continue
        points = np.quantile(run.samples_ms, np.clip(quantiles, 0, 1))
        axes.plot(points, quantiles, label=run.name, linewidth=1.2)
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of calls at or below")
    axes.set_ylim(0, 1.001)
    axes.grid(True, which="both", alpha=0.3)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/PID/status), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"process {pid}: no VmRSS in its status")


@contextlib.contextmanager
def elapsed(into: dict[str, float], key: str) -> Iterator[None]:
    """Adds the wall seconds of the block to ``into[key]`` (the run's time budget, reported in RESULTS.md)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        into[key] = into.get(key, 0.0) + time.perf_counter() - started


def write_section(path: Path, text: str, begin: str, end: str, notes_marker: str) -> None:
    """Replace a benchmark's section of RESULTS.md, between its ``begin`` and ``end`` markers, or add it at the end,
    after the notes marker (which ``make bench`` keeps whole); nothing else in the file changes."""
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        before, rest = old.split(begin, 1)
        after = rest.split(end, 1)[1]
        path.write_text(before + text + after)
        return
    if notes_marker not in old:
        old += ("\n" if old and not old.endswith("\n") else "") + notes_marker + "\n"
    path.write_text(old.rstrip("\n") + "\n\n" + text + "\n")
