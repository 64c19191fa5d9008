"""The demo population: synthetic airline passengers and bank customers, and how they respond to actions.

Three things live here, all deterministic for a given seed and ``now``:

* ``generate_population`` builds customers as Redis-hash-ready string dicts (the online store's format), with
  correlated features and the scenario personas first;
* ``true_accept_probability`` is the known ground truth of how a customer responds to an action, so a trained
  model can be checked against what it should have learnt;
* ``simulate_responses`` draws a logged history from it: uniformly random actions (with their propensities,
  for off-policy evaluation) and accept/decline outcomes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from decision.catalogue import Catalogue
from features.schema import SECONDS_PER_DAY, FeatureSchema

DEMO_IFE_GOLD = "demo-ife-gold"
DEMO_ITALIAN = "demo-italian"
DEMO_BANK_OPEN_ISSUE = "demo-bank-open-issue"
PERSONAS: tuple[str, ...] = (DEMO_IFE_GOLD, DEMO_ITALIAN, DEMO_BANK_OPEN_ISSUE)
"""Ids of the scenario personas, always the first customers of a population (S1, S2, S7)."""

AIRLINE_SHARE = 0.65
TIER_RANK = {"none": 0, "silver": 1, "gold": 2, "platinum": 3}

# Mostly English, then the carrier's home market (Italian), then the main long-haul markets.
LANGUAGES = ("en", "it", "de", "fr", "es", "zh-Hans", "zh-Hant")
LANGUAGE_WEIGHTS = (0.58, 0.17, 0.07, 0.06, 0.05, 0.04, 0.03)

# (female first names, male first names, last names, female title, male title) per language.
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str, str]] = {
    "en": (
        ("Emma", "Olivia", "Sophie", "Charlotte", "Grace", "Hannah", "Laura", "Rachel", "Sarah", "Emily"),
        ("James", "Oliver", "Thomas", "William", "Daniel", "George", "Henry", "Samuel", "Michael", "David"),
        ("Smith", "Jones", "Taylor", "Brown", "Wilson", "Evans", "Walker", "Wright", "Hughes", "Patel"),
        "Ms",
        "Mr",
    ),
    "it": (
        ("Giulia", "Francesca", "Chiara", "Sara", "Martina", "Elena", "Valentina", "Alessia"),
        ("Marco", "Luca", "Giuseppe", "Alessandro", "Matteo", "Andrea", "Francesco", "Lorenzo"),
        ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Greco"),
        "Sig.ra",
        "Sig.",
    ),
    "de": (
        ("Anna", "Katrin", "Julia", "Laura", "Sabine", "Lena"),
        ("Lukas", "Jonas", "Felix", "Stefan", "Matthias", "Tobias"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"),
        "Frau",
        "Herr",
    ),
    "fr": (
        ("Camille", "Léa", "Chloé", "Manon", "Claire", "Sophie"),
        ("Louis", "Hugo", "Jules", "Antoine", "Nicolas", "Julien"),
        ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand"),
        "Mme",
        "M.",
    ),
    "es": (
        ("Lucía", "María", "Carmen", "Laura", "Paula", "Elena"),
        ("Javier", "Carlos", "Pablo", "Diego", "Alejandro", "Manuel"),
        ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez"),
        "Sra.",
        "Sr.",
    ),
    "zh-Hans": (
        ("静", "丽", "芳", "敏", "婷婷", "晓燕"),
        ("伟", "强", "磊", "军", "洋", "建国"),
        ("王", "李", "张", "刘", "陈", "杨", "赵", "黄"),
        "女士",
        "先生",
    ),
    "zh-Hant": (
        ("美玲", "淑芬", "雅婷", "怡君", "佳穎"),
        ("志明", "家豪", "建宏", "俊傑", "冠宇"),
        ("陳", "林", "黃", "張", "李", "王", "吳", "劉"),
        "女士",
        "先生",
    ),
}

AIRLINE_INCIDENTS = ("ife_broken", "seat_broken", "delay", "lost_bag")
# Broken in-flight entertainment happens where there is entertainment: mostly on long-haul aircraft.
AIRLINE_INCIDENT_WEIGHTS_LONG_HAUL = (0.45, 0.2, 0.2, 0.15)
AIRLINE_INCIDENT_WEIGHTS_SHORT_HAUL = (0.05, 0.25, 0.45, 0.25)
AIRLINE_INCIDENT_RATE = 0.04
BANK_OPEN_PROBLEM_RATE = 0.03
BANK_PENDING_APPLICATION_RATE = 0.02
IN_ARREARS_BASE_RATE = 0.03
OTHER_OPEN_PROBLEMS = ("address change not applied", "fee refund requested", "lost card replacement")
COMPLAINT_TOPICS = ("rude staff at the gate", "a dirty cabin", "the wait at the transfer desk", "a refund delay")
PENDING_APPLICATIONS = (
    "personal loan of 15,000 EUR",
    "mortgage of 220,000 EUR",
    "credit card limit increase",
)


def demo_definitions() -> tuple[FeatureSchema, Catalogue]:
    """The shipped feature schema and catalogue (``features/schema.yaml``, ``rules/actions.yaml``): the ones the
    demo population, its responses and the demo model are made for, whatever the service is configured with."""
    return FeatureSchema.load(), Catalogue.load()


def generate_population(n: int = 10_000, seed: int = 7, now: float | None = None) -> list[dict[str, str]]:
    """Synthetic customers as Redis-hash-ready string dicts: ``customer_id`` plus every schema feature.

    The three ``PERSONAS`` come first and are added on top of ``n`` ordinary customers (``cust-000001`` ...),
    so the result holds ``n + 3`` customers. Values are stored as the online store holds them: booleans as
    ``"1"``/``"0"``, timestamps as epoch seconds, ``""`` when there was no incident. The same ``seed`` and
    ``now`` give the same population; ``now`` defaults to the current time.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    now = time.time() if now is None else float(now)
    rng = np.random.default_rng(seed)
    # Contact habits, complaints and trip rhythm come from a stream of their own, so adding them left every
    # other feature (and the models trained on them) as it was.
    habits_rng = np.random.default_rng([seed, 1])
    customers = _personas(now)
    for index in range(1, n + 1):
        airline = rng.random() < AIRLINE_SHARE
        customer = _airline_passenger(rng, now) if airline else _bank_customer(rng, now)
        customer |= _habits(habits_rng, customer, now)
        customers.append({"customer_id": f"cust-{index:06d}", **customer})
    return customers


