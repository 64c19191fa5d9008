"""The evaluation report in a real browser (Debian's Chromium) at a laptop's 1280 px: every table and figure fits
the window, so nothing of the off-policy estimates is cut off or needs the page scrolled sideways."""

from __future__ import annotations

from pathlib import Path

import pytest

from decision.catalogue import Catalogue
from features.schema import FeatureSchema
from training import loop
from training.demo_log import simulate_decision_log
from training.log_import import write_table


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report ``nba evaluate`` writes, on a demo log of 3,000 customers: a row per action in the estimates."""
    workdir = tmp_path_factory.mktemp("report")
    log = write_table(
        simulate_decision_log(3_000, 2, seed=7, schema=FeatureSchema.load(), catalogue=Catalogue.load()),
        workdir / "log.parquet",
    )
    trained = loop.train(log, propensity_column="propensity", registry=workdir / "registry")
    path = workdir / "report.html"
    loop.evaluate(trained.directory, log, path)
    return path


OVERFLOW = """() => ({
    page: document.documentElement.scrollWidth,
    window: window.innerWidth,
    wider: [...document.querySelectorAll('table, figure, img')]
        .map(e => [e.closest('[id]') ? e.closest('[id]').id : e.tagName, e.tagName,
                   Math.ceil(e.getBoundingClientRect().right)])
        .filter(([, , right]) => right > window.innerWidth),
    tables: document.querySelectorAll('table').length,
    figures: document.querySelectorAll('figure').length,
})"""


def test_the_report_fits_a_1280_pixel_window(browser, report):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        seen = page.evaluate(OVERFLOW)
    finally:
        context.close()
    assert seen["tables"] >= 3 and seen["figures"] >= 5, seen
    assert seen["page"] <= seen["window"], f"the page scrolls sideways: {seen}"
    assert not seen["wider"], f"beyond the window's right edge: {seen['wider']}"
