"""The rules engine: evaluates every policy rule against one request fact with a single durable-rules assert.

durable-rules 2.0.28 has hazards, each reproduced before it was handled where a comment below says so:

* its C core is not thread-safe -> every durable call runs under :data:`_DURABLE_LOCK`;
* ``post`` hands an event to the first matching rule only -> we assert a *fact*, so every matching rule fires;
* a session keeps its facts -> each evaluation retracts its fact once its matches are read, so the one session
  each ruleset uses is empty again for the next (and if reading them raised, the session is deleted instead).
  A fresh session per evaluation would be clean too, but durable builds and zeroes a large state node for each
  new session, and that ``memset`` was a large part of a whole decision's instructions (callgrind). With the
  fact retracted instead durable's share of a decision fell to about a third, and the same rules fire for
  every fact (the counts: benchmarks/RESULTS.md, the notes of 2026-11-30);
* at most 1,024 live sessions, then MemoryError -> one session per ruleset, under the lock;
* ``delete_state`` of a session whose fact matched no rule reads uninitialised memory (valgrind; a crash or a
  corrupt heap, depending on what else the process loaded) -> a compiled rule matches every request fact;
* "Ruleset ... not found" on a cold start -> the ruleset is created and warmed in ``__init__``, under a name
  of its own, so a second engine (a reload, a test) never meets the first one's rules.

How durable delivers results (found by experiment): an ``assert_fact`` matches the fact against every rule
and queues one action per matched rule in the fact's session; ``durable.engine`` then runs those actions one
at a time, synchronously in the calling thread, each callback finding its session in ``c.s.sid``. That Python
layer is slow per *matched rule* (it re-parses the whole fact, builds a closure and rewrites the session state
for each one), so a decision cost more the more rules it matched. We only need to know which rules matched, so
we read the queue straight from durable's C core (``durable_rules_engine``, the extension ``durable.engine``
itself calls), which costs a small fraction of that per matched rule (what rules cost per decision now:
benchmarks/RESULTS.md, "Rules: what they cost per decision, as they grow"). This also keeps clear of
``durable.engine.Host``, whose two timer threads call into the C core every 200 ms without any lock of ours and
run other sessions' queued actions themselves (reproduced with a single caller thread: missing directives, then a
segfault).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import threading
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import durable_rules_engine
import orjson

from features.schema import FeatureSchema
from rules.compiler import (
    FACT_MARKER,
    CompiledRule,
    DirectiveTemplate,
    ReasonTexts,
    RuleFileError,
    Template,
    Verb,
    compile_policies,
)

__all__ = [
    "DEFAULT_POLICY_DIR",
    "Directive",
    "ReasonTexts",
    "RuleEvaluationError",
    "RuleFileError",
    "RulesEngine",
    "RulesOutcome",
]

DEFAULT_POLICY_DIR = Path(__file__).with_name("policies")
logger = logging.getLogger(__name__)

# One lock for every call into durable-rules, across all engines: its C core keeps process-wide tables and is
# not thread-safe (concurrent calls segfault or answer wrongly). It costs nothing: the C extension never
# releases the GIL anyway.
_DURABLE_LOCK = threading.Lock()
_RULESET_NUMBERS = itertools.count(1)
# Rulesets of engines no longer used, to delete under the lock (see _delete_rulesets).
_UNUSED_RULESETS: list[int] = []
# durable's assert_fact result code for "matched" (durable.engine.Ruleset._handle_result reads the same one).
_MATCHED = 0
# The one session each ruleset evaluates in; its facts are retracted after every evaluation.
_SESSION = "request"
# A matched rule as durable queues it: {"<position>:<name>":{"m":{...the fact...}}}; see ruleset_definitions.
_QUEUED_RULE = re.compile(r'\A\{\s*"(\d+):')


@dataclass(frozen=True)
class Directive:
    """What a fired rule asks of the decision."""

    kind: Verb
    rule_id: str
    reason_code: str
    action_id: str = ""  # require/exclude/suppress/boost/follow_up ("" for a follow-up of no action)
    value: str = ""  # the language, the channel, or the follow-up kind (apology_letter)
    factor: float = 1.0  # boost factor
    priority: int = 0
    otherwise: str = ""  # require: the action required instead when this one cannot be given
    channel: str = ""  # follow_up: the channel it goes out by ("" = the decision's channel)
    limit: int = -1  # limit_offers: the largest number of offers ...
    counted: str = ""  # ... less the count under this fact key (offers already made), if any


@dataclass(frozen=True)
class RulesOutcome:
    """The directives of every rule that fired, highest priority first, then in rule-file order."""

    directives: tuple[Directive, ...]
    fired: tuple[str, ...]  # rule ids that fired (expanded for_each_action rules report their base id once)


class RuleEvaluationError(RuntimeError):
    """A rule fired but its directives could not be made (e.g. a ``{field}`` the fact lacks)."""


class RulesEngine:
    """Every rule of a policy directory, compiled into one durable-rules ruleset.

    ``known_actions`` are the catalogue's action ids (directives may only name these; ``for_each_action``
    rules are repeated for each). Raises :class:`RuleFileError` for an invalid rule file. ``evaluate`` is
    thread-safe and costs one durable ``assert_fact`` whatever the number of rules.
    """

    def __init__(
        self,
        policy_dir: Path,
        known_actions: Collection[str],
        schema: FeatureSchema,
        reasons: ReasonTexts | None = None,
    ) -> None:
        policies = compile_policies(policy_dir, known_actions, schema, reasons)
        self.policies = policies
        self.version: str = policies.version
        self.rule_ids: tuple[str, ...] = tuple(dict.fromkeys(rule.rule_id for rule in policies.rules))
        self._rules = policies.rules
        # Directives without {field} templates are the same at every firing: make them once.
        self._fixed = tuple(_fixed_directives(rule) for rule in self._rules)
        # durable needs to see only what conditions read; each key is written once as JSON, ready to join.
        self._fact_keys = tuple((key, json.dumps(key, ensure_ascii=False) + ":") for key in sorted(policies.fact_keys))
        self._fact_names = tuple(key for key, _ in self._fact_keys)
        definitions = [json.dumps(d, ensure_ascii=False) for d in policies.ruleset_definitions()]
        with _DURABLE_LOCK:
            _delete_unused_rulesets()
            number = next(_RULESET_NUMBERS)
            self._rulesets = tuple(
                durable_rules_engine.create_ruleset(f"nba_{self.version}_{number}_{i}", definition)
                for i, definition in enumerate(definitions)
            )
        # A replaced engine (hot reload) gives its rulesets' memory back to durable once nothing uses them.
        weakref.finalize(self, _delete_rulesets, self._rulesets)
        self._warm_up(schema)

    def evaluate(self, fact: Mapping[str, object]) -> RulesOutcome:
        """Fire every rule whose conditions hold for ``fact``; return their directives.

        ``fact`` keys: derived feature names (``last_incident_days``), ``touchpoint``, ``ctx_<key>`` for the
        request context, ``declines_30d__<action_id>``, ``known_customer``; values are text, numbers or
        booleans. A missing key, None, NaN or an infinity is an absent field. Raises
        :class:`RuleEvaluationError` when a fired rule's directive cannot be filled in.
        """
        # The same session every time: _assert leaves it empty (see the module docstring).
        session = _SESSION
        encoded = self._encode(session, fact)
        fired: list[tuple[CompiledRule, tuple[Directive, ...]]] = []
        with _DURABLE_LOCK:
            if _UNUSED_RULESETS:
                _delete_unused_rulesets()
            for ruleset in self._rulesets:  # one for up to RULES_PER_RULESET rules (see ruleset_definitions)
                self._assert(ruleset, session, encoded, fact, fired)
        fired.sort(key=lambda item: (-item[0].priority, item[0].order))
        return RulesOutcome(
            directives=tuple(d for _, directives in fired for d in directives),
            fired=tuple(dict.fromkeys(rule.rule_id for rule, _ in fired)),
        )

    def _assert(
        self,
        ruleset: int,
        session: str,
        encoded: str,
        fact: Mapping[str, object],
        fired: list[tuple[CompiledRule, tuple[Directive, ...]]],
    ) -> None:
        # Asserting a fact (never posting an event) lets every matching rule fire, not just the first.
        # Outside the try: an assert that fails leaves nothing in the session (checked).
        try:
            code, state = durable_rules_engine.assert_fact(ruleset, encoded)
        except durable_rules_engine.error as error:
            raise RuleEvaluationError(f"durable-rules refused the request fact: {error}") from None
        read = False
        try:
            if code != _MATCHED:
                # Cannot happen while the every-request rule matches every fact (see ruleset_definitions).
                raise RuleEvaluationError(f"durable-rules answered code {code} to a fresh request fact")
            queued = durable_rules_engine.start_action_for_state(ruleset, state)
            matched = queued[1] if queued else None
            while matched:
                index = self._rule_index(matched)
                if index < len(self._rules):  # not the every-request rule
                    fired.append((self._rules[index], self._directives(index, fact)))
                matched = durable_rules_engine.complete_and_start_action(ruleset, state)
            read = True
        finally:
            # Always: the next evaluation must find the session empty. Every action is complete once all matches
            # are read, and retracting the fact leaves the session as new; otherwise (a rule's directives
            # raised, actions left queued) the whole session goes.
            if read:
                durable_rules_engine.retract_fact(ruleset, encoded)
            else:
                durable_rules_engine.delete_state(ruleset, session)

    def _rule_index(self, queued: str) -> int:
        # As durable writes it, '{"12:name":...': the position is between the quote and the first colon.
        if queued.startswith('{"'):
            position = queued[2 : queued.find(":", 2)]
            if position.isascii() and position.isdigit():
                return int(position)
        match = _QUEUED_RULE.match(queued)
        if match:
            return int(match.group(1))
        name = next(iter(json.loads(queued)))  # whatever the spacing, the first key is the rule's name
        return int(name.split(":", 1)[0])

    def _encode(self, session: str, fact: Mapping[str, object]) -> str:
        """The fact as durable's C parser reads it: one JSON object, only the keys conditions read."""
        # Fast path, orjson: text unescaped (durable does not decode \u escapes), true/false, exact integers.
        # Anything it could write in a way durable misreads (an exponent after a whole mantissa, "1e-5", for
        # tiny or huge floats; subclasses such as IntEnum) takes the exact path below instead.
        members: dict[str, object] = {FACT_MARKER: 1, "sid": session}
        get = fact.get
        for key in self._fact_names:
            value = get(key)
            if value is None:
                continue
            kind = value.__class__
            if kind is float and isinstance(value, float):
                if value - value != 0.0:  # NaN or an infinity (x - x is 0.0 for every finite float)
                    continue  # JSON has no NaN or infinity: an absent field
                if value != 0.0 and not 1e-4 <= abs(value) < 1e15:
                    return self._encode_exactly(session, fact)
            elif kind is not str and kind is not int and kind is not bool:
                return self._encode_exactly(session, fact)
            members[key] = value
        return orjson.dumps(members).decode()

    def _encode_exactly(self, session: str, fact: Mapping[str, object]) -> str:
        """The fact as JSON, value by value, written the way durable's parser reads every one of them."""
        members = [f'"{FACT_MARKER}":1', f'"sid":"{session}"']
        for key, encoded_key in self._fact_keys:
            value = fact.get(key)
            if value is not None:
                encoded = _json_value(key, value)
                if encoded is not None:
                    members.append(encoded_key + encoded)
        return "{" + ",".join(members) + "}"

    def _directives(self, index: int, fact: Mapping[str, object]) -> tuple[Directive, ...]:
        """The action of a fired rule: its directives, with {field} templates filled from the fact."""
        fixed = self._fixed[index]
        if fixed is not None:
            return fixed
        rule = self._rules[index]
        return tuple(_render(rule, template, fact) for template in rule.directives)

    def _warm_up(self, schema: FeatureSchema) -> None:
        """Evaluate one fact now, so the first real request does not meet a cold ruleset."""
        defaults = {key: value for key, value in schema.defaults().items() if value is not None}
        try:
            self.evaluate(defaults)
        except RuleEvaluationError as error:
            # Only the warm-up's made-up fact is at fault; real requests report their own.
            logger.warning("rules %s: warm-up evaluation: %s", self.version, error)