def _habits(rng: np.random.Generator, customer: Mapping[str, str], now: float) -> dict[str, str]:
    """How the customer answers each channel, their latest complaint, card renewal and trip rhythm."""
    preferred = customer["preferred_channel"]
    digital = float(customer["digital_share"])
    # The channel they answer best is usually, not always, the one they say they prefer (S3).
    channels = ("sms", "email", "app", "phone", "branch", "web")
    best = preferred if preferred in channels and rng.random() < 0.6 else _pick(rng, channels)
    rate = _clip(rng.beta(2.0, 5.0) + (0.15 * digital if best in ("app", "web", "email") else 0.05), 0.0, 1.0)
    fields = {"best_response_channel": best, "best_channel_response_rate": f"{rate:.4f}"}
    if int(customer["complaints_12m"]) > 0:
        fields["last_complaint"] = _epoch(now - float(rng.uniform(1, 300)) * SECONDS_PER_DAY)
        fields["last_complaint_topic"] = _pick(rng, COMPLAINT_TOPICS)
    if customer["domain"] == "bank" and customer["has_credit_card"] == "1":
        fields["card_expires_in_days"] = str(int(rng.integers(0, 4 * 365)))
    flights = int(customer["flights_12m"])
    if customer["domain"] == "airline" and flights:
        interval = 365.0 / flights
        overdue = max(0, int(rng.exponential(interval) - interval))
        fields |= {"trip_interval_days": f"{interval:.1f}", "trip_overdue_days": str(overdue)}
    return fields


