"""Rule files -> one durable-rules ruleset: reads every ``*.yaml`` of a policy directory, checks, compiles.

A rule file is written by business analysts (see the comment at the top of any file in ``rules/policies``):
each rule has an ``id``, an optional ``description`` and ``priority``, a ``when`` (conditions on one fact) and
a ``then`` (directives). :func:`compile_policies` turns every rule of every file into one durable-rules
condition on the request's single fact, and keeps the directives as templates the engine fills in when the
rule fires.

What ``field`` may name in a rule file, and the key it has in the fact handed to the engine:

* a feature's derived name (``predicted_ltv``, ``last_incident_days``: timestamps as days since) -> the same;
* ``touchpoint`` (one of :data:`TOUCHPOINTS`) -> ``touchpoint``;
* ``context.<key>`` (text from the request) -> ``ctx_<key>``;
* contact counters, read from the customer's contact history (kept 90 days, in Redis, expiring by itself):
  ``declines_<N>d.<action_id>`` (refusals of the action), ``offers_<N>h`` / ``offers_<N>d`` (offers made at
  any touchpoint; a visit is a few hours), ``offers_<N>d.<TOUCHPOINT>`` (offers made at that touchpoint),
  ``offers_<N>d.<action_id>`` (times that action was offered), ``sent_<N>d.<follow_up>`` (follow-ups sent)
  -> ``declines_30d__<action_id>``, ``offers_4h``, ``offers_1d__IVR``, ``sent_30d__card_renewal_reminder``;
* ``known_customer`` (true or false) -> ``known_customer``.

A field absent from the fact makes every comparison on it false, except ``exists: false``.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from features.contact_history import MAX_WINDOW_S, ContactQuery, Counter
from features.schema import FeatureSchema

# The request's touchpoints, as named by nba.v1.Touchpoint (decision.domain.Touchpoint). Kept here rather than
# imported so the rules layer does not depend on the decision layer that uses it.
TOUCHPOINTS = (
    "CHECKIN_KIOSK",
    "CHECKIN_AGENT",
    "IVR",
    "BRANCH_TELLER",
    "CONTACT_CENTER",
    "WEB",
    "MOBILE_APP",
)
CONTEXT_FIELD = "context."
CONTEXT_KEY_PREFIX = "ctx_"
# Contact counters: EVENT_<N>h|d[.<action, touchpoint or follow-up>]; the history behind them is kept 90 days.
_COUNTER = re.compile(r"^(declines|offers|sent)_([1-9][0-9]*)([hd])(?:\.(.+))?$")
COUNTER_EVENTS = {"declines": "declined", "offers": "offered", "sent": "sent"}
KNOWN_CUSTOMER = "known_customer"
TOUCHPOINT = "touchpoint"

# Every compiled condition also tests this key, which only the engine's request facts carry. durable-rules
# matches ``m`` conditions against its own session-state object too ({sid, id, $s}): a condition made only of
# negative tests (``exists: false``) matches that object, and under durable.engine, which rewrites the state
# after each action, fires forever inside assert_fact (reproduced). A positive test on the marker prevents it.
FACT_MARKER = "nba_request_fact"
# durable reads at most 64 properties of a fact (error 302 beyond); the marker and the session id take two.
MAX_FACT_FIELDS = 62
# Rules per durable ruleset: durable refuses a fact that more than ~60 rules of one ruleset match at once.
RULES_PER_RULESET = 50
EVERY_REQUEST = "every_request"  # the durable rule that matches every request fact (see ruleset_definitions)

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists")
_ORDERING = {"gt": "$gt", "gte": "$gte", "lt": "$lt", "lte": "$lte"}


class Verb(enum.StrEnum):
    """What a rule's directive asks of the decision: the compiler, the engine and eligibility share these."""

    REQUIRE = "require"
    EXCLUDE = "exclude"
    SUPPRESS = "suppress"
    BOOST = "boost"
    SET_LANGUAGE = "set_language"
    SET_CHANNEL = "set_channel"
    FOLLOW_UP = "follow_up"
    LIMIT_OFFERS = "limit_offers"


