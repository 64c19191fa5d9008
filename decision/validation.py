"""Checks on what callers send: every bad input is refused with the field named and what is accepted."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

from decision.domain import Outcome, Touchpoint
from decision.errors import InvalidArgument
from features.schema import ContextKey

CUSTOMER_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
DECISION_ID = re.compile(r"[0-9a-f]{32}")
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces
CONTEXT_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}")
ACTION_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the catalogue's ids are lower_snake_case
MAX_CONTEXT_VALUE = 256
MAX_ACTIONS = 20
E = TypeVar("E", bound=enum.IntEnum)


def shown(value: str, limit: int = 40) -> str:
    """Caller text as an error message quotes it: in quotes, cut short after ``limit`` characters."""
    return repr(value if len(value) <= limit else value[:limit] + "...") + (
        f" ({len(value)} characters)" if len(value) > limit else ""
    )


def entry_name(field: str, key: str, limit: int = 40) -> str:
    """How a message names one entry of a map field, ``context[flight]``; a long key is cut short."""
    return f"{field}[{key if len(key) <= limit else key[:limit] + '...'}]"


def customer_id(value: str) -> str:
    if not CUSTOMER_ID.fullmatch(value):
        raise InvalidArgument(
            "customer_id: must be 1-64 characters of letters, digits and . _ : @ -; got " + shown(value)
        )
    return value


def touchpoint(value: int) -> Touchpoint:
    return _member("touchpoint", Touchpoint, value)


def touchpoint_name(value: str) -> Touchpoint:
    try:
        return Touchpoint.named(value)
    except ValueError:
        accepted = ", ".join(t.name for t in Touchpoint)
        raise InvalidArgument(f"touchpoint: must be one of {accepted}; got {shown(value)}") from None


def context(
    value: Mapping[str, str], max_entries: int, declared: Mapping[str, ContextKey] | None = None
) -> dict[str, str]:
    """The request context, each ``declared`` key's value normalised (stripped, in its case) and checked against
    its pattern (features/schema.yaml ``context``); undeclared keys pass as given, for rules and the log."""
    if len(value) > max_entries:
        raise InvalidArgument(f"context: at most {max_entries} entries are accepted; got {len(value)}")
    for key in sorted(value):
        if not CONTEXT_KEY.fullmatch(key):
            raise InvalidArgument(
                f"context: key {shown(key)} must be lower_snake_case, 1-64 characters, starting with a letter"
            )
        if len(value[key]) > MAX_CONTEXT_VALUE:
            raise InvalidArgument(
                f"context[{key}]: values are at most {MAX_CONTEXT_VALUE} characters; got {len(value[key])}"
            )
    checked = dict(value)
    for key, spec in (declared or {}).items():
        if key in checked:
            normalised = spec.normalised(checked[key])
            if normalised is None:
                raise InvalidArgument(
                    f"context[{key}]: must match {spec.pattern.pattern} ({spec.accepted}); got {shown(checked[key])}"
                )
            checked[key] = normalised
    return checked


def request_id(value: str) -> str:
    if value and not REQUEST_ID.fullmatch(value):
        raise InvalidArgument(
            "request_id: must be 1-128 printable ASCII characters without spaces; got " + shown(value)
        )
    return value


def max_actions(value: int, default: int) -> int:
    if value < 0 or value > MAX_ACTIONS:
        raise InvalidArgument(
            f"max_actions: must be between 0 and {MAX_ACTIONS} (0 = the default {default}); got {value}"
        )
    return value or default


def decision_id(value: str) -> str:
    if not DECISION_ID.fullmatch(value):
        raise InvalidArgument("decision_id: must be the 32 hexadecimal characters of a decision; got " + shown(value))
    return value


def action_id(value: str) -> str:
    if not ACTION_ID.fullmatch(value):
        raise InvalidArgument(
            "action_id: must be 1-64 characters of letters, digits and _ . -, one of the decision's actions; got "
            + shown(value)
        )
    return value


def outcome(value: int) -> Outcome:
    return _member("outcome", Outcome, value)


def enum_name(field: str, value: str, names: Sequence[str]) -> str:
    """A proto enum value by its name, as the JSON form of a request gives it; unknown names are refused."""
    if value not in names:
        accepted = ", ".join(n for n in names if not n.endswith("_UNSPECIFIED"))
        raise InvalidArgument(f"{field}: must be one of {accepted}; got {shown(value)}")
    return value


def _member(field: str, kind: type[E], value: int) -> E:
    """The enum member for a proto enum number; 0 (unspecified) and unknown numbers are refused."""
    try:
        return kind(value)
    except ValueError:
        accepted = ", ".join(m.name for m in kind)
        got = f"{field.upper()}_UNSPECIFIED (0)" if value == 0 else f"unknown value {value}"
        raise InvalidArgument(f"{field}: must be one of {accepted}; got {got}") from None