# ---------------------------------------------------------------------------------------------------------
# Customers


def _personas(now: float) -> list[dict[str, str]]:
    """The scenario personas, fixed whatever the seed so demos and tests can name them."""
    ife_gold = _blank_profile() | {
        "domain": "airline",
        "tier": "gold",
        "tenure_years": "9.5",
        "predicted_ltv": "12000.00",
        "churn_risk": "0.1800",
        "age": "41",
        "first_language": "en",
        "preferred_channel": "kiosk",
        "flights_12m": "24",
        "long_haul_share": "0.4500",
        "avg_trip_spend": "780.00",
        "loyalty_points": "84200",
        "bags_per_trip": "1.00",
        "lounge_visits_12m": "11",
        "last_incident_type": "ife_broken",
        "last_incident": _epoch(now - 10 * SECONDS_PER_DAY),
        "last_incident_flight": "AZ611",
        "last_incident_long_haul": "1",
        "complaints_12m": "1",
        "has_credit_card": "1",
        "profitability": "1050.00",
        "digital_share": "0.7000",
        "title": "Ms",
        "first_name": "Alice",
        "last_name": "Morgan",
    }
    italian = _blank_profile() | {
        "domain": "airline",
        "tier": "silver",
        "tenure_years": "4.0",
        "predicted_ltv": "3400.00",
        "churn_risk": "0.1200",
        "age": "52",
        "first_language": "it",
        "preferred_channel": "agent",
        "flights_12m": "8",
        "long_haul_share": "0.1200",
        "avg_trip_spend": "310.00",
        "loyalty_points": "18400",
        "bags_per_trip": "1.20",
        "lounge_visits_12m": "1",
        "profitability": "300.00",
        "digital_share": "0.3500",
        "title": "Sig.",
        "first_name": "Marco",
        "last_name": "Rossi",
    }
    opened = dt.datetime.fromtimestamp(now - 12 * SECONDS_PER_DAY, tz=dt.UTC).date().isoformat()
    bank_open_issue = _blank_profile() | {
        "domain": "bank",
        "tier": "gold",
        "tenure_years": "11.0",
        "predicted_ltv": "9800.00",
        "churn_risk": "0.3500",
        "age": "47",
        "first_language": "en",
        "preferred_channel": "branch",
        # The open dispute is also the latest incident, so every channel sees the same unresolved problem.
        "last_incident_type": "card_dispute",
        "last_incident": _epoch(now - 12 * SECONDS_PER_DAY),
        "complaints_12m": "1",
        "open_problem": f"card dispute on a 420 EUR charge, opened {opened}",
        "products_held": "3",
        "has_credit_card": "1",
        "balance": "18500.00",
        "profitability": "980.00",
        "digital_share": "0.4000",
        "title": "Mr",
        "first_name": "Daniel",
        "last_name": "Hughes",
    }
    return [
        {"customer_id": DEMO_IFE_GOLD, **ife_gold},
        {"customer_id": DEMO_ITALIAN, **italian},
        {"customer_id": DEMO_BANK_OPEN_ISSUE, **bank_open_issue},
    ]


def _blank_profile() -> dict[str, str]:
    """Every feature at its 'nothing known' value; each domain fills in what it knows."""
    return {
        "domain": "airline",
        "tier": "none",
        "tenure_years": "0.0",
        "predicted_ltv": "0.00",
        "churn_risk": "0.1000",
        "age": "40",
        "first_language": "en",
        "preferred_channel": "web",
        "flights_12m": "0",
        "long_haul_share": "0.0000",
        "avg_trip_spend": "0.00",
        "loyalty_points": "0",
        "bags_per_trip": "0.00",
        "lounge_visits_12m": "0",
        "last_incident_type": "none",
        "last_incident": "",
        "last_incident_flight": "",
        "last_incident_long_haul": "0",
        "complaints_12m": "0",
        "open_problem": "",
        "pending_application": "",
        "products_held": "0",
        "has_credit_card": "0",
        "balance": "0.00",
        "in_arrears": "0",
        "profitability": "0.00",
        "digital_share": "0.5000",
        "best_response_channel": "none",
        "best_channel_response_rate": "0.0000",
        "card_expires_in_days": "",
        "last_complaint": "",
        "last_complaint_topic": "",
        "trip_interval_days": "0.0",
        "trip_overdue_days": "0",
        "title": "",
        "first_name": "",
        "last_name": "",
    }


