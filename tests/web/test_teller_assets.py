"""The teller screen's files, as the service serves them: all local, all words in every language."""

from __future__ import annotations

import json
import re
import urllib.request
from html.parser import HTMLParser

import pytest

from decision.api.teller import STATIC_DIR
from decision.app import Service

LANGUAGES = ["en", "it", "zh-Hant", "zh-Hans"]


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


class Assets(HTMLParser):
    """Every URL the page loads by itself (scripts, styles, icons, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name) and tag in ("script", "link", "img", "source", "iframe"):
                self.urls.append(str(found[name]))


@pytest.fixture(scope="module")
def base(service: Service) -> str:
    assert service.http is not None
    return service.http.url


@pytest.fixture(scope="module")
def strings() -> dict[str, dict[str, str]]:
    return json.loads((STATIC_DIR / "strings.json").read_text(encoding="utf-8"))


def test_the_page_loads_nothing_from_other_machines_and_says_so_to_the_browser(base):
    status, headers, body = get(f"{base}/teller")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    parser = Assets()
    parser.feed(body.decode())
    assert len(parser.urls) >= 3
    for url in parser.urls:
        if url.startswith("data:"):
            continue
        assert url.startswith("/teller/static/"), url
        status, headers, content = get(f"{base}{url}")
        assert status == 200 and content, url
    for script in STATIC_DIR.glob("*.js"):
        assert not re.search(r"https?://", script.read_text()), f"{script.name} names another machine"
    for style in STATIC_DIR.glob("*.css"):
        assert "url(http" not in style.read_text() and "@import" not in style.read_text()


def test_the_home_page_leads_to_the_teller_screen(base):
    status, _, body = get(f"{base}/")  # urllib follows the redirect
    assert status == 200 and b'id="customer-id"' in body


def test_every_word_of_the_page_exists_in_all_four_languages(strings):
    assert list(strings) == LANGUAGES
    keys = set(strings["en"])
    for language in LANGUAGES:
        assert set(strings[language]) == keys, language
        assert all(value.strip() for value in strings[language].values()), language
        for key, value in strings[language].items():
            placeholders = set(re.findall(r"\{(\w+)\}", value))
            assert placeholders == set(re.findall(r"\{(\w+)\}", strings["en"][key])), (language, key)
    page = (STATIC_DIR / "index.html").read_text()
    script = (STATIC_DIR / "teller.js").read_text()
    used = set(re.findall(r'data-text="(\w+)"', page)) | set(re.findall(r'text\("(\w+)"', script))
    used |= {f"outcome_{o}" for o in ("ACCEPTED", "DECLINED", "IGNORED")}
    assert used - keys == set()
    assert keys - used <= {"accept", "decline", "not_now", "page_title"}  # reached through tables in the script


def test_the_screen_config_comes_from_the_schema_and_the_message_templates(base, service: Service):
    _, _, body = get(f"{base}/teller/config.json")
    config = json.loads(body)
    assert config["languages"] == LANGUAGES and config["touchpoint"] == "BRANCH_TELLER"
    schema = service.flow.schema
    sensitive = {f.derived_name for f in schema.features if f.sensitive and f.model}
    assert set(config["sensitive"]) == sensitive and {"balance", "profitability", "churn_risk"} <= sensitive
    assert config["sensitive"]["balance"]["it"] == "saldo del conto"
    assert config["continuity"]["en"] == ["Open problem:", "Pending application:"]
    assert config["continuity"]["zh-Hant"] == ["未解決問題：", "審核中申請："]
