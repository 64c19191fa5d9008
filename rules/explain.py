"""Why a rule matched or not: every rule's conditions checked against one fact, in words an analyst reads.

``nba rules explain`` prints this for a real customer at a touchpoint. The verdicts follow durable-rules'
semantics (a condition on a field the fact lacks is false, except ``exists: false``), and a test checks them
against the engine's own answer for random facts, so the explanation never tells a story the engine disagrees
with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rules.compiler import CompiledRule, Group, Test

_SYMBOLS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "in", "not_in": "not in"}


@dataclass(frozen=True)
class RuleVerdict:
    rule_id: str
    name: str  # rule_id, or rule_id/action for a for_each_action rule
    file: str
    priority: int
    description: str
    matched: bool
    why: str  # the conditions that held (matched) or the first ones that failed (not matched)


def explain_rules(rules: tuple[CompiledRule, ...], fact: Mapping[str, Any]) -> list[RuleVerdict]:
    """A verdict per compiled rule, in rule-file order."""
    verdicts = []
    for rule in rules:
        matched, why = _check(rule.when, fact)
        verdicts.append(
            RuleVerdict(rule.rule_id, rule.name, rule.file, rule.priority, rule.description, matched, "; ".join(why))
        )
    return verdicts


def _check(node: Test | Group, fact: Mapping[str, Any]) -> tuple[bool, list[str]]:
    if isinstance(node, Test):
        held = holds(node, fact)
        return held, [describe(node, fact, held)]
    results = [_check(item, fact) for item in node.items]
    if node.kind == "all":
        failed = [why for ok, reasons in results if not ok for why in reasons]
        return (not failed, failed or [why for _, reasons in results for why in reasons])
    passed = [why for ok, reasons in results if ok for why in reasons]
    return (bool(passed), passed or ["none of: " + " | ".join(why for _, r in results for why in r)])


def holds(test: Test, fact: Mapping[str, Any]) -> bool:
    """Whether one condition holds for the fact, as durable-rules decides it."""
    value = _value(fact, test.key)
    if test.op == "exists":
        return (value is not None) is bool(test.expected)
    if value is None:
        return False
    try:
        if test.op == "eq":
            return _same(value, test.expected)
        if test.op == "ne":
            return not _same(value, test.expected)
        if test.op == "in":
            return any(_same(value, item) for item in test.expected)
        if test.op == "not_in":
            return not any(_same(value, item) for item in test.expected)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False  # durable compares only numbers with numbers
        return {
            "gt": value > test.expected,
            "gte": value >= test.expected,
            "lt": value < test.expected,
            "lte": value <= test.expected,
        }[test.op]
    except TypeError:
        return False


def describe(test: Test, fact: Mapping[str, Any], held: bool) -> str:
    value = _value(fact, test.key)
    if test.op == "exists":
        state = "is absent" if value is None else f"is {value!r}"
        return f"{test.field} {state}" + ("" if held else f" (wanted {'present' if test.expected else 'absent'})")
    if value is None:
        return f"{test.field} is absent (wanted {_SYMBOLS[test.op]} {test.expected!r})"
    verb = "" if held else "not "
    return f"{test.field} = {value!r} is {verb}{_SYMBOLS[test.op]} {test.expected!r}"


def _value(fact: Mapping[str, Any], key: str) -> Any:
    value = fact.get(key)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON cannot carry it: the engine sees no field
    return value


def _same(value: Any, expected: Any) -> bool:
    # durable: true is not 1, and 1 equals 1.0
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value is expected
    return bool(value == expected)