def _airline_passenger(rng: np.random.Generator, now: float) -> dict[str, str]:
    # One latent "how much they fly with us" factor drives frequency, tier, lounge use and value together,
    # so the features are correlated the way a loyalty programme's are.
    engagement = rng.normal()
    age = int(_clip(rng.normal(44, 13), 18, 88))
    tenure = _clip(rng.gamma(2.0, 3.0) + 0.8 * engagement, 0.0, age - 17)
    flights = int(rng.poisson(math.exp(0.9 + 0.85 * engagement)))
    tier_score = flights + 0.4 * tenure + rng.normal(0, 2)
    tier = _tier(tier_score, platinum=26, gold=14, silver=6)
    long_haul_share = _clip(rng.beta(1.5, 5.0) + 0.05 * engagement, 0.0, 1.0) if flights else 0.0
    avg_trip_spend = float(rng.lognormal(math.log(260) + 0.25 * engagement + 1.1 * long_haul_share, 0.45))
    # Business travellers fly often and light; families on holiday check bags.
    bags_per_trip = _clip(rng.gamma(2.0, 0.4) - 0.015 * flights, 0.0, 3.0)
    lounge_rate = {"none": 0.02, "silver": 0.1, "gold": 0.55, "platinum": 0.8}[tier]
    lounge_visits = int(rng.binomial(flights, lounge_rate))
    loyalty_points = int(flights * avg_trip_spend * rng.uniform(3, 6) * min(tenure, 5) / 2)

    incident = rng.random() < AIRLINE_INCIDENT_RATE * (1 + min(flights, 30) / 10)
    incident_fields: dict[str, str] = {}
    complaints_rate = 0.05
    if incident:
        long_haul = rng.random() < max(long_haul_share, 0.1)
        weights = AIRLINE_INCIDENT_WEIGHTS_LONG_HAUL if long_haul else AIRLINE_INCIDENT_WEIGHTS_SHORT_HAUL
        kind = _pick(rng, AIRLINE_INCIDENTS, weights)
        days_ago = float(rng.uniform(1, 180))
        # Long-haul flight numbers are three digits (AZ611 Rome-New York), short-haul ones four (AZ1771).
        number = int(rng.integers(600, 800)) if long_haul else int(rng.integers(1000, 2100))
        incident_fields = {
            "last_incident_type": kind,
            "last_incident": _epoch(now - days_ago * SECONDS_PER_DAY),
            "last_incident_flight": f"AZ{number}",
            "last_incident_long_haul": _flag(long_haul),
        }
        complaints_rate = 0.6
    complaints = int(rng.poisson(complaints_rate))
    churn_risk = _sigmoid(-1.6 - 0.5 * engagement + 0.6 * complaints + rng.normal(0, 0.5))
    # Value: what they spend a year, times the years they are expected to stay. Heavy-tailed by design (S8).
    yearly_margin = 0.14 * flights * avg_trip_spend
    predicted_ltv = yearly_margin * min(1.0 / max(churn_risk, 0.05), 15.0) * rng.lognormal(0, 0.2)
    digital_share = _digital_share(rng, age)
    language, title, first_name, last_name = _identity(rng)
    return _blank_profile() | {
        "domain": "airline",
        "tier": tier,
        "tenure_years": f"{tenure:.1f}",
        "predicted_ltv": f"{predicted_ltv:.2f}",
        "churn_risk": f"{churn_risk:.4f}",
        "age": str(age),
        "first_language": language,
        "preferred_channel": _preferred_channel(rng, digital_share, airline=True),
        "flights_12m": str(flights),
        "long_haul_share": f"{long_haul_share:.4f}",
        "avg_trip_spend": f"{avg_trip_spend:.2f}" if flights else "0.00",
        "loyalty_points": str(loyalty_points),
        "bags_per_trip": f"{bags_per_trip:.2f}",
        "lounge_visits_12m": str(lounge_visits),
        "complaints_12m": str(complaints),
        # Payment data tells the airline whether a card is on file; the bank products stay unknown.
        "has_credit_card": _flag(rng.random() < 0.35 + 0.1 * TIER_RANK[tier]),
        "profitability": f"{yearly_margin:.2f}",
        "digital_share": f"{digital_share:.4f}",
        "title": title,
        "first_name": first_name,
        "last_name": last_name,
        **incident_fields,
    }


