"""The performance harness's pieces, on tiny numbers: what they compute and report, never how fast anything is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from benchmarks import decide_bench, growth
from benchmarks.decide_bench import NOTES_MARKER, PeerHook, Report, Sizes, World
from benchmarks.harness import (
    Contender,
    Latency,
    Skipped,
    Target,
    closed_loop,
    interleaved,
    latency_table,
    open_loop,
    rss_kib,
    targets_table,
    write_cdf,
)

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_come_from_the_samples_in_milliseconds():
    latency = Latency.of("x", [i / 1000 for i in range(1, 1001)], wall_s=2.0)  # 1..1000 ms
    assert latency.count == 1000
    assert latency.p50 == pytest.approx(500.5)
    assert latency.p99 == pytest.approx(990.01)
    assert latency.p999 == pytest.approx(999.001)
    assert latency.per_s == pytest.approx(500.0)


def test_latency_table_gives_each_percentile_as_a_ratio_of_the_floor():
    floor = Latency("floor", np.array([1.0] * 100), 10.0)
    slow = Latency("Decide", np.array([3.0] * 100), 5.0)
    table = latency_table([floor, slow], floor=floor)
    row = next(line for line in table.splitlines() if line.startswith("| Decide"))
    assert "| 3.000 | 3.000 | 3.000 |" in row
    assert row.endswith("3.00x | 3.00x | 3.00x |")


def test_a_target_says_met_or_missed_with_the_gap():
    missed = Target("p50 / floor", 1.8, 1.3).row()
    assert "**missed**" in missed and "+0.50x" in missed
    met = Target("2 processes / 1", 1.9, 1.7, at_least=True).row()
    assert "**met**" in met and "margin 0.20x" in met
    assert "skipped" in Target("Decide p99 / Feast p99", None, 1.0).row()
    assert targets_table([Target("a", 1.0, 2.0)]).count("\n") == 2


def test_open_loop_measures_latency_from_the_scheduled_send_time():
    """A sender that stalls makes later calls late; their latency includes the wait, not just the service time."""
    service_s = 0.005

    def submit(i: int, done) -> None:
        if i == 0:
            time.sleep(0.05)  # the sender stalls: calls 1.. are sent behind schedule
        threading.Timer(service_s, done).start()

    run = open_loop("stalling sender", submit, rate_per_s=200.0, count=20)
    assert run.latency.count == 20
    assert run.late >= 5
    assert run.worst_late_ms >= 30.0
    # every call's latency covers its lateness plus the service time
    late = run.late_ms
    assert np.all(run.latency.samples_ms >= late + service_s * 1000 * 0.9)
    # call 1 was scheduled 5 ms after call 0 but could only go after the 50 ms stall
    assert run.latency.samples_ms[1] >= 40.0


def test_open_loop_does_not_wait_for_answers_before_sending():
    sent_at: list[float] = []

    def submit(i: int, done) -> None:
        sent_at.append(time.perf_counter())
        threading.Timer(0.2, done).start()  # answers far slower than the arrival interval

    run = open_loop("slow answers", submit, rate_per_s=100.0, count=10)
    assert sent_at[-1] - sent_at[0] < 0.2  # all ten were sent before the first answer came back
    assert run.latency.p50 >= 200.0 * 0.9


def test_open_loop_gives_up_on_calls_never_answered():
    with pytest.raises(TimeoutError, match="1 of 1 calls unanswered"):
        open_loop("never", lambda i, done: None, rate_per_s=10.0, count=1, timeout_s=0.2)


def test_closed_loop_and_interleaving_make_every_call_once():
    seen: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        with lock:
            seen.append(i)

    samples, wall = closed_loop(call, range(50), in_flight=4)
    assert sorted(seen) == list(range(50)) and len(samples) == 50 and wall > 0
    seen.clear()
    runs = interleaved([Contender("a", call), Contender("b", call)], calls=30, in_flight=2, block=10)
    assert [r.count for r in runs] == [30, 30]
    assert sorted(seen) == sorted(list(range(30)) * 2)


def test_a_failed_call_fails_the_closed_loop():
    def call(i: int) -> None:
        if i == 7:
            raise RuntimeError("call 7 failed")

    with pytest.raises(RuntimeError, match="call 7 failed"):
        closed_loop(call, range(20), in_flight=4)


def test_the_cdf_is_a_small_png(tmp_path):
    rng = np.random.default_rng(1)
    runs = [Latency(f"c{i}", rng.lognormal(i / 3, 0.5, 2000), 100.0) for i in range(10)]
    path = write_cdf(runs, tmp_path / "cdf.png", "test")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 150_000


def test_rss_is_read_from_proc():
    assert rss_kib(os.getpid()) > 1000


def test_a_section_whose_module_is_missing_is_skipped_and_said_so(monkeypatch, tmp_path):
    assert decide_bench.optional_module("benchmarks.no_such_section") is None
    monkeypatch.setattr(
        decide_bench,
        "PEERS",
        (PeerHook("Nothing (test)", "benchmarks.no_such_peer", lambda module, world: (module, world)),),
    )
    monkeypatch.setattr(decide_bench, "WORKERS_MODULE", "benchmarks.no_such_workers")
    report = tiny_report()
    world = World("redis://unused", tmp_path, tmp_path, [])
    assert list(decide_bench.peer_contenders(world, report)) == []
    decide_bench.measure_workers(world, report)
    assert [s.section for s in report.skipped] == ["Nothing (test)", "throughput with 1 and 2 server processes"]
    text = decide_bench.render(report)
    assert "- **Nothing (test)**: skipped: `benchmarks.no_such_peer` is not in this checkout." in text
    assert "| throughput, 2 processes / 1 | not measured | | skipped |" in text


def test_a_missing_dependency_inside_a_present_module_is_an_error(tmp_path, monkeypatch):
    package = tmp_path / "present_section"
    package.mkdir()
    (package / "__init__.py").write_text("import a_library_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError):
        decide_bench.optional_module("present_section")


def test_results_keep_the_hand_written_notes(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"old tables\n{NOTES_MARKER}\n\n## Notes\nkeep me\n")
    decide_bench.write_results(path, "new tables\n")
    text = path.read_text()
    assert text.startswith("new tables\n") and "old tables" not in text
    assert text.endswith(f"{NOTES_MARKER}\n\n## Notes\nkeep me\n")


def tiny_report() -> Report:
    ms = np.linspace(1.0, 2.0, 100)
    report = Report(Sizes.quick())
    for n in decide_bench.IN_FLIGHT:
        report.closed[n] = (
            Latency("empty RPC", ms * 0.5, 1.0),
            Latency("Redis GET", ms * 0.1, 1.0),
            Latency("Decide", ms, 1.0),
        )
    report.load = [("start", (1.0, 1.0, 1.0)), ("end", (1.0, 1.0, 1.0))]
    return report


def test_the_report_renders_every_section_with_ratios():
    report = tiny_report()
    report.skipped.append(Skipped("Feast (features only)", "not here"))
    text = decide_bench.render(report)
    for heading in ("## Targets", "## a, b.", "## c.", "## d.", "## e.", "## How the cost grows", "## Latency CDF"):
        assert heading in text
    # Decide is 1/0.6 of the floor at every percentile
    assert "| Decide p50 / floor p50, sequential | 1.67x (target <= 1.3x) | +0.37x | **missed** |" in text


# -- the real pieces, on a real server and Redis -------------------------------------------------------------


def test_closed_and_open_loops_against_the_real_service(service, population, tmp_path, monkeypatch):
    monkeypatch.setattr(decide_bench, "IN_FLIGHT", (1, 2))
    monkeypatch.setattr(decide_bench, "OPEN_LOOP_LOADS", (0.5,))
    sizes = Sizes(calls=40, customers=len(population), open_loop_s=0.5)
    report = Report(sizes)
    world = World(service.redis_url, tmp_path, tmp_path, population, server_pid=os.getpid())
    with grpc.insecure_channel(service.grpc.target) as channel:
        decide_bench.measure_closed(world, channel, report)
        decide_bench.measure_open(world, channel, report)
    assert [run.count for run in report.closed[2]] == [40, 40, 40]
    assert report.saturated_per_s == report.closed[2][2].per_s > 0
    ((load, run),) = report.open
    assert load == 0.5 and run.latency.count == max(20, int(0.5 * report.saturated_per_s * 0.5))
    assert world.failed == 0
    assert world.decisions == 300 + 2 * 40 + run.latency.count
    assert [when for when, _, _ in world.rss_log] == ["after warm-up", "after the closed loops", "after the open loops"]


def test_growth_builds_a_world_of_the_asked_size(redis_server):
    row = growth.measure_size(redis_server.url, n_actions=5, n_features=20, decisions=10, axis="actions")
    assert row.candidates_p50 == 5
    assert row.latency.count == 10 and row.degraded == 0
    assert "| actions | 5 | 20 | 5 |" in growth.render([row], 10)


def test_memory_soak_reports_rss_at_each_checkpoint(loaded_redis, demo_model_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.memory_soak",
            "--redis-url",
            loaded_redis.url,
            "--model-dir",
            str(demo_model_dir),
            "--data-dir",
            str(tmp_path),
            "--customers",
            "1000",
            "--decisions",
            "30",
            "--every",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    points = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["decisions"] for p in points] == [10, 20, 30]
    assert all(p["rss_kib"] > 10_000 and p["degraded"] == 0 for p in points), points
