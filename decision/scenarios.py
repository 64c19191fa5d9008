"""Rule scenarios: given a customer, a touchpoint and a context, the decision the rules must lead to.

Business analysts write them as data next to the rules (``rules/scenarios/*.yaml``; the comment at the top of
any of them explains the format) and run them with ``nba rules test``. Each scenario runs the whole decision
flow (rules, model, arbitration, explanation, capacity) offline, on an in-memory store, with the rules being
tested; the end-to-end tests run the same files against the gRPC service and Redis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from decision.domain import Decision, DecisionRequest, Touchpoint
from decision.flow import FlowLimits
from decision.offline import offline_flow
from decision.strategy import Strategy
from features.contact_history import Contact
from features.schema import FeatureSchema

DEFAULT_SCENARIO_DIR = Path(__file__).resolve().parent.parent / "rules" / "scenarios"
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_SCENARIO_KEYS = ("id", "scenario", "description", "given", "expect")
_GIVEN_KEYS = ("touchpoint", "context", "customer", "contacts", "capacity_left")
EXPECT_KEYS = (
    "fired",
    "not_fired",
    "first_action",
    "mandatory",
    "actions_include",
    "actions_exclude",
    "candidates_include",
    "candidates_exclude",
    "offers_at_most",
    "suppressed",
    "language",
    "channel",
    "text_contains",
    "text_excludes",
    "follow_ups",
    "follow_up_channels",
    "no_follow_ups",
    "open_items",
    "open_items_detailed",
    "degraded_codes",
)
_CONTACT_EVENTS = {"offered": "offered", "declined": "declined", "sent": "sent"}


class ScenarioFileError(ValueError):
    """A scenario file is invalid; the message names the file, the scenario and the key."""


@dataclass(frozen=True)
class GivenContact:
    event: str
    name: str
    touchpoint: str
    ago_s: float


@dataclass(frozen=True)
class Scenario:
    """One scenario of a file: what is given and what is expected of the decision."""

    scenario_id: str
    file: str
    code: str  # the brief's scenario, S1..S10
    description: str
    touchpoint: Touchpoint
    context: Mapping[str, str]
    customer: Mapping[str, Any] | None  # typed values by the names rules use; None = an unknown customer
    contacts: tuple[GivenContact, ...]
    capacity_left: Mapping[str, int]
    expect: Mapping[str, Any]

    @property
    def customer_id(self) -> str:
        return f"scenario-{self.scenario_id}"

    def request(self, request_id: str = "") -> DecisionRequest:
        return DecisionRequest(self.customer_id, self.touchpoint, dict(self.context), request_id, 20)

    def profile(self, schema: FeatureSchema, now: float) -> dict[str, str] | None:
        """The customer as the feature store holds it (text values; timestamps as epoch seconds)."""
        if self.customer is None:
            return None
        return {"customer_id": self.customer_id, **stored_values(self.customer, schema, now)}

    def contact_history(self, now: float) -> list[Contact]:
        return [Contact(c.event, c.name, c.touchpoint, now - c.ago_s) for c in self.contacts]


@dataclass
class ScenarioResult:
    scenario: Scenario
    failures: list[str] = field(default_factory=list)
    decision: Decision | None = None

    @property
    def passed(self) -> bool:
        return not self.failures


def load_scenarios(directory: Path, schema: FeatureSchema) -> list[Scenario]:
    """Every scenario of every ``*.yaml`` in ``directory`` (the shipped ones: DEFAULT_SCENARIO_DIR), checked against
    ``schema``; ScenarioFileError names what is wrong."""
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise ScenarioFileError(f"{directory}: no *.yaml scenario files")
    scenarios: list[Scenario] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ScenarioFileError(f"{path.name}: not valid YAML: {error}") from None
        if not isinstance(document, dict) or not isinstance(document.get("scenarios"), list):
            raise ScenarioFileError(f"{path.name}: expected a top-level 'scenarios:' list")
        for raw in document["scenarios"]:
            scenario_id = raw.get("id") if isinstance(raw, dict) else None
            where = f"{path.name}: scenario {scenario_id!r}"
            if isinstance(scenario_id, str) and scenario_id in seen:
                raise ScenarioFileError(f"{where}: duplicate id, first used in {seen[scenario_id]}")
            try:
                scenarios.append(_scenario(raw, path.name, schema))
            except ValueError as problem:
                raise ScenarioFileError(f"{where}: {problem}") from None
            seen[str(scenario_id)] = path.name
    return scenarios


def _scenario(raw: Any, file: str, schema: FeatureSchema) -> Scenario:
    if not isinstance(raw, dict):
        raise ValueError("a scenario is a mapping with id, given and expect")
    _only(raw, _SCENARIO_KEYS, "a scenario")
    if not isinstance(raw.get("id"), str) or not _ID.match(raw["id"]):
        raise ValueError("'id' must be lower-case letters, digits and underscores")
    given, expect = raw.get("given"), raw.get("expect")
    if not isinstance(given, dict) or not isinstance(expect, dict) or not expect:
        raise ValueError("needs 'given' (touchpoint, context, customer, ...) and 'expect' (what must be true)")
    _only(given, _GIVEN_KEYS, "given")
    _only(expect, EXPECT_KEYS, "expect")
    try:
        touchpoint = Touchpoint.named(given.get("touchpoint"))
    except ValueError as exc:
        raise ValueError(f"given.touchpoint: {exc}") from None
    customer = given.get("customer")
    if customer is not None:
        if not isinstance(customer, dict):
            raise ValueError("given.customer: a mapping of features (by the names rules use), or null for unknown")
        unknown = sorted(set(map(str, customer)) - {f.derived_name for f in schema.features})
        if unknown:
            raise ValueError(f"given.customer: unknown feature(s) {', '.join(unknown)} (see features/schema.yaml)")
    context = given.get("context") or {}
    if not isinstance(context, dict):
        raise ValueError("given.context: a mapping of text values, e.g. {flight: AZ610}")
    return Scenario(
        scenario_id=raw["id"],
        file=file,
        code=str(raw.get("scenario", "")),
        description=str(raw.get("description", "")),
        touchpoint=touchpoint,
        context={str(k): str(v) for k, v in context.items()},
        customer=customer,
        contacts=tuple(_contact(i, item, touchpoint) for i, item in enumerate(given.get("contacts") or ())),
        capacity_left={str(k): int(v) for k, v in (given.get("capacity_left") or {}).items()},
        expect=expect,
    )


def _contact(index: int, item: Any, touchpoint: Touchpoint) -> GivenContact:
    where = f"given.contacts[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: e.g. {{declined: lounge_pass, days_ago: 3}}")
    events = [key for key in item if key in _CONTACT_EVENTS]
    if len(events) != 1:
        raise ValueError(f"{where}: exactly one of {', '.join(_CONTACT_EVENTS)} (the action or follow-up)")
    ago = item.get("days_ago", 0) * 86_400 + item.get("hours_ago", 0) * 3600
    if ago <= 0:
        raise ValueError(f"{where}: when: days_ago or hours_ago, more than 0")
    where_made = str(item.get("touchpoint", touchpoint.name))
    return GivenContact(_CONTACT_EVENTS[events[0]], str(item[events[0]]), where_made, float(ago))


def _only(mapping: Mapping[str, Any], allowed: Sequence[str], what: str) -> None:
    unknown = sorted(set(map(str, mapping)) - set(allowed))
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {', '.join(unknown)}; accepted: {', '.join(allowed)}")


def stored_values(customer: Mapping[str, Any], schema: FeatureSchema, now: float) -> dict[str, str]:
    """Typed values (a timestamp given as NAME_days, days ago) -> the text the feature store holds."""
    stored = {}
    for feature in schema.features:
        value = customer.get(feature.derived_name)
        if value is None:
            continue
        if feature.type == "timestamp":
            stored[feature.name] = repr(now - float(value) * 86_400)
        elif isinstance(value, bool):
            stored[feature.name] = "true" if value else "false"
        else:
            stored[feature.name] = str(value)
    return stored


def check(decision: Decision, expect: Mapping[str, Any]) -> list[str]:
    """What the decision gets wrong against the expectations; empty when it meets them all."""
    summary = summarise(decision)
    return compare(summary, expect)


def summarise(decision: Decision) -> dict[str, Any]:
    """The parts of a decision scenarios speak about (the gRPC tests build the same from a DecideResponse)."""
    return {
        "fired": [r.rule_id for r in decision.explanation.rules_fired],
        "actions": [(a.action_id, a.mandatory) for a in decision.actions],
        "candidates": sorted(decision.candidates),
        "suppressed": {s.action_id: s.reason_code for s in decision.explanation.suppressed},
        "language": decision.explanation.language,
        "channel": decision.channel.channel,
        "text": " ".join(
            [decision.explanation.greeting, decision.explanation.text, *(a.message for a in decision.actions)]
        ),
        "follow_ups": {f.kind: f.text for f in decision.follow_ups},
        "follow_up_channels": {f.kind: f.channel for f in decision.follow_ups},
        "open_items": [(i.kind, i.detailed, i.text) for i in decision.open_items],
        "degraded_codes": list(decision.degraded_codes),
    }


def compare(summary: Mapping[str, Any], expect: Mapping[str, Any]) -> list[str]:
    failures = []
    fired = set(summary["fired"])
    action_ids = [a for a, _ in summary["actions"]]
    mandatory = {a for a, m in summary["actions"] if m}
    for rule in expect.get("fired", ()):
        if rule not in fired:
            failures.append(f"rule {rule} did not fire (fired: {', '.join(sorted(fired)) or 'none'})")
    for rule in expect.get("not_fired", ()):
        if rule in fired:
            failures.append(f"rule {rule} fired")
    if "first_action" in expect:
        first = action_ids[0] if action_ids else None
        if first != expect["first_action"]:
            failures.append(f"first action is {first}, expected {expect['first_action']}")
    for action in expect.get("mandatory", ()):
        if action not in mandatory:
            failures.append(f"{action} is not a mandatory action (mandatory: {', '.join(sorted(mandatory)) or 'none'})")
    for action in expect.get("actions_include", ()):
        if action not in action_ids:
            failures.append(f"{action} is not among the actions ({', '.join(action_ids) or 'none'})")
    for action in expect.get("actions_exclude", ()):
        if action in action_ids:
            failures.append(f"{action} is among the actions")
    for action in expect.get("candidates_include", ()):
        if action not in summary["candidates"]:
            failures.append(f"{action} is not a candidate (candidates: {', '.join(summary['candidates']) or 'none'})")
    for action in expect.get("candidates_exclude", ()):
        if action in summary["candidates"]:
            failures.append(f"{action} is a candidate")
    if "offers_at_most" in expect:
        offers = [a for a, m in summary["actions"] if not m]
        if len(offers) > expect["offers_at_most"]:
            failures.append(f"{len(offers)} offers ({', '.join(offers)}), expected at most {expect['offers_at_most']}")
    for action, reason in (expect.get("suppressed") or {}).items():
        got = summary["suppressed"].get(action)
        if got != reason:
            failures.append(f"{action} suppressed with {got or 'nothing'}, expected {reason}")
    for key in ("language", "channel"):
        if key in expect and summary[key] != expect[key]:
            failures.append(f"{key} is {summary[key] or 'none'!r}, expected {expect[key]!r}")
    for text in expect.get("text_contains", ()):
        if text not in summary["text"]:
            failures.append(f"the text does not say {text!r}: {summary['text']!r}")
    for text in expect.get("text_excludes", ()):
        if text in summary["text"]:
            failures.append(f"the text says {text!r}: {summary['text']!r}")
    for kind, texts in (expect.get("follow_ups") or {}).items():
        letter = summary["follow_ups"].get(kind)
        if letter is None:
            failures.append(f"no {kind} follow-up (follow-ups: {', '.join(summary['follow_ups']) or 'none'})")
            continue
        failures += [f"the {kind} does not say {text!r}" for text in texts or () if text not in letter]
    for kind, channel in (expect.get("follow_up_channels") or {}).items():
        if summary["follow_up_channels"].get(kind) != channel:
            failures.append(f"the {kind} goes by {summary['follow_up_channels'].get(kind)!r}, expected {channel!r}")
    if expect.get("no_follow_ups") and summary["follow_ups"]:
        failures.append(f"unexpected follow-ups: {', '.join(summary['follow_ups'])}")
    if "open_items" in expect:
        kinds = [kind for kind, _, _ in summary["open_items"]]
        if sorted(kinds) != sorted(expect["open_items"]):
            failures.append(f"open items are {kinds}, expected {list(expect['open_items'])}")
    if "open_items_detailed" in expect:
        for kind, detailed, text in summary["open_items"]:
            if detailed != expect["open_items_detailed"]:
                failures.append(f"open item {kind} detailed={detailed}: {text!r}")
    if "degraded_codes" in expect and sorted(summary["degraded_codes"]) != sorted(expect["degraded_codes"]):
        failures.append(f"degraded codes are {summary['degraded_codes']}, expected {list(expect['degraded_codes'])}")
    return failures


class ScenarioRunner:
    """Runs scenarios through the decision flow, offline, with one strategy (the rules under test)."""

    def __init__(self, strategy: Strategy, schema: FeatureSchema, clock: Any = time.time) -> None:
        self.strategy = strategy
        self.schema = schema
        self.clock = clock

    def run(self, scenario: Scenario) -> ScenarioResult:
        now = self.clock()
        limits = FlowLimits(feature_max_age_s=7 * 86_400.0, explain_top_features=3)
        offline = offline_flow(self.strategy, self.schema, limits, now, scenario.capacity_left)
        profile = scenario.profile(self.schema, now)
        if profile is not None:
            offline.store.write_profiles([profile], now)
        offline.store.record_contacts(scenario.customer_id, scenario.contact_history(now), now)
        decision = offline.flow.decide(scenario.request())
        return ScenarioResult(scenario, check(decision, scenario.expect), decision)

    def run_all(self, scenarios: Sequence[Scenario]) -> list[ScenarioResult]:
        return [self.run(scenario) for scenario in scenarios]