def _bank_customer(rng: np.random.Generator, now: float) -> dict[str, str]:
    wealth = rng.normal()
    age = int(_clip(rng.normal(46, 15), 18, 92))
    tenure = _clip(rng.gamma(2.0, 4.0), 0.0, age - 17)
    products = int(_clip(1 + rng.poisson(math.exp(0.1 + 0.35 * wealth)), 1, 8))
    # Balances are log-normal: a few customers hold most of the money, where the value tail comes from.
    balance = float(rng.lognormal(math.log(3500) + 0.9 * wealth + 0.01 * (age - 46), 1.1))
    has_credit_card = rng.random() < 0.3 + 0.08 * products
    in_arrears = rng.random() < IN_ARREARS_BASE_RATE * (3.0 if balance < 1500 else 0.5)
    if in_arrears:
        balance = float(rng.uniform(0, 800))
    # Net yearly contribution: margin on deposits and products, less the cost to serve; arrears lose money.
    profitability = (
        0.02 * balance + 35 * products + (60 if has_credit_card else 0) - 75 - (450 if in_arrears else 0)
    ) * rng.lognormal(0, 0.15)
    complaints = int(rng.poisson(0.15 + (0.8 if in_arrears else 0)))
    churn_risk = _sigmoid(-1.8 - 0.25 * wealth - 0.03 * tenure + 0.5 * complaints + rng.normal(0, 0.6))
    predicted_ltv = profitability * min(1.0 / max(churn_risk, 0.05), 15.0)
    tier_score = balance / 1000 + rng.normal(0, 3)
    tier = _tier(tier_score, platinum=60, gold=20, silver=8)
    digital_share = _digital_share(rng, age)
    language, title, first_name, last_name = _identity(rng)

    fields: dict[str, str] = {}
    if rng.random() < BANK_OPEN_PROBLEM_RATE:
        days_ago = float(rng.uniform(1, 45))
        opened = dt.datetime.fromtimestamp(now - days_ago * SECONDS_PER_DAY, tz=dt.UTC).date().isoformat()
        if has_credit_card and rng.random() < 0.6:
            amount = int(rng.integers(3, 120)) * 10
            fields = {
                "open_problem": f"card dispute on a {amount} EUR charge, opened {opened}",
                "last_incident_type": "card_dispute",
                "last_incident": _epoch(now - days_ago * SECONDS_PER_DAY),
            }
        else:
            problem = _pick(rng, OTHER_OPEN_PROBLEMS)
            fields = {"open_problem": f"{problem}, opened {opened}"}
    if rng.random() < BANK_PENDING_APPLICATION_RATE:
        submitted = dt.datetime.fromtimestamp(now - float(rng.uniform(1, 20)) * SECONDS_PER_DAY, tz=dt.UTC)
        what = _pick(rng, PENDING_APPLICATIONS)
        fields["pending_application"] = f"{what}, submitted {submitted.date().isoformat()}"

    return _blank_profile() | {
        "domain": "bank",
        "tier": tier,
        "tenure_years": f"{tenure:.1f}",
        "predicted_ltv": f"{predicted_ltv:.2f}",
        "churn_risk": f"{churn_risk:.4f}",
        "age": str(age),
        "first_language": language,
        "preferred_channel": _preferred_channel(rng, digital_share, airline=False),
        "complaints_12m": str(complaints),
        "products_held": str(products),
        "has_credit_card": _flag(has_credit_card),
        "balance": f"{balance:.2f}",
        "in_arrears": _flag(in_arrears),
        "profitability": f"{profitability:.2f}",
        "digital_share": f"{digital_share:.4f}",
        "title": title,
        "first_name": first_name,
        "last_name": last_name,
        **fields,
    }


