"""The texts a decision renders read as a person would write them (issue 14, point 5): no blank where a field is
missing, the same person throughout (about the customer for the agent, to the customer on a screen or a
letter), names and titles as the language writes them, sentences that start with a capital, the channel a
letter really goes by, and a "why" that names only the features that made the action likelier and mean
something for it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from decision.catalogue import DELIVERIES, Catalogue
from decision.domain import Decision, DecisionRequest, Touchpoint
from decision.explanation import Narrator, render
from decision.flow import FlowLimits
from decision.offline import offline_flow
from decision.settings import Settings
from decision.strategy import Strategy
from tests.helpers import SCHEMA, strategy_from
from training.population import DEMO_IFE_GOLD, generate_population

NOW = time.time()
SETTINGS = Settings(_env_file=None)
NARRATOR = Narrator(SETTINGS.messages_path, SCHEMA)
CATALOGUE = Catalogue.load(SETTINGS.catalogue_path)
POPULATION = generate_population(120, now=NOW)
IFE_GOLD = next(c for c in POPULATION if c["customer_id"] == DEMO_IFE_GOLD)
CHINESE = ("zh-Hant", "zh-Hans")
# What a blank placeholder leaves behind: two spaces, a space before punctuation, an empty pair of brackets.
BLANK = re.compile(r"\S  \S| [.,;:!?]|\(\)|[^\S\n]$|^[^\S\n]")


@pytest.fixture(scope="module")
def strategy(demo_model_dir: Path) -> Strategy:
    return strategy_from(demo_model_dir, SETTINGS.policy_dir)


def decide(strategy: Strategy, profile: dict[str, str], touchpoint: Touchpoint, **context: str) -> Decision:
    offline = offline_flow(strategy, SCHEMA, FlowLimits(feature_max_age_s=86_400.0, explain_top_features=3), NOW)
    offline.store.write_profiles([profile], NOW)
    return offline.flow.decide(DecisionRequest(profile["customer_id"], touchpoint, context, "r1", 3))


def texts_of(decision: Decision) -> list[str]:
    """Every text a decision renders: greeting, explanation, each action's message, the letters, the channel's."""
    told = [decision.explanation.greeting, decision.explanation.text, decision.channel.text]
    return [t for t in told + [a.message for a in decision.actions] + [f.text for f in decision.follow_ups] if t]


def action_texts(values: dict, context: dict[str, str], language: str) -> dict[tuple[str, str], str]:
    """Every action's message in ``language`` for each delivery, and its letter's confirmation, rendered."""
    rendered = {}
    for delivery in DELIVERIES:
        touchpoint = next(t for t in Touchpoint if t.delivery == delivery)
        fields = NARRATOR.template_values(values, context, language, touchpoint)
        for action in CATALOGUE.actions.values():
            rendered[(action.action_id, delivery)] = render(action.message(language, delivery), fields)
            rendered[(action.action_id, "confirmation")] = render(action.confirmation(language), fields)
    return rendered


@pytest.mark.parametrize("language", NARRATOR.languages)
def test_without_a_flight_in_the_context_no_text_has_a_blank_where_the_flight_was(language: str):
    values = SCHEMA.parse(IFE_GOLD, NOW)
    for (action_id, delivery), text in action_texts(values, {}, language).items():
        assert not BLANK.search(text), (action_id, delivery, text)
        assert "{" not in text and "[" not in text, (action_id, delivery, text)
    assert action_texts(values, {}, "en")[("extra_bag", "screen")] == "Add a checked bag for 30 euros instead of 50."


def test_a_known_flight_is_named_in_every_language_where_english_names_it():
    """The flight placeholder is used alike in every language and delivery: where the English text names the
    flight, so do the others; no voice text names it (the IVR says "today's flight" in every language)."""
    values = SCHEMA.parse(IFE_GOLD, NOW)
    english = action_texts(values, {"flight": "AZ612"}, "en")
    named = {key for key, text in english.items() if "AZ612" in text}
    assert ("extra_legroom_seat", "screen") in named and ("extra_bag", "agent") in named
    assert not any(delivery == "voice" for _, delivery in named)
    for language in NARRATOR.languages:
        told = action_texts(values, {"flight": "AZ612"}, language)
        assert {key for key, text in told.items() if "AZ612" in text} == named, language


def test_the_agent_hears_about_the_customer_and_the_customer_reads_to_them(strategy: Strategy):
    agent = decide(strategy, IFE_GOLD, Touchpoint.CHECKIN_AGENT, flight="AZ610")
    assert agent.actions[0].action_id == "upgrade_first_class"
    assert "Please upgrade Ms Morgan to First Class on AZ610" in agent.explanation.text
    assert "their seat did not work on flight AZ611" in agent.explanation.text
    assert not re.search(r"\b(you|your)\b", agent.explanation.text, re.IGNORECASE), agent.explanation.text
    # the letter the same decision sends is written to the customer
    letter = agent.follow_ups[0].text
    assert "your seat did not work on flight AZ611" in letter and "their" not in letter
    kiosk = decide(strategy, IFE_GOLD, Touchpoint.CHECKIN_KIOSK, flight="AZ610")
    assert not re.search(r"\b(their|them|the customer)\b", kiosk.explanation.text), kiosk.explanation.text


def test_every_english_agent_script_is_about_the_customer_and_every_screen_and_voice_text_to_them():
    values = SCHEMA.parse(IFE_GOLD, NOW)
    for (action_id, delivery), text in action_texts(values, {"flight": "AZ610"}, "en").items():
        if delivery == "agent":
            assert not re.search(r"\b(you|your)\b", text, re.IGNORECASE), (action_id, text)
        else:
            assert not re.search(r"\b(their|them|the customer)\b", text), (action_id, delivery, text)


@pytest.mark.parametrize(
    ("language", "title", "last_name", "greeting"),
    [
        ("zh-Hant", "Sr.", "Pérez", "Pérez先生，歡迎回來。"),
        ("zh-Hans", "Sra.", "García", "García女士，欢迎回来。"),
        ("zh-Hant", "Sig.", "Rossi", "Rossi先生，歡迎回來。"),
        ("en", "Sr.", "Pérez", "Welcome back, Mr Pérez."),
        ("it", "Ms", "Morgan", "Che piacere rivederla, Sig.ra Morgan."),
        ("en", "先生", "陳", "Welcome back, Mr 陳."),
    ],
)
def test_the_greeting_writes_the_title_as_the_language_does(
    strategy: Strategy, language: str, title: str, last_name: str, greeting: str
):
    profile = {"customer_id": "c1", "domain": "airline", "title": title, "last_name": last_name}
    decision = decide(strategy, profile, Touchpoint.CHECKIN_KIOSK, language=language, flight="AZ610")
    assert decision.explanation.greeting == greeting


def test_italian_agent_scripts_put_the_article_before_a_title_and_join_it_with_a_preposition(strategy: Strategy):
    for title, name, article, joined in (("Sig.", "Rossi", "il", "al"), ("Sig.ra", "Esposito", "la", "alla")):
        values = SCHEMA.parse({"domain": "bank", "title": title, "last_name": name}, NOW)
        for (action_id, delivery), text in action_texts(values, {"flight": "AZ610"}, "it").items():
            if delivery != "agent":
                continue
            assert not re.search(rf"(^|\b[Aa]|\bper) {re.escape(title)} ", text), (action_id, text)
            assert re.search(rf"\b({article}|{joined}) {re.escape(title)} {name}\b", text, re.IGNORECASE), text
    anonymous = action_texts(SCHEMA.parse({"domain": "bank"}, NOW), {}, "it")
    assert anonymous[("cobrand_credit_card", "agent")].startswith("Al cliente potrebbe interessare")
    assert "a il cliente" not in " ".join(anonymous.values())
    profile = {"customer_id": "c1", "domain": "bank", "tier": "gold", "title": "Sig.", "last_name": "Rossi"}
    teller = decide(strategy, {**profile, "balance": "90000", "has_credit_card": "1"}, Touchpoint.BRANCH_TELLER)
    assert teller.explanation.language == "en" and "Mr Rossi" in teller.explanation.text
    italian = decide(strategy, {**profile, "first_language": "it"}, Touchpoint.BRANCH_TELLER)
    assert re.search(r"\b(il|Il|al|Al|per il) Sig\. Rossi\b", italian.explanation.text), italian.explanation.text


def test_no_rendered_sentence_starts_with_a_small_letter(strategy: Strategy):
    """A template may start with a placeholder ("{customer} may like ..."): its value starts the sentence."""
    anonymous = decide(strategy, {"customer_id": "c1", "domain": "bank"}, Touchpoint.BRANCH_TELLER)
    assert anonymous.explanation.text[0].isupper(), anonymous.explanation.text
    sentence_start = re.compile(r"(?:^|[.!?]\s+)([a-z])")
    for language in NARRATOR.languages:
        for (action_id, delivery), text in action_texts(SCHEMA.parse({}, NOW), {}, language).items():
            if delivery != "confirmation":  # it continues "To make amends, ..."
                assert not sentence_start.search(text), (language, action_id, delivery, text)
    for customer in POPULATION[:40]:
        for touchpoint in (Touchpoint.BRANCH_TELLER, Touchpoint.CHECKIN_AGENT, Touchpoint.IVR):
            for text in texts_of(decide(strategy, customer, touchpoint, flight="AZ610")):
                assert not sentence_start.search(text), (customer["customer_id"], touchpoint, text)


def test_an_ivr_decisions_apology_letter_goes_by_phone_not_by_the_preferred_kiosk(strategy: Strategy):
    assert IFE_GOLD["preferred_channel"] == "kiosk"
    ivr = decide(strategy, IFE_GOLD, Touchpoint.IVR, flight="AZ610")
    assert [(f.kind, f.channel) for f in ivr.follow_ups] == [("apology_letter", "phone")]
    kiosk = decide(strategy, IFE_GOLD, Touchpoint.CHECKIN_KIOSK, flight="AZ610")
    assert [(f.kind, f.channel) for f in kiosk.follow_ups] == [("apology_letter", "kiosk")]
    by_app = decide(strategy, {**IFE_GOLD, "best_response_channel": "app", "best_channel_response_rate": "0.5"},
                    Touchpoint.IVR, flight="AZ610")  # fmt: skip
    assert [(f.kind, f.channel) for f in by_app.follow_ups] == [("apology_letter", "app")]


def test_the_why_names_only_features_that_made_the_action_likelier_and_mean_something_for_it(strategy: Strategy):
    model_ranked = generic = 0
    for customer in POPULATION[3:]:
        touchpoint = Touchpoint.BRANCH_TELLER if customer["domain"] == "bank" else Touchpoint.CHECKIN_AGENT
        decision = decide(strategy, customer, touchpoint, flight="AZ610")
        if not decision.actions or decision.actions[0].reason_codes != ("model_ranked",):
            continue
        model_ranked += 1
        language, top = decision.explanation.language, decision.actions[0].action_id
        allowed = NARRATOR.explained_by.get(top, frozenset())
        labels = [f.label for f in decision.explanation.top_features if f.contribution > 0 and f.feature in allowed]
        if labels:
            joined = ("、" if language.startswith("zh") else ", ").join(labels)
            reason = NARRATOR.text("reasons", language, "model_ranked").replace("{features}", joined)
        else:
            generic += 1
            reason = NARRATOR.text("reasons", language, "model_ranked_generic")
        why = NARRATOR.text("why", language).replace("{reason}", reason)
        assert why in decision.explanation.text, (customer["customer_id"], top, decision.explanation.top_features)
        if top in ("mortgage_review", "savings_account", "premium_card_upgrade"):
            assert "bags checked per trip" not in decision.explanation.text
    assert model_ranked >= 20 and 0 < generic < model_ranked
