"""The feature schema: every customer feature, its type, default and human label, read from ``schema.yaml``.

The schema turns what the online store holds (strings in a Redis hash) into typed values for the rules and
into the numeric row the model scores. Timestamp features reach rules and the model as whole days since the
event, under the name ``<feature>_days``.

The same file declares the request context keys the service knows (``context:``): each with the pattern its
value must match, so a caller's text reaches a customer-facing text (a letter, a screen) only when it is a
declared key's valid value. Undeclared keys are still accepted and logged, and rules may read them, but no
template ever shows them.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEFAULT_SCHEMA_PATH = Path(__file__).with_name("schema.yaml")
TYPES = ("number", "integer", "boolean", "category", "timestamp", "text")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f", ""}
SECONDS_PER_DAY = 86_400.0


class SchemaError(ValueError):
    """The schema file itself is invalid."""


CASES = ("upper", "lower", "as_given")


@dataclass(frozen=True)
class ContextKey:
    """A request context key the service knows: its value, stripped of surrounding spaces and put in ``case``,
    must match ``pattern`` whole (and be a real calendar day when ``date``)."""

    name: str
    pattern: re.Pattern[str]
    accepted: str  # what an error says is accepted, e.g. "an IATA flight number such as AZ610"
    case: str = "as_given"
    date: bool = False

    def normalised(self, raw: str) -> str | None:
        """The value as the service uses it (pools, rules, texts), or None when it is not a valid one."""
        value = raw.strip()
        value = value.upper() if self.case == "upper" else value.lower() if self.case == "lower" else value
        if not self.pattern.fullmatch(value):
            return None
        if self.date:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                return None
        return value


@dataclass(frozen=True)
class Feature:
    name: str
    type: str
    default: Any
    labels: Mapping[str, str]
    values: tuple[str, ...] = ()
    model: bool = True
    sensitive: bool = False

    @functools.cached_property
    def derived_name(self) -> str:
        """The name rules and the model see: timestamps become ``<name>_days``."""
        return f"{self.name}_days" if self.type == "timestamp" else self.name

    @functools.cached_property
    def codes(self) -> dict[str, float]:
        """The model's number for each category."""
        return {value: float(i) for i, value in enumerate(self.values)}

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels.get("en") or self.name

    def parse(self, raw: str | None, now: float) -> Any:
        """Typed value of a stored string; the default when absent or unreadable. Timestamps give days since."""
        if raw is None:
            return self.default
        try:
            if self.type == "number":
                value = float(raw)
                return value if math.isfinite(value) else self.default
            if self.type == "integer":
                return int(float(raw))
            if self.type == "boolean":
                lowered = raw.strip().lower()
                if lowered in _TRUE:
                    return True
                return False if lowered in _FALSE else self.default
            if self.type == "category":
                return raw if raw in self.values else self.default
            if self.type == "timestamp":
                if raw == "":
                    return None
                return max(0.0, (now - float(raw)) / SECONDS_PER_DAY)
        except ValueError:
            return self.default
        return raw  # text

    def encode(self, value: Any) -> float:
        """The model's number for a typed value: category index, 0/1, NaN for a missing timestamp."""
        if value is None:
            return math.nan
        if self.type == "category":
            return self.codes.get(value, math.nan)
        if self.type == "boolean":
            return 1.0 if value else 0.0
        return float(value)