VERBS = tuple(verb.value for verb in Verb)
# The channels a follow-up or a campaign can go out by (the decision names one, S3).
CHANNELS = ("sms", "email", "app", "phone", "branch", "web", "kiosk", "agent")
_ACTION_VERBS = (Verb.REQUIRE, Verb.EXCLUDE, Verb.SUPPRESS, Verb.BOOST)
_EXTRA_KEYS = {
    Verb.REQUIRE: ("otherwise",),
    Verb.BOOST: ("by",),
    Verb.FOLLOW_UP: ("action", "channel"),
    Verb.LIMIT_OFFERS: ("counting",),
}
_DIRECTIVE_KEYS = ("reason", "by", "action", "channel", "counting", "otherwise")
_RULE_KEYS = ("id", "description", "priority", "for_each_action", "when", "then")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_CONTEXT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_EACH_ACTION = "{action}"


class RuleFileError(ValueError):
    """A rule file is invalid; the message names the file, the rule and the field or directive at fault."""


class _Problem(Exception):
    """A problem inside one rule; turned into a RuleFileError that names the file and the rule."""


@dataclass(frozen=True)
class FieldType:
    """What a rule field is: its key in the fact, its type and (for categories) the accepted values."""

    field: str
    key: str
    type: str  # number | integer | boolean | category | text
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Template:
    """A directive value, either literal or with ``{field}`` placeholders filled from the fact."""

    text: str
    parts: tuple[tuple[str, str], ...]  # (literal text, fact key or "" at the end)

    @classmethod
    def parse(cls, text: str, resolve: Callable[[str], FieldType]) -> Template:
        parts = []
        position = 0
        for match in _PLACEHOLDER.finditer(text):
            try:
                key = resolve(match.group(1)).key
            except _Problem as problem:
                raise _Problem(f"field {match.group(1)!r}: {problem}") from None
            parts.append((text[position : match.start()], key))
            position = match.end()
        parts.append((text[position:], ""))
        return cls(text=text, parts=tuple(parts))

    @property
    def is_literal(self) -> bool:
        return len(self.parts) == 1

    def fill(self, fact: Mapping[str, object]) -> str:
        """The text with placeholders replaced; KeyError names the fact key when the fact lacks it."""
        if self.is_literal:
            return self.text
        out = []
        for literal, key in self.parts:
            out.append(literal)
            if key:
                value = fact.get(key)
                if value is None:
                    raise KeyError(key)
                out.append(str(value))
        return "".join(out)


@dataclass(frozen=True)
class DirectiveTemplate:
    """One directive of a rule as written, ready to be turned into an engine Directive when the rule fires."""

    kind: Verb
    reason_code: str
    action_id: str = ""
    value: Template | None = None
    factor: float = 1.0
    otherwise: str = ""  # require: the action required instead when this one cannot be given (sold out, ...)
    channel: Template | None = None  # follow_up: the channel it goes out by (else the decision's channel)
    limit: int = -1  # limit_offers: at most this many offers ...
    counted: Counter | None = None  # ... counting the offers this counter has seen (None: this decision only)


@dataclass(frozen=True)
class Test:
    """One condition as written: ``field`` (fact key ``key``) ``op`` ``expected``."""

    field: str
    key: str
    op: str
    expected: Any


@dataclass(frozen=True)
class Group:
    """``all`` or ``any`` of conditions."""

    kind: str  # all | any
    items: tuple[Test | Group, ...]


@dataclass(frozen=True)
class CompiledRule:
    """One durable-rules rule: a ``for_each_action`` rule gives one per action, all sharing ``rule_id``."""

    rule_id: str
    name: str  # unique within the ruleset: rule_id, or rule_id/action_id for an expanded rule
    file: str
    order: int  # position over all files (sorted by name) and rules; ties on priority keep this order
    priority: int
    description: str
    condition: Mapping[str, Any]  # durable's JSON condition on the fact, marker test included
    directives: tuple[DirectiveTemplate, ...]
    when: Test | Group  # the conditions as written, for explaining why a rule did not match