def _delete_rulesets(rulesets: tuple[int, ...]) -> None:
    """A replaced engine's finalizer: its rulesets are deleted by the next engine call that holds the lock. The
    finalizer runs wherever the garbage collector does, also in a thread inside ``with _DURABLE_LOCK`` (an
    engine in a reference cycle), where taking the lock again deadlocked (reproduced with gc.collect())."""
    _UNUSED_RULESETS.extend(rulesets)


def _delete_unused_rulesets() -> None:
    """Under _DURABLE_LOCK: give the rulesets of engines gone back to durable."""
    while _UNUSED_RULESETS:
        durable_rules_engine.delete_ruleset(_UNUSED_RULESETS.pop())


def _json_value(key: str, value: object) -> str | None:
    """One fact value as JSON durable parses correctly; None (absent) for NaN and infinities."""
    if isinstance(value, str):
        # ensure_ascii=False, as durable.engine does: its parser does not decode \u escapes, so "中文" sent
        # as "\u4e2d\u6587" would never equal a rule's "中文" (tested).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)  # not str(): an IntEnum would print its name
    if isinstance(value, float):
        if not math.isfinite(value):
            return None  # JSON has no NaN or infinity
        text = float.__repr__(value)
        # durable's parser rejects an exponent after a whole mantissa ("1e-05", "1e+16": error 204) and reads
        # "1.0e-05" fine; Python writes the former for 0.00001 and for 1e16.
        if "e" in text and "." not in text:
            text = text.replace("e", ".0e")
        return text
    raise TypeError(f"fact {key!r}: {type(value).__name__} is not a rule value (text, number or true/false)")


def _fixed_directives(rule: CompiledRule) -> tuple[Directive, ...] | None:
    for template in rule.directives:
        for text in (template.value, template.channel):
            if text is not None and not text.is_literal:
                return None
    return tuple(_render(rule, template, {}) for template in rule.directives)


def _render(rule: CompiledRule, template: DirectiveTemplate, fact: Mapping[str, object]) -> Directive:
    value = _fill(rule, template, template.value, fact)
    channel = _fill(rule, template, template.channel, fact)
    return Directive(
        kind=template.kind,
        rule_id=rule.rule_id,
        reason_code=template.reason_code,
        action_id=template.action_id,
        value=value,
        factor=template.factor,
        priority=rule.priority,
        otherwise=template.otherwise,
        channel=channel,
        limit=template.limit,
        counted=template.counted.key if template.counted is not None else "",
    )


def _fill(rule: CompiledRule, template: DirectiveTemplate, text: Template | None, fact: Mapping[str, object]) -> str:
    if text is None:
        return ""
    try:
        return text.fill(fact)
    except KeyError as missing:
        raise RuleEvaluationError(
            f"{rule.file}: rule {rule.rule_id!r}: {template.kind} {text.text!r}: the fact has no {missing.args[0]!r}"
        ) from None