@dataclass(frozen=True)
class FeatureSchema:
    """All features, in file order, and the model's view of them."""

    features: tuple[Feature, ...]
    version: str
    # The request context keys the service knows, by name (see the module docstring).
    context: Mapping[str, ContextKey] = field(default_factory=dict)
    by_name: Mapping[str, Feature] = field(init=False, repr=False)
    model_features: tuple[Feature, ...] = field(init=False, repr=False)

    # Per feature, what parse and model_row need, worked out once: a decision parses ~35 features and encodes
    # ~25, and a call per feature (Feature.parse, Feature.encode) was most of their cost.
    _readers: tuple[tuple[str, str, str, Any, frozenset[str]], ...] = field(init=False, repr=False, compare=False)
    _encoders: tuple[tuple[str, str, Mapping[str, float]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.features})
        object.__setattr__(self, "model_features", tuple(f for f in self.features if f.model))
        readers = tuple((f.name, f.derived_name, f.type, f.default, frozenset(f.values)) for f in self.features)
        object.__setattr__(self, "_readers", readers)
        encoders = tuple((f.derived_name, f.type, f.codes) for f in self.model_features)
        object.__setattr__(self, "_encoders", encoders)

    @classmethod
    def load(cls, path: Path = DEFAULT_SCHEMA_PATH) -> FeatureSchema:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        if not isinstance(document, dict) or not isinstance(document.get("features"), dict):
            raise SchemaError(f"{path}: expected a mapping with a 'features' mapping")
        features = []
        for name, spec in document["features"].items():
            if not isinstance(spec, dict):
                raise SchemaError(f"{path}: feature {name!r}: expected a mapping")
            ftype = spec.get("type")
            if ftype not in TYPES:
                raise SchemaError(f"{path}: feature {name!r}: type {ftype!r} is not one of {', '.join(TYPES)}")
            values = tuple(str(v) for v in spec.get("values", ()))
            if ftype == "category" and not values:
                raise SchemaError(f"{path}: feature {name!r}: a category needs 'values'")
            default = spec.get("default")
            if ftype == "category" and default not in values:
                raise SchemaError(f"{path}: feature {name!r}: default {default!r} is not among its values")
            labels = spec.get("label") or {}
            if isinstance(labels, str):
                labels = {"en": labels}
            features.append(
                Feature(
                    name=str(name),
                    type=ftype,
                    default=default,
                    labels={str(k): str(v) for k, v in labels.items()},
                    values=values,
                    model=bool(spec.get("model", ftype != "text")) and ftype != "text",
                    sensitive=bool(spec.get("sensitive", False)),
                )
            )
        context = _context_keys(path, document.get("context") or {})
        return cls(features=tuple(features), version=hashlib.sha256(text.encode()).hexdigest()[:12], context=context)

    @property
    def model_feature_names(self) -> list[str]:
        return [f.derived_name for f in self.model_features]

    @property
    def categorical_feature_names(self) -> list[str]:
        return [f.derived_name for f in self.model_features if f.type == "category"]

    def parse(self, raw: Mapping[str, str], now: float) -> dict[str, Any]:
        """Typed values of every feature (defaults filled in), keyed by derived name.

        The same values as ``Feature.parse`` feature by feature (a property test checks it), with its type test
        worked out once per schema rather than once per feature and decision.
        """
        get = raw.get
        values: dict[str, Any] = {}
        for name, derived, kind, default, accepted in self._readers:
            text = get(name)
            if text is None:
                values[derived] = default
                continue
            try:
                if kind == "number":
                    number = float(text)
                    # x - x is 0.0 for every finite float, NaN for NaN and the infinities (math.isfinite)
                    values[derived] = number if number - number == 0.0 else default
                elif kind == "integer":
                    values[derived] = int(float(text))
                elif kind == "category":
                    values[derived] = text if text in accepted else default
                elif kind == "boolean":
                    lowered = text.strip().lower()
                    values[derived] = True if lowered in _TRUE else False if lowered in _FALSE else default
                elif kind == "timestamp":
                    values[derived] = None if text == "" else max(0.0, (now - float(text)) / SECONDS_PER_DAY)
                else:
                    values[derived] = text
            except ValueError:
                values[derived] = default
        return values

    def defaults(self) -> dict[str, Any]:
        return {f.derived_name: (None if f.type == "timestamp" else f.default) for f in self.features}

    def model_row(self, values: Mapping[str, Any]) -> np.ndarray:
        """The model's row of numbers for typed values, in model_feature_names order."""
        # Feature.encode, inlined (see _encoders)
        nan = math.nan
        get = values.get
        row = [
            nan
            if (value := get(derived)) is None
            else codes.get(value, nan)
            if kind == "category"
            else (1.0 if value else 0.0)
            if kind == "boolean"
            else float(value)
            for derived, kind, codes in self._encoders
        ]
        return np.array(row, dtype=np.float64)

    def feature_for(self, derived_name: str) -> Feature | None:
        """The feature behind a derived name (``last_incident_days`` -> ``last_incident``)."""
        feature = self.by_name.get(derived_name)
        if feature is None and derived_name.endswith("_days"):
            feature = self.by_name.get(derived_name[: -len("_days")])
            if feature is not None and feature.type != "timestamp":
                return None
        return feature


def _context_keys(path: Path, section: Any) -> dict[str, ContextKey]:
    if not isinstance(section, dict):
        raise SchemaError(f"{path.name}: context: expected a mapping of context keys")
    keys = {}
    for name, spec in section.items():
        where = f"{path.name}: context key {name!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("pattern"), str) or not spec.get("accepted"):
            raise SchemaError(f"{where}: needs 'pattern' (a regular expression) and 'accepted' (what it allows)")
        case = spec.get("case", "as_given")
        if case not in CASES:
            raise SchemaError(f"{where}: case {case!r} is not one of {', '.join(CASES)}")
        try:
            pattern = re.compile(spec["pattern"])
        except re.error as error:
            raise SchemaError(f"{where}: pattern is not a regular expression: {error}") from None
        keys[str(name)] = ContextKey(str(name), pattern, str(spec["accepted"]), case, bool(spec.get("date", False)))
    return keys
