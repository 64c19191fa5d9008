"""The teller screen in a real headless Chromium, against the real service (gRPC and HTTP on free ports)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from decision.app import Service
from decision.pb import decision_pb2 as pb
from features.redis_keys import KeyLayout

if TYPE_CHECKING:
    from playwright.sync_api import Page

KEYS = KeyLayout()

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "teller"
"""Screenshots of each state the tests reach (ignored by git; CI keeps them as artifacts)."""

# Each test a new visit: the contact policy's offer limits do not carry over from one test to the next.
pytestmark = pytest.mark.usefixtures("fresh_contact_history")

BANK_CUSTOMER = "demo-bank-open-issue"


@pytest.fixture()
def teller(open_teller, service: Service):
    assert service.http is not None
    return open_teller(service.http.url)


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def look_up(page, customer_id: str) -> None:
    """Types (or, for a scanner, pastes) the id and presses Enter, whatever the page's language."""
    page.locator("#customer-id").fill(customer_id)
    page.keyboard.press("Enter")


def focused(page) -> str:
    """What has the keyboard focus: its id, else its accessible label, else its tag."""
    return page.evaluate(
        "() => { const e = document.activeElement;"
        " return e.id || e.getAttribute('aria-label') || (e.name && e.value ? e.name + '=' + e.value : e.tagName); }"
    )


def page_language(page, language: str) -> None:
    """Waits until the page's own words are in ``language`` (its html lang); the page's CSP forbids eval."""
    page.locator(f"html[lang={language}]").wait_for(state="attached")


def outcome_logged(client: redis.Redis, decision_id: str) -> list[tuple[str, dict[str, str]]]:
    """(stream id, fields) of the decision's outcomes in the outcome log data scientists retrain from."""
    entries = client.xrevrange(KEYS.outcomes_stream, count=1000)
    return [(entry_id, fields) for entry_id, fields in entries if fields["decision_id"] == decision_id]


def test_a_teller_serves_demo_bank_open_issue_end_to_end_with_the_keyboard(teller, stub, service, redis_client):
    page = teller
    expected = stub.Decide(pb.DecideRequest(customer_id=BANK_CUSTOMER, touchpoint=pb.BRANCH_TELLER), timeout=5)
    top = expected.actions[0]

    # Keyboard only: the id field has the focus on arrival; a scanner types the id and sends Enter.
    assert focused(page) == "customer-id"
    page.keyboard.type(BANK_CUSTOMER)
    page.keyboard.press("Enter")
    decision = page.locator("#decision")
    decision.wait_for(state="visible")

    # The customer's greeting, the next best product with what to say and why (the teller rendering).
    assert page.locator("#greeting").inner_text() == expected.explanation.greeting
    card = page.locator(".action.primary")
    assert card.locator(".action-title").inner_text() == top.title
    assert card.locator(".action-message").inner_text() == top.message
    assert card.locator(".action-why").inner_text().startswith("Why: ")
    assert page.locator("#more-actions > li").count() == len(expected.actions) - 1

    # Continuity: the open card dispute, in its own panel, not mixed into the reason.
    continuity = page.locator("#continuity-items li")
    assert continuity.count() == 1
    assert "card dispute" in continuity.first.inner_text()
    assert "dispute" not in card.locator(".action-why").inner_text()

    # The sensitive-field rule: a sensitive feature may be a reason, its value never reaches the screen.
    schema = service.flow.schema
    reasons = page.locator("#reasons li")
    assert reasons.count() == len(expected.explanation.top_features)
    sensitive_seen = 0
    for shown, feature in zip(reasons.all(), expected.explanation.top_features, strict=True):
        text = shown.inner_text()
        assert text.startswith(feature.label)
        if schema.feature_for(feature.feature).sensitive:
            sensitive_seen += 1
            assert "not shown at the counter" in text and feature.value not in text
            assert feature.value not in page.locator("body").inner_text()
        else:
            assert feature.value in text
    assert sensitive_seen, "demo-bank-open-issue's reasons include a sensitive feature"
    assert "account balance" in page.locator("#privacy-text").inner_text()
    assert decision.locator("#degraded").is_hidden()
    screenshot(page, "1-decision")

    # Tab from the greeting reaches Accept, with a visible focus ring; Enter records the outcome.
    assert focused(page) == "greeting"
    page.keyboard.press("Tab")
    assert focused(page) == f"Accept: {top.title}"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    result = card.locator(".outcome-result")
    result.filter(has_text="Recorded: Accepted.").wait_for()
    assert page.locator("#status").inner_text() == f"{top.title}: Recorded: Accepted."
    assert card.get_by_role("button", name=f"Accept: {top.title}").get_attribute("aria-pressed") == "true"
    assert card.get_by_role("button", name=f"Decline: {top.title}").is_disabled()
    screenshot(page, "2-accepted")

    decision_id = decision.get_attribute("data-decision-id")
    logged = outcome_logged(redis_client, decision_id)
    assert len(logged) == 1
    outcome_id, fields = logged[0]
    assert fields["action_id"] == top.action_id and fields["outcome"] == "ACCEPTED"
    assert fields["customer_id"] == BANK_CUSTOMER and fields["touchpoint"] == "BRANCH_TELLER"
    assert result.get_attribute("data-outcome-id") == outcome_id

    # Esc brings the keyboard back to the id field, ready for the next customer.
    page.keyboard.press("Escape")
    assert focused(page) == "customer-id"


