"""The soak runs end to end on a small scale: windows measured, every answered decision shipped once."""

from __future__ import annotations

from benchmarks.soak import SECTION_BEGIN, SECTION_END, render, soak


def test_a_small_soak_measures_each_window_and_finds_every_decision_in_the_log_once(demo_model_dir, tmp_path):
    windows, summary = soak(600, 200, rate=100.0, share=0.3, model_dir=demo_model_dir, work=tmp_path)

    assert [w.decisions for w in windows] == [200, 400, 600]
    assert all(w.used_memory_mib > 0 and w.rss_mib > 0 and 0 < w.p50_ms <= w.p99_ms for w in windows)
    assert summary["answered"] == 600 - windows[-1].failed
    assert summary["missing"] == 0 and summary["duplicated"] == 0 and summary["log_files"] > 0
    assert summary["outcomes_sent"] > 0
    for w in windows:
        assert w.cost.server_ms > 0 and w.cost.redis_ms > 0 and w.cost.load_ms > 0, w.cost
        assert w.cost.scripts > 0 and w.cost.script_us > 0 and w.cost.keys > 10_000, w.cost
    assert sum(w.cost.shipper_ms for w in windows) > 0, "the shipper beside the server was found and measured"
    text = render(windows, summary, "soak.png")
    assert text.startswith(SECTION_BEGIN) and text.endswith(SECTION_END) and "| 600 |" in text
    assert "| decisions | server CPU ms |" in text