@dataclass(frozen=True)
class CompiledPolicies:
    """Every rule of every file of a policy directory, compiled."""

    rules: tuple[CompiledRule, ...]
    version: str  # sha256 of the file names and bytes, 12 hex characters
    files: tuple[str, ...]
    fact_keys: frozenset[str]  # every fact key a condition reads: all durable needs to see of a fact
    counters: tuple[Counter, ...] = ()  # every contact counter a condition or a limit reads

    @property
    def contact_query(self) -> ContactQuery:
        """What these rules' counters read of a customer's contact history."""
        return ContactQuery(self.counters)

    def ruleset_definitions(self, chunk: int = RULES_PER_RULESET) -> list[dict[str, Any]]:
        """durable's JSON ruleset definitions, ``chunk`` rules each: ``{"<position>:<name>": {"all": [...]}}``.

        durable refuses a fact (error 303, a full stack of 64 in its C core) when more than about 60 of one
        ruleset's rules match it at once (measured: 60 fine, 70 refused), so rules are split into rulesets of
        ``chunk``: one assert per ruleset, one for the shipped rules. Rule names start with the rule's position
        in :attr:`rules`, so the engine finds a matched rule without parsing the fact durable echoes back.
        Each ruleset also has a rule that matches every request fact: durable's ``delete_state`` reads
        uninitialised memory when the session's fact matched no rule at all (valgrind: ``deleteStateNode``; it
        crashes or corrupts the heap depending on what else is loaded), so no fact may go unmatched.
        """
        definitions = []
        for start in range(0, max(len(self.rules), 1), chunk):
            part = self.rules[start : start + chunk]
            definition = {f"{start + i}:{rule.name}": {"all": [{"m": rule.condition}]} for i, rule in enumerate(part)}
            definition[f"{len(self.rules)}:{EVERY_REQUEST}"] = {"all": [{"m": {FACT_MARKER: 1}}]}
            definitions.append(definition)
        return definitions


@dataclass(frozen=True)
class ReasonTexts:
    """The reason codes the explanation templates have text for, each with its languages (messages.yaml)."""

    languages: tuple[str, ...]
    codes: Mapping[str, Collection[str]]
    source: str = "messages.yaml"


def compile_policies(
    policy_dir: Path,
    known_actions: Collection[str],
    schema: FeatureSchema,
    reasons: ReasonTexts | None = None,
) -> CompiledPolicies:
    """Load, check and compile every ``*.yaml`` in ``policy_dir`` (in file-name order) into one ruleset.

    ``known_actions`` are the catalogue's action ids: directives may name only these, and ``for_each_action``
    rules are expanded over them (in sorted order). With ``reasons``, every directive's reason code must have a
    text in every language. Raises :class:`RuleFileError` naming the file, the rule and the field or directive
    at fault.
    """
    actions = tuple(sorted(known_actions))
    paths = sorted(Path(policy_dir).glob("*.yaml"))
    if not paths:
        raise RuleFileError(f"{policy_dir}: no *.yaml rule files")
    fields = _Fields(schema, actions, reasons)
    digest = hashlib.sha256()
    rules: list[CompiledRule] = []
    defined_in: dict[str, str] = {}
    for path in paths:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + data + b"\0")
        for raw in _rules_of(path.name, data):
            rule_id = raw.get("id") if isinstance(raw, dict) else None
            where = f"{path.name}: rule {rule_id!r}"
            try:
                if isinstance(rule_id, str) and rule_id in defined_in:
                    raise _Problem(f"duplicate rule id, first defined in {defined_in[rule_id]}")
                compiled = _compile_rule(raw, path.name, len(rules), fields, actions)
            except _Problem as problem:
                raise RuleFileError(f"{where}: {problem}") from None
            defined_in[str(rule_id)] = path.name
            rules.extend(compiled)
    fact_keys = frozenset(key for rule in rules for key in _keys_of(rule.condition)) - {FACT_MARKER}
    if len(fact_keys) > MAX_FACT_FIELDS:
        raise RuleFileError(
            f"{policy_dir}: the rules read {len(fact_keys)} different fields; durable-rules takes at most "
            f"{MAX_FACT_FIELDS} per request (for_each_action counters count once per action)"
        )
    return CompiledPolicies(
        rules=tuple(rules),
        version=digest.hexdigest()[:12],
        files=tuple(p.name for p in paths),
        fact_keys=fact_keys,
        counters=tuple(sorted(fields.counters_used, key=lambda c: c.key)),
    )