def test_every_control_has_a_label_and_the_tab_order_follows_the_screen(teller):
    page = teller
    assert page.get_by_label("Customer id").get_attribute("id") == "customer-id"
    for name in ("English", "Italiano", "繁體中文", "简体中文"):
        assert page.get_by_role("radio", name=name).count() == 1
    assert page.get_by_role("button", name="Look up").count() == 1
    assert page.locator("#status").get_attribute("aria-live") == "polite"

    # The id field has the focus on arrival; before it, the language switch (one stop), after it, Look up.
    order = [focused(page)]
    for key in ("Shift+Tab", "Tab", "Tab"):
        page.keyboard.press(key)
        order.append(focused(page))
    assert order == ["customer-id", "language=en", "customer-id", "lookup-button"]

    look_up(page, BANK_CUSTOMER)
    page.locator("#decision").wait_for(state="visible")
    for button in page.locator("#decision button").all():
        label = button.get_attribute("aria-label")
        assert label and ": " in label, label  # "Accept: Free mortgage review", not three anonymous "Accept"s
    for group in page.get_by_role("group").all():
        assert group.get_attribute("aria-label") or group.evaluate("e => e.tagName") == "FIELDSET"


def test_an_unknown_id_says_so_and_marks_the_suggestions_as_general(teller):
    page = teller
    look_up(page, "nobody-at-this-branch")
    banner = page.locator("#degraded")
    banner.wait_for(state="visible")
    summary = banner.locator("#degraded-summary").inner_text()
    assert summary.startswith("No customer found with id nobody-at-this-branch. Check the id with the customer.")
    assert "no profile for customer 'nobody-at-this-branch'" in banner.locator("#degraded-reason").inner_text()
    assert page.locator("#continuity-items").inner_text() == "Nothing open."
    screenshot(page, "3-unknown-id")


def test_an_empty_id_asks_for_one_without_asking_the_service(teller):
    page = teller
    requests = []
    page.on("request", lambda r: requests.append(r.url) if "/v1/" in r.url else None)
    look_up(page, "   ")
    status = page.locator("#status")
    status.filter(has_text="Type or scan a customer id first.").wait_for()
    assert page.get_by_label("Customer id").get_attribute("aria-invalid") == "true"
    assert focused(page) == "customer-id"
    assert page.locator("#decision").is_hidden()
    assert requests == []
    screenshot(page, "4-empty-id")


def test_a_10000_character_id_is_refused_with_the_services_reason(teller):
    page = teller
    look_up(page, BANK_CUSTOMER)
    page.locator("#decision").wait_for(state="visible")

    look_up(page, "x" * 10_000)
    status = page.locator("#status")
    status.filter(has_text="This is not a customer id").wait_for()
    assert "ids are 1 to 64 letters, digits or . _ : @ -" in status.inner_text()
    assert "customer_id: must be 1-64 characters" in status.inner_text()
    assert "(10000 characters)" in status.inner_text()
    assert page.locator("#decision").is_hidden(), "the previous customer's decision is gone"
    assert page.get_by_label("Customer id").get_attribute("aria-invalid") == "true"
    screenshot(page, "5-long-id")


def test_the_language_follows_the_customer_and_the_teller_can_switch_it(teller):
    page = teller
    look_up(page, "demo-italian")
    page_language(page, "it")
    assert page.locator("#greeting").inner_text().startswith(("Che piacere", "Buongiorno"))
    assert page.get_by_role("button", name="Cerca").is_visible()
    assert page.get_by_role("radio", name="Italiano").is_checked()
    assert page.locator("#continuity-heading").inner_text() == "Segnalazioni aperte e richieste in corso"
    screenshot(page, "6-italian")

    first_decision = page.locator("#decision").get_attribute("data-decision-id")
    page.get_by_role("radio", name="Italiano").focus()
    page.keyboard.press("ArrowRight")  # the teller's switch, by keyboard: Traditional Chinese
    page_language(page, "zh-Hant")
    page.locator("#greeting", has_text="歡迎").wait_for()
    assert page.get_by_role("button", name="查詢").is_visible()
    # The same decision retold in the teller's choice, not a new one
    assert page.locator("#decision").get_attribute("data-decision-id") == first_decision
    assert focused(page) == "language=zh-Hant", "the focus stays on the switch"
    screenshot(page, "7-traditional-chinese")

    page.keyboard.press("ArrowRight")
    page_language(page, "zh-Hans")
    page.locator("#greeting", has_text="欢迎").wait_for()
    assert page.get_by_role("button", name="查询").is_visible()
    assert page.locator("#privacy-heading").inner_text() == "柜台隐私"
    screenshot(page, "8-simplified-chinese")

    # The next customer is served in their own language again.
    look_up(page, BANK_CUSTOMER)
    page_language(page, "en")
    page.locator("#greeting", has_text="Welcome back").wait_for()