def _identity(rng: np.random.Generator) -> tuple[str, str, str, str]:
    """First language, then a title and a name that fit it."""
    language = _pick(rng, LANGUAGES, LANGUAGE_WEIGHTS)
    female_names, male_names, last_names, female_title, male_title = NAMES[language]
    female = rng.random() < 0.5
    first_name = _pick(rng, female_names if female else male_names)
    title = female_title if female else male_title
    if language == "en" and rng.random() < 0.04:
        title = "Dr"
    return language, title, first_name, _pick(rng, last_names)


def _digital_share(rng: np.random.Generator, age: int) -> float:
    return _clip(rng.beta(3.0, 2.0) - 0.012 * (age - 40), 0.02, 0.98)


def _preferred_channel(rng: np.random.Generator, digital_share: float, airline: bool) -> str:
    # Digital customers favour the app and web; the others the desk, the phone or (bank) the branch.
    if rng.random() < digital_share:
        return _pick(rng, ("app", "web", "email", "sms"), (0.45, 0.35, 0.12, 0.08))
    if airline:
        return _pick(rng, ("kiosk", "agent", "phone"), (0.45, 0.3, 0.25))
    return _pick(rng, ("branch", "phone"), (0.6, 0.4))


def _pick(rng: np.random.Generator, options: Sequence[str], weights: Sequence[float] | None = None) -> str:
    # A plain bisect: Generator.choice costs more than all the rest of a customer.
    if weights is None:
        return options[int(rng.random() * len(options))]
    cumulative = list(itertools.accumulate(weights))
    return options[min(bisect.bisect(cumulative, rng.random() * cumulative[-1]), len(options) - 1)]


def _tier(score: float, platinum: float, gold: float, silver: float) -> str:
    for tier, threshold in (("platinum", platinum), ("gold", gold), ("silver", silver)):
        if score >= threshold:
            return tier
    return "none"


def _clip(value: float, low: float, high: float) -> float:
    return min(max(float(value), low), high)


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _epoch(seconds: float) -> str:
    return str(int(seconds))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------------------------
# Ground truth


def true_accept_probability(customer_values: Mapping[str, Any], action_id: str) -> float:
    """The simulated world's probability that this customer accepts this action.

    ``customer_values`` are the schema-typed values (``FeatureSchema.parse``). Each action is a logistic
    function of a few features that make business sense (``RESPONSES``); airline offers are near zero for bank
    customers and bank products near zero for passengers. An action the ground truth does not know (one added
    to the catalogue later) gets a flat 3%, so a simulation never fails on a new catalogue.
    """
    response = RESPONSES.get(action_id)
    if response is None:
        return UNKNOWN_ACTION_PROBABILITY
    domain, logit = response
    traits = _Traits.of(customer_values)
    if domain is not None and domain != traits.domain:
        return _sigmoid(OUT_OF_DOMAIN_LOGIT)
    return _sigmoid(logit(traits))


