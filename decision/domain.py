"""Domain objects of a decision, independent of gRPC so every front end (gRPC, teller page, CLI) shares them."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


def decision_day(at: float) -> dt.date:
    """The calendar day of a decision made at ``at`` (epoch seconds), in UTC: the same on every server whatever its
    time zone. The catalogue's validity windows and a seat pool's default date are days of this calendar."""
    return dt.datetime.fromtimestamp(at, tz=dt.UTC).date()


class Touchpoint(enum.IntEnum):
    """Where the customer is; values match ``nba.v1.Touchpoint``."""

    CHECKIN_KIOSK = 1
    CHECKIN_AGENT = 2
    IVR = 3
    BRANCH_TELLER = 4
    CONTACT_CENTER = 5
    WEB = 6
    MOBILE_APP = 7

    @classmethod
    def named(cls, name: object) -> Touchpoint:
        """The touchpoint called ``name`` (any case, blanks around it ignored); ValueError naming the accepted ones.
        Every reader of a touchpoint name (requests, the catalogue, scenarios, logs, the simulator) parses it here."""
        found = cls.__members__.get(str(name).strip().upper())
        if found is None:
            raise ValueError(f"unknown touchpoint {name!r}; accepted: {', '.join(cls.__members__)}")
        return found

    @property
    def delivery(self) -> str:
        """How a text reaches the customer: said by a person, shown on a screen, or spoken by a machine."""
        return _DELIVERY[self]

    @property
    def customer_facing(self) -> bool:
        """True where the customer reads or hears the text directly (no agent in between)."""
        return self.delivery != "agent"


_DELIVERY = {
    Touchpoint.CHECKIN_KIOSK: "screen",
    Touchpoint.CHECKIN_AGENT: "agent",
    Touchpoint.IVR: "voice",
    Touchpoint.BRANCH_TELLER: "agent",
    Touchpoint.CONTACT_CENTER: "agent",
    Touchpoint.WEB: "screen",
    Touchpoint.MOBILE_APP: "screen",
}


class Outcome(enum.IntEnum):
    """What the customer did; values match ``nba.v1.Outcome``."""

    ACCEPTED = 1
    DECLINED = 2
    IGNORED = 3


@dataclass(frozen=True)
class DecisionRequest:
    customer_id: str
    touchpoint: Touchpoint
    context: Mapping[str, str]
    request_id: str
    max_actions: int
    # Absolute time.monotonic() by which the answer must be sent, or None for no deadline.
    deadline: float | None = None


@dataclass(frozen=True)
class RankedAction:
    action_id: str
    kind: str
    title: str
    score: float
    propensity: float
    value: float
    mandatory: bool
    reason_codes: tuple[str, ...]
    rank: int
    message: str


@dataclass(frozen=True)
class FeatureContribution:
    feature: str
    label: str
    contribution: float
    value: str


@dataclass(frozen=True)
class RuleFired:
    rule_id: str
    directive: str
    action_id: str
    reason_code: str


@dataclass(frozen=True)
class Suppression:
    action_id: str
    reason_code: str
    source: str


@dataclass(frozen=True)
class Explanation:
    language: str
    delivery: str
    text: str
    greeting: str
    rules_fired: tuple[RuleFired, ...] = ()
    top_features: tuple[FeatureContribution, ...] = ()
    suppressed: tuple[Suppression, ...] = ()
    ranking_margin: float = 0.0


@dataclass(frozen=True)
class FeatureFreshness:
    found: bool
    age_ms: int
    stale: bool
    max_age_ms: int


@dataclass(frozen=True)
class FollowUp:
    kind: str
    action_id: str
    language: str
    text: str
    channel: str = ""


@dataclass(frozen=True)
class ChannelAdvice:
    channel: str = ""
    reason_code: str = ""
    text: str = ""


@dataclass(frozen=True)
class OpenItem:
    kind: str
    text: str
    detailed: bool


@dataclass(frozen=True)
class PolicyTrace:
    """How the first action was chosen, for off-policy evaluation and champion/challenger comparison."""

    # Which model decided: "champion", or "challenger" for the customers of a split.
    arm: str = "champion"
    # True when exploration drew the first action at random among the eligible non-mandatory ones.
    explored: bool = False
    # Probability that this policy puts this first action first, given the customer and context (1 when no
    # choice was left to chance: a mandatory action, a single candidate, exploration off).
    propensity: float = 1.0
    exploration_share: float = 0.0
    # A challenger in shadow: its version and the first action it would have chosen (it never decides).
    shadow_model_version: str = ""
    shadow_action_id: str = ""


@dataclass(frozen=True)
class Decision:
    decision_id: str
    request_id: str
    customer_id: str
    touchpoint: Touchpoint
    actions: tuple[RankedAction, ...]
    explanation: Explanation
    model_version: str
    rules_version: str
    catalogue_version: str
    features: FeatureFreshness
    degraded_codes: tuple[str, ...] = ()
    degraded_reason: str = ""
    follow_ups: tuple[FollowUp, ...] = ()
    channel: ChannelAdvice = ChannelAdvice()
    open_items: tuple[OpenItem, ...] = ()
    decided_at_ms: int = 0
    # Every candidate that reached the model, for the decision log: action_id -> (propensity, score).
    candidates: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    policy: PolicyTrace = PolicyTrace()
    # The seats the decision's actions hold for the customer, (action_id, pool such as "AZ777:2026-12-03"):
    # a decline of one of them gives its seat back to the pool.
    seats: tuple[tuple[str, str], ...] = ()
    # Set on the answer to a retry (the same request_id), never stored: nothing was offered or taken anew.
    answered_before: bool = False

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_codes)


@dataclass(frozen=True)
class OutcomeReceipt:
    outcome_id: str
    duplicate: bool