def test_switching_the_language_back_and_forth_retells_one_decision_and_counts_no_new_offers(
    teller, service, redis_client
):
    """English -> Italiano -> Traditional Chinese -> English for an untouched customer: every switch shows the
    visit's one decision in the new words; the contact policy (at most 6 offers a visit) counts its offers once."""
    page = teller
    look_up(page, BANK_CUSTOMER)
    page_language(page, "en")
    page.locator("#greeting", has_text="Welcome back").wait_for()
    decision = page.locator("#decision")
    decision_id = decision.get_attribute("data-decision-id")
    titles = page.locator(".action .action-title").all_inner_texts()
    assert titles, "an untouched bank customer gets offers"
    service.flush_log()
    counted = redis_client.hgetall(KEYS.contacts(BANK_CUSTOMER))
    assert counted, "the offers are counted in the contact history"

    switches = (("Italiano", "it", "Che piacere"), ("繁體中文", "zh-Hant", "歡迎"), ("English", "en", "Welcome"))
    for name, language, greeting in switches:
        page.get_by_role("radio", name=name).check()
        page_language(page, language)
        page.locator("#greeting", has_text=greeting).wait_for()
        assert decision.get_attribute("data-decision-id") == decision_id
        shown = page.locator(".action .action-title").all_inner_texts()
        assert len(shown) == len(titles), f"{language}: the same offers, not fewer"
    assert page.locator(".action .action-title").all_inner_texts() == titles
    # Looking the customer up again within the visit shows the same decision too.
    look_up(page, BANK_CUSTOMER)
    page.locator("#lookup-button:enabled").wait_for()
    assert decision.get_attribute("data-decision-id") == decision_id
    service.flush_log()
    assert redis_client.hgetall(KEYS.contacts(BANK_CUSTOMER)) == counted, "no offer counted twice"


def test_a_newer_services_open_items_are_preferred_and_fields_the_page_does_not_know_are_ignored(teller):
    """A service that lists open items as their own field (and sends fields this page has never heard of)."""
    page = teller
    listed = "Pending application: a mortgage, sent on 1 November."

    def newer_service(route) -> None:
        response = route.fetch()
        body = response.json()
        body["openItems"] = [{"kind": "pending_application", "text": listed, "detailed": True}]
        body["somethingNew"] = {"nested": [1, {"deeper": True}]}
        body["explanation"]["alsoNew"] = "text"
        route.fulfill(response=response, json=body)

    page.route("**/v1/decide", newer_service)
    look_up(page, BANK_CUSTOMER)
    page.locator("#decision").wait_for(state="visible")
    assert page.locator("#continuity-items li").all_inner_texts() == [listed]
    assert "dispute" not in page.locator(".action.primary .action-why").inner_text()  # still cut from the reason
    assert page.locator(".action.primary .action-title").inner_text()


# -- Redis down: the decision is shown as degraded, and an outcome that cannot be stored says so --------------


def test_a_degraded_decision_is_shown_as_such_and_an_unstored_outcome_is_not_called_recorded(open_teller, own_service):
    service, server = own_service
    assert service.http is not None
    page = open_teller(service.http.url)
    server.stop()

    look_up(page, BANK_CUSTOMER)
    banner = page.locator("#degraded")
    banner.wait_for(state="visible")
    assert banner.locator("#degraded-summary").inner_text().startswith("Limited decision:")
    assert "decided from the request context alone" in banner.locator("#degraded-reason").inner_text()
    assert "Limited decision:" in page.locator("#status").inner_text()  # read out by screen readers too

    card = page.locator(".action.primary")
    card.get_by_role("button", name="Accept:").first.click()  # the label names the action after "Accept:"
    result = card.locator(".outcome-result")
    result.filter(has_text="Not recorded").wait_for()
    assert result.inner_text() == "Not recorded: the service cannot store it right now. Try again in a moment."
    assert card.get_by_role("button", name="Accept:").first.is_enabled(), "the teller can try again"
    screenshot(page, "9-degraded")