def _rules_of(file_name: str, data: bytes) -> list[Any]:
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as error:
        raise RuleFileError(f"{file_name}: not valid YAML: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise RuleFileError(f"{file_name}: expected a top-level 'rules:' list")
    extra = sorted(set(document) - {"rules"})
    if extra:
        raise RuleFileError(f"{file_name}: unknown top-level key(s) {', '.join(map(str, extra))}; only 'rules'")
    return list(document["rules"])


def _compile_rule(raw: Any, file_name: str, order: int, fields: _Fields, actions: Sequence[str]) -> list[CompiledRule]:
    if not isinstance(raw, dict):
        raise _Problem("a rule must be a mapping with id, when and then")
    unknown = sorted(set(map(str, raw)) - set(_RULE_KEYS))
    if unknown:
        raise _Problem(f"unknown key(s) {', '.join(unknown)}; a rule has {', '.join(_RULE_KEYS)}")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not _ID.match(rule_id):
        raise _Problem("'id' must be lower-case letters, digits and underscores, starting with a letter")
    for key in ("when", "then"):
        if raw.get(key) in (None, [], {}):
            raise _Problem(f"missing '{key}'")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise _Problem(f"'priority' must be a whole number, got {priority!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _Problem("'description' must be text")
    for_each = raw.get("for_each_action", False)
    if not isinstance(for_each, bool):
        raise _Problem("'for_each_action' must be true or false")
    body = {"when": raw["when"], "then": raw["then"]}
    if not for_each:
        if _EACH_ACTION in repr(body):
            raise _Problem(f"uses {_EACH_ACTION} but is not 'for_each_action: true'")
        expansions: list[tuple[str, Any]] = [(rule_id, body)]
    else:
        expansions = [(f"{rule_id}/{action}", _substitute(body, action)) for action in actions]
    compiled: list[CompiledRule] = []
    for name, expanded in expansions:
        condition = {"$and": [{FACT_MARKER: 1}, _compile_when(expanded["when"], fields)]}
        directives = _compile_then(expanded["then"], fields)
        when = _tree(expanded["when"], fields)
        compiled.append(
            CompiledRule(
                rule_id=rule_id,
                name=name,
                file=file_name,
                order=order + len(compiled),
                priority=priority,
                description=description,
                condition=condition,
                directives=directives,
                when=when,
            )
        )
    return compiled


def _substitute(value: Any, action: str) -> Any:
    if isinstance(value, str):
        return value.replace(_EACH_ACTION, action)
    if isinstance(value, list):
        return [_substitute(v, action) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, action) for k, v in value.items()}
    return value


# ---- conditions ----------------------------------------------------------------------------------


def _compile_when(node: Any, fields: _Fields, path: str = "when") -> dict[str, Any]:
    """A ``when`` tree -> one durable condition (``$and``/``$or`` of field tests)."""
    if not isinstance(node, dict):
        raise _Problem(f"{path}: expected all:, any: or a {{field: ..., <operator>: ...}} condition")
    groups = [key for key in ("all", "any") if key in node]
    if groups:
        if len(node) != 1:
            raise _Problem(f"{path}: 'all'/'any' must stand alone, found {', '.join(map(str, node))}")
        group = groups[0]
        items = node[group]
        if not isinstance(items, list) or not items:
            raise _Problem(f"{path}.{group}: expected a non-empty list of conditions")
        compiled = [_compile_when(item, fields, f"{path}.{group}[{i}]") for i, item in enumerate(items)]
        if len(compiled) == 1:
            return compiled[0]
        return {"$and" if group == "all" else "$or": compiled}
    return _compile_test(node, fields, path)


def _tree(node: dict[str, Any], fields: _Fields) -> Test | Group:
    """A ``when`` already checked by _compile_when, as Test and Group objects."""
    for kind in ("all", "any"):
        if kind in node:
            items = tuple(_tree(item, fields) for item in node[kind])
            return items[0] if len(items) == 1 else Group(kind, items)
    ((op, expected),) = ((key, value) for key, value in node.items() if key != "field")
    return Test(node["field"], fields.resolve(node["field"]).key, op, expected)


def _compile_test(node: dict[str, Any], fields: _Fields, path: str) -> dict[str, Any]:
    if "field" not in node:
        raise _Problem(f"{path}: a condition needs 'field' (or is an all:/any: list)")
    name = node["field"]
    if not isinstance(name, str):
        raise _Problem(f"{path}: 'field' must be text, got {name!r}")
    operators = [key for key in node if key != "field"]
    if len(operators) != 1 or operators[0] not in OPERATORS:
        raise _Problem(
            f"field {name!r}: expected exactly one operator among {', '.join(OPERATORS)}, "
            f"found {', '.join(map(str, operators)) or 'none'}"
        )
    op = operators[0]
    value = node[op]
    try:
        ftype = fields.resolve(name)
        return _test(ftype, op, value)
    except _Problem as problem:
        raise _Problem(f"field {name!r}: {problem}") from None


def _test(ftype: FieldType, op: str, value: Any) -> dict[str, Any]:
    key = ftype.key
    if op == "exists":
        if not isinstance(value, bool):
            raise _Problem(f"exists takes true or false, got {value!r}")
        return {"$ex" if value else "$nex": {key: 1}}
    if op in _ORDERING:
        if ftype.type not in ("number", "integer"):
            raise _Problem(f"{op} compares numbers, but this field is {_describe(ftype)}")
        _check_value(ftype, op, value)
        return {_ORDERING[op]: {key: value}}
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise _Problem(f"{op} takes a non-empty list, got {value!r}")
        for item in value:
            _check_value(ftype, op, item)
        tests = [{key: item} if op == "in" else {"$neq": {key: item}} for item in value]
        return tests[0] if len(tests) == 1 else {"$or" if op == "in" else "$and": tests}
    _check_value(ftype, op, value)
    return {key: value} if op == "eq" else {"$neq": {key: value}}


def _check_value(ftype: FieldType, op: str, value: Any) -> None:
    if ftype.type in ("number", "integer"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif ftype.type == "boolean":
        ok = isinstance(value, bool)
    elif ftype.type == "category":
        if isinstance(value, str) and value not in ftype.values:
            raise _Problem(f"{op}: {value!r} is not one of its values: {', '.join(ftype.values)}")
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise _Problem(f"{op}: {value!r} does not fit: this field is {_describe(ftype)}")


def _describe(ftype: FieldType) -> str:
    if ftype.type == "category":
        return f"a category ({', '.join(ftype.values)})"
    return {"number": "a number", "integer": "a whole number", "boolean": "true or false"}.get(ftype.type, "text")


def _keys_of(condition: Any) -> Iterable[str]:
    """Fact keys a compiled condition reads."""
    if isinstance(condition, list):
        for item in condition:
            yield from _keys_of(item)
    elif isinstance(condition, dict):
        for key, value in condition.items():
            if key.startswith("$"):
                yield from _keys_of(value)
            else:
                yield key


# ---- directives ----------------------------------------------------------------------------------


def _compile_then(then: Any, fields: _Fields) -> tuple[DirectiveTemplate, ...]:
    if isinstance(then, dict):
        then = [then]
    if not isinstance(then, list):
        raise _Problem("then: expected a list of directives")
    directives: list[DirectiveTemplate] = []
    for i, item in enumerate(then):
        path = f"then[{i}]"
        if not isinstance(item, dict):
            raise _Problem(f"{path}: expected a directive such as {{exclude: ACTION, reason: CODE}}")
        verbs = [key for key in item if key in VERBS]
        others = [str(key) for key in item if key not in VERBS and key not in _DIRECTIVE_KEYS]
        if others:
            raise _Problem(f"{path}: unknown directive {others[0]!r}; directives are {', '.join(VERBS)}")
        if len(verbs) != 1:
            raise _Problem(f"{path}: expected one directive ({', '.join(VERBS)}), found {', '.join(verbs) or 'none'}")
        verb = Verb(verbs[0])
        try:
            directives.extend(_directive(verb, item, fields))
        except _Problem as problem:
            raise _Problem(f"{path} {verb}: {problem}") from None
    return tuple(directives)


def _directive(verb: Verb, item: dict[str, Any], fields: _Fields) -> list[DirectiveTemplate]:
    reason = item.get("reason")
    if not isinstance(reason, str) or not _ID.match(reason):
        raise _Problem(f"needs 'reason': a reason code in lower_case, got {reason!r}")
    fields.check_reason(reason)
    allowed = {"reason", verb, *_EXTRA_KEYS.get(verb, ())}
    extra = sorted(set(item) - allowed)
    if extra:
        raise _Problem(f"does not take {', '.join(extra)}")
    target = item[verb]
    if verb in _ACTION_VERBS:
        factor = 1.0
        if verb is Verb.BOOST:
            by = item.get("by")
            if isinstance(by, bool) or not isinstance(by, int | float) or by <= 0:
                raise _Problem(f"needs 'by': a positive factor, got {by!r}")
            factor = float(by)
        ids = target if isinstance(target, list) else [target]
        if not ids:
            raise _Problem("names no action")
        otherwise = fields.action(item["otherwise"]) if "otherwise" in item else ""
        if otherwise and otherwise in ids:
            raise _Problem(f"'otherwise' must name another action than the one required, got {otherwise!r}")
        return [
            DirectiveTemplate(
                kind=verb, reason_code=reason, action_id=fields.action(a), factor=factor, otherwise=otherwise
            )
            for a in ids
        ]
    if verb in (Verb.SET_LANGUAGE, Verb.SET_CHANNEL):
        if not isinstance(target, str) or not target:
            what = "language" if verb is Verb.SET_LANGUAGE else "channel"
            raise _Problem(f"expected a {what} or a {{field}} template, got {target!r}")
        value = Template.parse(target, fields.resolve)
        if verb is Verb.SET_CHANNEL:
            fields.check_channel(value)
        return [DirectiveTemplate(kind=verb, reason_code=reason, value=value)]
    if verb is Verb.LIMIT_OFFERS:
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise _Problem(f"expected the largest number of offers, a whole number >= 0, got {target!r}")
        counted = None
        if "counting" in item:
            counting = item["counting"]
            field = fields.resolve(counting) if isinstance(counting, str) else None
            counted = fields.counter(field.key) if field is not None else None
            if counted is None or counted.event != "offered":
                raise _Problem(
                    f"'counting' names the offers already made, such as offers_4h (a visit) or offers_1d.IVR; "
                    f"got {counting!r}"
                )
        return [DirectiveTemplate(kind=verb, reason_code=reason, limit=target, counted=counted)]
    # follow_up: the kind of follow-up (its text lives in messages.yaml), for one of the actions if any are named
    if not isinstance(target, str) or not _ID.match(target):
        raise _Problem(f"expected a follow-up kind such as apology_letter, got {target!r}")
    channel = None
    if "channel" in item:
        if not isinstance(item["channel"], str):
            raise _Problem(f"'channel' is a channel or a {{field}} template, got {item['channel']!r}")
        channel = Template.parse(item["channel"], fields.resolve)
        fields.check_channel(channel)
    named = item.get("action", [])
    ids = [fields.action(a) for a in (named if isinstance(named, list) else [named])] or [""]
    # With several actions, the first one decided gets the follow-up (the upgrade, else the points instead).
    return [
        DirectiveTemplate(
            kind=verb,
            reason_code=reason,
            action_id=action_id,
            value=Template.parse(target, fields.resolve),
            channel=channel,
        )
        for action_id in ids
    ]


# ---- fields --------------------------------------------------------------------------------------


class _Fields:
    """What a rule file may name: features, touchpoint, context.*, contact counters, known_customer, actions."""

    def __init__(self, schema: FeatureSchema, actions: Sequence[str], reasons: ReasonTexts | None = None) -> None:
        self._reasons = reasons
        self._counters: dict[str, Counter] = {}
        self._actions = actions
        self._action_set = frozenset(actions)
        self._features: dict[str, FieldType] = {}
        self._timestamps: dict[str, str] = {}
        for feature in schema.features:
            ftype = "number" if feature.type == "timestamp" else feature.type
            name = feature.derived_name
            self._features[name] = FieldType(name, name, ftype, feature.values)
            if feature.type == "timestamp":
                self._timestamps[feature.name] = name
        self._features[TOUCHPOINT] = FieldType(TOUCHPOINT, TOUCHPOINT, "category", TOUCHPOINTS)
        self._features[KNOWN_CUSTOMER] = FieldType(KNOWN_CUSTOMER, KNOWN_CUSTOMER, "boolean")

    def resolve(self, name: str) -> FieldType:
        if name in self._features:
            return self._features[name]
        if name.startswith(CONTEXT_FIELD):
            key = name[len(CONTEXT_FIELD) :]
            if not _CONTEXT_KEY.match(key):
                raise _Problem("a context key is letters, digits and underscores")
            return FieldType(name, CONTEXT_KEY_PREFIX + key, "text")
        if counted := _COUNTER.match(name):
            counter = self._counter(name, *counted.groups())
            self._counters.setdefault(counter.key, counter)
            return FieldType(name, counter.key, "integer")
        if name in self._timestamps:
            raise _Problem(f"a timestamp is compared as days since: use {self._timestamps[name]!r}")
        close = difflib.get_close_matches(name, list(self._features), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        accepted = ", ".join(list(self._features)[:8])
        raise _Problem(
            f"unknown field; {hint}accepted fields are the features of features/schema.yaml "
            f"({accepted}, ...), touchpoint, known_customer, context.<key> and contact counters "
            f"(declines_30d.<action>, offers_4h, offers_1d.<TOUCHPOINT>, sent_30d.<follow_up>)"
        )

    def _counter(self, name: str, kind: str, count: str, unit: str, narrowed: str | None) -> Counter:
        window_s = int(count) * (3600 if unit == "h" else 86_400)
        if window_s > MAX_WINDOW_S:
            raise _Problem("the contact history is kept 90 days: a counter's window is at most 90d")
        key = name.replace(".", "__")
        event = COUNTER_EVENTS[kind]
        if narrowed is None:
            if kind == "declines":
                raise _Problem(f"say which action's declines: {name}.<action>")
            return Counter(key, event, window_s)
        if kind == "sent":
            if not _ID.match(narrowed):
                raise _Problem(f"expected a follow-up kind after the dot, such as {kind}_30d.apology_letter")
            return Counter(key, event, window_s, name=narrowed)
        if kind == "offers" and narrowed in TOUCHPOINTS:
            return Counter(key, event, window_s, touchpoint=narrowed)
        if narrowed not in self._action_set:
            where = " or a touchpoint (" + ", ".join(TOUCHPOINTS) + ")" if kind == "offers" else ""
            raise _Problem(f"unknown action {narrowed!r}{where}; {self._known_actions(narrowed)}")
        return Counter(key, event, window_s, name=narrowed)

    def counter(self, key: str) -> Counter | None:
        return self._counters.get(key)

    @property
    def counters_used(self) -> list[Counter]:
        return list(self._counters.values())

    def check_channel(self, value: Template) -> None:
        if value.is_literal and value.text not in CHANNELS:
            raise _Problem(f"unknown channel {value.text!r}; channels are {', '.join(CHANNELS)}")

    def check_reason(self, code: str) -> None:
        """Every reason is said to someone: its text must exist in every language the service speaks."""
        if self._reasons is None:
            return
        written = self._reasons.codes.get(code)
        if written is None:
            raise _Problem(
                f"reason {code!r} has no text: add it under 'reasons:' in {self._reasons.source}, "
                f"in {', '.join(self._reasons.languages)}"
            )
        missing = [language for language in self._reasons.languages if language not in written]
        if missing:
            raise _Problem(f"reason {code!r} has no text in {', '.join(missing)} in {self._reasons.source}")

    def action(self, action: Any) -> str:
        if not isinstance(action, str) or action not in self._action_set:
            raise _Problem(f"unknown action {action!r}; {self._known_actions(action)}")
        return action

    def _known_actions(self, action: Any) -> str:
        close = difflib.get_close_matches(str(action), self._actions, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"{hint}known actions: {', '.join(self._actions)}"