@dataclass(frozen=True)
class _Traits:
    """The typed values the ground truth looks at, capped where more stops making a difference."""

    domain: str
    tier: int
    flights: float
    long_haul: float
    avg_trip_spend: float
    bags: float
    lounge_visits: float
    age: float
    digital: float
    complaints: float
    recent_incident: bool
    products: float
    balance: float
    profitability: float
    has_card: bool
    arrears: bool
    churn: float

    @classmethod
    def of(cls, v: Mapping[str, Any]) -> _Traits:
        incident_days = v.get("last_incident_days")
        return cls(
            domain=str(v.get("domain", "airline")),
            tier=TIER_RANK.get(str(v.get("tier", "none")), 0),
            flights=min(float(v.get("flights_12m") or 0), 30.0),
            long_haul=float(v.get("long_haul_share") or 0.0),
            avg_trip_spend=min(float(v.get("avg_trip_spend") or 0.0), 2000.0),
            bags=float(v.get("bags_per_trip") or 0.0),
            lounge_visits=min(float(v.get("lounge_visits_12m") or 0), 15.0),
            age=float(v.get("age") or 40),
            digital=float(v.get("digital_share") or 0.5),
            complaints=min(float(v.get("complaints_12m") or 0), 3.0),
            recent_incident=incident_days is not None and incident_days <= 60,
            products=min(float(v.get("products_held") or 0), 8.0),
            balance=max(float(v.get("balance") or 0.0), 0.0),
            profitability=max(float(v.get("profitability") or 0.0), 0.0),
            has_card=bool(v.get("has_credit_card")),
            arrears=bool(v.get("in_arrears")),
            churn=float(v.get("churn_risk") or 0.0),
        )


UNKNOWN_ACTION_PROBABILITY = 0.03
# A bank customer is not at the airport and a passenger did not come for a mortgage: such offers barely land.
OUT_OF_DOMAIN_LOGIT = -5.5

RESPONSES: dict[str, tuple[str | None, Callable[[_Traits], float]]] = {
    # action: (the domain whose customers respond, None for both; the logit of acceptance)
    "upgrade_first_class": ("airline", lambda c: 2.6 + 0.2 * c.tier),  # almost nobody declines First
    "bonus_points_recovery": (
        "airline",
        lambda c: -2.2 + 1.8 * c.recent_incident + 0.5 * c.complaints + 0.25 * c.tier,
    ),
    "lounge_pass": ("airline", lambda c: -3.4 + 0.45 * c.tier + 0.14 * c.lounge_visits + 1.0 * c.long_haul),
    "extra_legroom_seat": (
        "airline",
        lambda c: -2.8 + 2.0 * c.long_haul + 0.02 * (c.age - 40) + 0.0012 * c.avg_trip_spend,
    ),
    "extra_bag": ("airline", lambda c: -3.4 + 1.7 * c.bags),
    # Gold and platinum already have fast track: they do not pay for it.
    "fast_track": (
        "airline",
        lambda c: -2.2 + 0.06 * c.flights - 1.5 * (c.tier >= 2) + 0.8 * (c.digital - 0.5),
    ),
    # Frequent flyers have annual cover; older long-haul leisure travellers buy it per trip.
    "travel_insurance": (
        "airline",
        lambda c: -2.4 + 0.03 * (c.age - 40) + 1.0 * c.long_haul - 0.06 * c.flights,
    ),
    # Sold at the airport and at the branch: frequent flyers without a card like it most.
    "cobrand_credit_card": (
        None,
        lambda c: -3.0 + 0.07 * c.flights + 0.3 * c.tier - 1.0 * c.has_card - 2.0 * c.arrears,
    ),
    "premium_card_upgrade": (
        "bank",
        lambda c: (
            -4.0
            + 1.8 * c.has_card
            + 0.8 * math.log1p(c.balance / 5000)
            + 0.5 * math.log1p(c.profitability / 500)
            - 2.5 * c.arrears
        ),
    ),
    "savings_account": (
        "bank",
        lambda c: -3.2 + 0.9 * math.log1p(c.balance / 10000) + 0.6 * c.digital - 1.5 * c.arrears,
    ),
    "mortgage_review": (
        "bank",
        lambda c: -3.4 + 1.6 * (30 <= c.age <= 50) + 0.5 * math.log1p(c.balance / 20000) - 2.0 * c.arrears,
    ),
    "personal_loan": (
        "bank",
        lambda c: -2.3 - 0.035 * (c.age - 35) - 0.5 * math.log1p(c.balance / 5000) - 2.0 * c.arrears,
    ),
    "retention_fee_waiver": ("bank", lambda c: -3.0 + 5.0 * c.churn + 0.15 * c.products),
}
"""The ground truth per action, as a table so the simulated world can be read (and changed) at a glance."""


