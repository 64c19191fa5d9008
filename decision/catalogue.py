"""The action catalogue: what may be recommended, where, when, at what value, with what stock and texts."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from decision.domain import Touchpoint
from decision.validation import ACTION_ID

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
DEFAULT_CATALOGUE_PATH = RULES_DIR / "actions.yaml"
DELIVERIES = ("agent", "screen", "voice")
_ACTION_KEYS = (
    "kind",
    "value",
    "lever",
    "touchpoints",
    "valid_from",
    "valid_until",
    "mandatory_only",
    "capacity",
    "title",
    "messages",
    "confirmation",
)
KINDS = ("service_recovery", "offer", "product", "retention", "care")


class CatalogueError(ValueError):
    """The catalogue file is invalid; the message names the action and the field."""


@dataclass(frozen=True)
class Capacity:
    """Limited stock: ``units`` per pool, the pool named by the request context key ``per`` (e.g. a flight) and
    the day in the context key ``date`` (the decision's day when the context has none)."""

    per: str
    units: int
    date: str = "flight_date"


@dataclass(frozen=True)
class Action:
    action_id: str
    kind: str
    value: float
    lever: float
    touchpoints: frozenset[Touchpoint]
    titles: Mapping[str, str]
    messages: Mapping[str, Mapping[str, str]]
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None
    capacity: Capacity | None = None
    # Offered only when a rule requires it (e.g. a service-recovery upgrade), never on model score alone.
    mandatory_only: bool = False
    # What a follow-up letter says was done, per language (optional; the title otherwise).
    confirmations: Mapping[str, str] = field(default_factory=dict)

    def title(self, language: str) -> str:
        return self.titles.get(language) or self.titles["en"]

    def message(self, language: str, delivery: str) -> str:
        texts = self.messages.get(language) or self.messages["en"]
        return texts.get(delivery) or self.messages["en"][delivery]

    def confirmation(self, language: str) -> str:
        return self.confirmations.get(language) or self.confirmations.get("en") or self.title(language)

    def missing_texts(self, languages: list[str]) -> list[str]:
        """The texts this action lacks in any of ``languages``: 'title.zh-Hans', 'messages.it.voice', ..."""
        missing = [f"title.{language}" for language in languages if language not in self.titles]
        for language in languages:
            texts = self.messages.get(language, {})
            missing += [f"messages.{language}.{d}" for d in DELIVERIES if d not in texts]
        if self.confirmations:
            missing += [f"confirmation.{language}" for language in languages if language not in self.confirmations]
        return missing

    def is_valid_on(self, day: dt.date) -> bool:
        if self.valid_from is not None and day < self.valid_from:
            return False
        return self.valid_until is None or day <= self.valid_until


@dataclass(frozen=True)
class Catalogue:
    actions: Mapping[str, Action]
    version: str
    currency: str
    default_max_actions: int

    @classmethod
    def load(cls, path: Path = DEFAULT_CATALOGUE_PATH) -> Catalogue:
        """Read and check the catalogue; CatalogueError names the file, the action and the field at fault."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise CatalogueError(f"{path.name}: not UTF-8 text (byte {error.start})") from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise CatalogueError(f"{path.name}: not valid YAML: {_yaml_problem(error)}") from None
        if not isinstance(document, dict) or not isinstance(document.get("actions"), dict):
            raise CatalogueError(f"{path.name}: expected a mapping with an 'actions' mapping")
        actions = {str(aid): _parse_action(path, str(aid), spec) for aid, spec in document["actions"].items()}
        max_actions = document.get("default_max_actions", 3)
        if isinstance(max_actions, bool) or not isinstance(max_actions, int) or not 1 <= max_actions <= 20:
            raise CatalogueError(f"{path.name}: default_max_actions must be a whole number 1-20, got {max_actions!r}")
        currency = document.get("currency", "EUR")
        if not isinstance(currency, str) or not currency.isalpha() or len(currency) != 3:
            raise CatalogueError(f"{path.name}: currency must be a three-letter code (EUR), got {currency!r}")
        return cls(
            actions=actions,
            version=hashlib.sha256(text.encode()).hexdigest()[:12],
            currency=currency,
            default_max_actions=max_actions,
        )

    @property
    def action_ids(self) -> list[str]:
        """Action ids in catalogue order."""
        return list(self.actions)

    def applicable(self, touchpoint: Touchpoint, day: dt.date) -> list[Action]:
        """Actions valid at this touchpoint on this day, in catalogue order."""
        return [a for a in self.actions.values() if touchpoint in a.touchpoints and a.is_valid_on(day)]


def _parse_action(path: Path, action_id: str, spec: Any) -> Action:
    where = f"{path.name}: action {action_id!r}"
    if not ACTION_ID.fullmatch(str(action_id)):
        raise CatalogueError(
            f"{where}: an action id is 1-64 letters, digits, '_', '.' or '-' (callers send it back with outcomes)"
        )
    if not isinstance(spec, dict):
        raise CatalogueError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, spec)) - set(_ACTION_KEYS))
    if unknown:
        raise CatalogueError(f"{where}: unknown key(s) {', '.join(unknown)}; an action has {', '.join(_ACTION_KEYS)}")
    for key in ("value", "lever"):
        number = spec.get(key, 0)
        if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
            raise CatalogueError(f"{where}: {key} must be a number >= 0, got {number!r}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise CatalogueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    try:
        touchpoints = frozenset(Touchpoint.named(t) for t in spec.get("touchpoints", ()))
    except ValueError as exc:
        raise CatalogueError(f"{where}: touchpoints: {exc}") from None
    titles = spec.get("title") or {}
    messages = spec.get("messages") or {}
    if "en" not in titles or "en" not in messages:
        raise CatalogueError(f"{where}: title and messages need at least English ('en')")
    for language, texts in messages.items():
        missing = [d for d in DELIVERIES if d not in (texts or {})]
        if language == "en" and missing:
            raise CatalogueError(f"{where}: messages.en lacks {', '.join(missing)}")
    capacity = None
    if spec.get("capacity") is not None:
        cap = spec["capacity"]
        units = cap.get("units") if isinstance(cap, dict) else None
        if not isinstance(cap, dict) or "per" not in cap or isinstance(units, bool) or not isinstance(units, int):
            raise CatalogueError(
                f"{where}: capacity needs 'per' (a context key) and 'units' (a whole number >= 0), "
                "and may name 'date' (a context key)"
            )
        if units < 0:
            raise CatalogueError(f"{where}: capacity.units must be a whole number >= 0, got {units!r}")
        capacity = Capacity(per=str(cap["per"]), units=units, date=str(cap.get("date", "flight_date")))
    return Action(
        action_id=action_id,
        kind=kind,
        value=float(spec.get("value", 0)),
        lever=float(spec.get("lever", 1.0)),
        touchpoints=touchpoints,
        titles={str(k): str(v) for k, v in titles.items()},
        messages={str(k): {str(d): str(t) for d, t in (v or {}).items()} for k, v in messages.items()},
        valid_from=_date(where, "valid_from", spec.get("valid_from")),
        valid_until=_date(where, "valid_until", spec.get("valid_until")),
        capacity=capacity,
        mandatory_only=bool(spec.get("mandatory_only", False)),
        confirmations={str(k): str(v) for k, v in (spec.get("confirmation") or {}).items()},
    )


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What the YAML parser found wrong and where, in one line (its own message spans several)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def _date(where: str, field_name: str, value: Any) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise CatalogueError(f"{where}: {field_name} {value!r} is not an ISO date (YYYY-MM-DD)") from None
