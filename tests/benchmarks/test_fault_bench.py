"""The fault benchmark returns, reports every fault, and leaves nothing running: whatever the service does."""

from __future__ import annotations

from benchmarks.decide_bench import NOTES_MARKER
from benchmarks.fault_bench import (
    FAULTS,
    SECTION_BEGIN,
    SECTION_END,
    Call,
    Sizes,
    left_behind,
    recovered_at,
    render,
    run,
    write_section,
)


def test_every_fault_is_reported_and_nothing_is_left_running(demo_model_dir, tmp_path):
    report = run(Sizes.quick(), demo_model_dir, keep=tmp_path)

    assert report.failure == ""
    assert [w.name for w in report.windows] == ["baseline (no fault)", *FAULTS]
    for i, window in enumerate(report.windows):
        assert any(c.kind == "Decide" and report.window_of(c) == i for c in report.calls), window.name
    assert report.final is not None and report.final.error == ""
    assert report.final.lost_outcomes is not None and report.final.committed_unanswered is not None
    assert left_behind(report.work / "data") == [] and report.left_behind == []

    text = render(report)
    assert text.startswith(SECTION_BEGIN) and text.endswith(SECTION_END)
    for name in FAULTS:
        assert f"| acknowledged outcomes lost, {name} |" in text
        assert f"\n| {name} | " in text
    assert "**met**" in text or "**missed**" in text


def test_the_section_replaces_itself_and_keeps_the_rest(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Decide\n\nmeasured by make bench\n\n{NOTES_MARKER}\n\nnotes people wrote\n")

    write_section(results, f"{SECTION_BEGIN}\nfirst run\n{SECTION_END}")
    write_section(results, f"{SECTION_BEGIN}\nsecond run\n{SECTION_END}")

    text = results.read_text()
    assert text.count(SECTION_BEGIN) == 1 and "second run" in text and "first run" not in text
    # make bench rewrites what comes before its notes marker: the section is after it.
    assert text.index(NOTES_MARKER) < text.index(SECTION_BEGIN)
    assert text.startswith("# Decide\n\nmeasured by make bench\n") and "notes people wrote" in text


def test_a_file_without_the_notes_marker_gets_one_before_the_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    write_section(results, f"{SECTION_BEGIN}\nrun\n{SECTION_END}")
    text = results.read_text()
    assert text.index(NOTES_MARKER) < text.index(SECTION_BEGIN)


def test_recovery_is_the_first_run_of_good_answers_after_the_fault():
    def decide(sent: float, status: str = "OK", degraded: bool = False) -> Call:
        return Call("Decide", sent, status=status, degraded=degraded)

    calls = [decide(0.5), decide(1.0, "UNAVAILABLE"), decide(1.1), decide(1.2, degraded=True), decide(1.3)]
    calls += [decide(1.4), decide(1.5), Call("RecordOutcome", 1.55, status="UNAVAILABLE"), decide(1.6)]

    assert recovered_at(calls, since=1.0, consecutive=3) == 1.3
    assert recovered_at(calls, since=1.0, consecutive=5) is None