# ---------------------------------------------------------------------------------------------------------
# Logged history


def simulate_responses(
    population: Sequence[Mapping[str, str]],
    actions_per_customer: int = 4,
    seed: int = 11,
    now: float | None = None,
    *,
    schema: FeatureSchema,
    catalogue: Catalogue,
) -> list[dict[str, Any]]:
    """A logged history: for each customer, a uniformly random set of actions and whether each was accepted.

    Each customer is shown ``actions_per_customer`` distinct catalogue actions drawn uniformly (capped at the
    catalogue size), so every logged action has propensity ``actions_per_customer / len(actions)``: the
    exploration policy that makes off-policy estimates honest. Outcomes are drawn from
    ``true_accept_probability``. Pass the ``now`` the population was generated with, so incident ages match.

    Returns one dict per (customer, action): ``customer_id``, ``action_id``, ``propensity`` (float),
    ``accepted`` (0 or 1) and ``true_probability`` (the ground truth, which a real log would not have; kept
    for checking models).
    """
    actions = catalogue.action_ids
    now = time.time() if now is None else float(now)
    shown = min(actions_per_customer, len(actions))
    propensity = shown / len(actions)
    rng = np.random.default_rng(seed)
    log: list[dict[str, Any]] = []
    for raw in population:
        values = schema.parse(raw, now)
        for index in rng.choice(len(actions), size=shown, replace=False):
            action_id = actions[int(index)]
            probability = true_accept_probability(values, action_id)
            log.append(
                {
                    "customer_id": raw["customer_id"],
                    "action_id": action_id,
                    "propensity": propensity,
                    "accepted": int(rng.random() < probability),
                    "true_probability": probability,
                }
            )
    return log


# ---------------------------------------------------------------------------------------------------------
# The day's touchpoints

PASSENGERS_PER_FLIGHT = 40
PERSONA_TOUCHPOINTS = {
    DEMO_IFE_GOLD: ("CHECKIN_KIOSK", "AZ610"),
    DEMO_ITALIAN: ("IVR", "AZ612"),
    DEMO_BANK_OPEN_ISSUE: ("BRANCH_TELLER", ""),
}


def at_touchpoints(population: Sequence[Mapping[str, str]], seed: int = 7) -> list[dict[str, str]]:
    """The population on one day, each customer with a ``touchpoint`` and a ``flight`` (request context).

    Passengers check in at the kiosk for one of today's long-haul flights (``AZ600``, ``AZ602``, ...; about
    ``PASSENGERS_PER_FLIGHT`` each, so a flight's upgrade seats can run out); bank customers come to the branch
    teller, with no flight. The personas keep the touchpoints of their scenarios.
    """
    rng = np.random.default_rng([seed, 2])
    passengers = sum(1 for c in population if c.get("domain") == "airline" and c["customer_id"] not in PERSONAS)
    flights = [f"AZ{600 + 2 * i}" for i in range(max(1, round(passengers / PASSENGERS_PER_FLIGHT)))]
    rows = []
    for customer in population:
        if customer["customer_id"] in PERSONA_TOUCHPOINTS:
            touchpoint, flight = PERSONA_TOUCHPOINTS[customer["customer_id"]]
        elif customer.get("domain") == "airline":
            touchpoint, flight = "CHECKIN_KIOSK", _pick(rng, flights)
        else:
            touchpoint, flight = "BRANCH_TELLER", ""
        rows.append({**customer, "touchpoint": touchpoint, "flight": flight})
    return rows
