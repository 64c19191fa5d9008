"""A real headless Chromium (Debian's package, driven by Playwright; no browser download) on the teller screen."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def chromium_executable() -> str:
    path = os.environ.get("NBA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no chromium on PATH: `make browser` installs Debian's chromium package (make test does it)")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_executable())
        yield chromium
        chromium.close()


@pytest.fixture()
def open_teller(browser: Browser) -> Iterator[Callable[[str], Page]]:
    """Opens the teller screen of the service at a base URL in a fresh browser context, as a counter PC would.

    Every request to another machine is refused and remembered, and so is every script error: the test fails
    on either, so the page is proven to work with no internet.
    """
    contexts = []
    outside: list[str] = []
    errors: list[str] = []

    def only_this_machine(route: Route) -> None:
        url = route.request.url
        if url.startswith("data:") or urlparse(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    def open_page(base_url: str) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.route("**/*", only_this_machine)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base_url}/teller")
        page.wait_for_selector("body[data-ready=true]")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not outside, f"the page reached outside this machine: {outside}"
    assert not errors, f"script errors on the page: {errors}"
