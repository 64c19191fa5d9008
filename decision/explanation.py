"""Explanations: the greeting, the text for the touchpoint and the follow-up letters, in the customer's language.

Everything is rendered from the decision trace (which rule, which incident, which action, which features) and
the templates in ``rules/messages.yaml`` and ``rules/actions.yaml``. Sensitive features are never named on
customer-facing touchpoints (kiosk, IVR, web, app); open problems are shown to agents and tellers only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from decision.arbitration import Ranked
from decision.catalogue import Action
from decision.domain import ChannelAdvice, FeatureContribution, FollowUp, OpenItem, Touchpoint
from decision.eligibility import Eligible, WantedFollowUp
from features.schema import Feature, FeatureSchema

_SECTIONS = ("greeting", "reasons", "continuity", "continuity_customer", "incidents", "channels", "follow_ups")


# The fields set one after another when a decision's template values are made, each stage seeing those before
# it (a later one replaces an earlier one of the same name; the request context fills only names still free).
_FEATURES, _DERIVED, _CONTEXT, _INCIDENT, _COMPLAINT, _ALL = range(6)
_DERIVED_FIELDS = frozenset(("greeting_name", "incident_flight", "problem", "application"))


class TemplateFields(dict[str, str]):
    """A decision's template values, each worked out the first time a template reads it; a placeholder that is
    not a field renders as nothing rather than failing the decision.

    What a field holds, in order, each later stage replacing an earlier one's field of the same name: the
    features by name, shown in the language (not the sensitive ones where the customer reads the text);
    ``greeting_name``, ``incident_flight``, ``problem``, ``application``; the request context's declared keys
    with valid values (see Narrator.template_values), for names not taken yet; ``incident``, ``complaint``;
    ``channel``. The greeting name and the incident and complaint texts are rendered from the fields of the
    stages before theirs.
    """

    def __init__(
        self,
        narrator: Narrator,
        values: Mapping[str, Any],
        context: Mapping[str, str],
        language: str,
        features: Mapping[str, Feature],
        channel: str,
        has_incident: bool,
        has_complaint: bool,
    ) -> None:
        super().__init__()
        self._narrator = narrator
        self._values = values
        self._context = context
        self._language = language
        self._features = features
        self._channel = channel
        self._has_incident = has_incident
        self._has_complaint = has_complaint
        self._shown: dict[str, str] = {}

    def __missing__(self, key: str) -> str:
        value = self._resolve(key, _ALL)
        if value is None:
            return ""
        self[key] = value
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key in self:
            return dict.__getitem__(self, key)
        value = self._resolve(key, _ALL)
        if value is None:
            return default
        self[key] = value
        return value

    def extended(self, extra: Mapping[str, str]) -> TemplateFields:
        """These fields with ``extra`` on top (an action's title in a letter, the features named in a reason)."""
        copy = TemplateFields(
            self._narrator,
            self._values,
            self._context,
            self._language,
            self._features,
            self._channel,
            self._has_incident,
            self._has_complaint,
        )
        copy._shown = self._shown
        copy.update(self)
        copy.update(extra)
        return copy

    def _feature(self, key: str) -> str | None:
        shown = self._shown.get(key)
        if shown is None:
            feature = self._features.get(key)
            if feature is None:
                return None
            shown = self._shown[key] = self._narrator._feature_shown(feature, self._values, self._language)
        return shown

    def _resolve(self, key: str, stage: int) -> str | None:
        """The field ``key`` as it stood after ``stage``; None when it was not set."""
        narrator, language = self._narrator, self._language
        if stage >= _ALL and key == "channel":
            return narrator.channel_name(self._channel, language)
        if stage >= _COMPLAINT and key == "complaint" and self._has_complaint:
            return narrator._text("incidents", language, "complaint").format_map(_Stage(self, _INCIDENT))
        if stage >= _INCIDENT and key == "incident" and self._has_incident:
            incident_type = str(self._values.get("last_incident_type") or "")
            return narrator._text("incidents", language, incident_type).format_map(_Stage(self, _CONTEXT))
        if stage >= _DERIVED and key in _DERIVED_FIELDS:
            if key == "greeting_name":
                if self._feature("last_name"):
                    return narrator._text("greeting_name", language).format_map(_Stage(self, _FEATURES)).strip()
                return self._feature("first_name") or narrator._text("anonymous_name", language)
            source = {"incident_flight": "last_incident_flight", "problem": "open_problem"}.get(
                key, "pending_application"
            )
            return self._feature(source) or ""
        shown = self._feature(key)
        if shown is not None:
            return shown
        if stage >= _CONTEXT:
            return self._context.get(key)
        return None


class _Stage(Mapping[str, str]):
    """The fields as they stood after one stage, for rendering the templates of the stage after it."""

    def __init__(self, fields: TemplateFields, stage: int) -> None:
        self._fields = fields
        self._stage = stage

    def __getitem__(self, key: str) -> str:
        value = self._fields._resolve(key, self._stage)
        return "" if value is None else value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@dataclass(frozen=True)
class Narration:
    """Every text of one decision, in the customer's language: what the touchpoint shows, says or reads out."""

    language: str
    greeting: str
    text: str
    messages: tuple[str, ...]  # each ranked action's own, in rank order
    top_features: tuple[FeatureContribution, ...]
    channel: ChannelAdvice
    follow_ups: tuple[FollowUp, ...]
    open_items: tuple[OpenItem, ...]


class NarratorError(ValueError):
    """The messages file is invalid; the message names the file and the section."""


class Narrator:
    """Renders every text of a decision from templates."""

    def __init__(self, messages_path: Path, schema: FeatureSchema) -> None:
        data = Path(messages_path).read_bytes()
        self.version = hashlib.sha256(data).hexdigest()[:12]
        try:
            texts = yaml.safe_load(data)
        except yaml.YAMLError as error:
            raise NarratorError(f"{Path(messages_path).name}: not valid YAML: {error}") from None
        missing = [key for key in _SECTIONS if not isinstance(texts, dict) or not isinstance(texts.get(key), dict)]
        if missing or not isinstance(texts.get("languages"), list):
            raise NarratorError(
                f"{Path(messages_path).name}: needs a 'languages' list and the sections {', '.join(_SECTIONS)}; "
                f"missing or not a mapping: {', '.join(missing) or 'languages'}"
            )
        self.texts: dict[str, Any] = texts
        self.languages: list[str] = [str(language) for language in texts["languages"]]
        self.schema = schema
        self._value_names: Mapping[str, Any] = texts.get("values") or {}
        # The features a template may name, by derived name: all of them where an agent reads the text, none
        # of the sensitive ones where the customer does (keyed by Touchpoint.customer_facing).
        self._shown_features: dict[bool, dict[str, Feature]] = {
            facing: {f.derived_name: f for f in schema.features if not (f.sensitive and facing)}
            for facing in (False, True)
        }

    def reason_languages(self) -> dict[str, frozenset[str]]:
        """Each reason code with the languages its text is written in: the rules compiler checks them."""
        return {
            str(code): frozenset(str(language) for language, text in texts.items() if text)
            for code, texts in self.texts["reasons"].items()
            if isinstance(texts, dict)
        }

    def _text(self, section: str, language: str, *path: str) -> str:
        node = self.texts[section]
        for key in path:
            node = node[key]
        return str(node.get(language) or node["en"])

    def narrate(
        self,
        *,
        values: Mapping[str, Any],
        context: Mapping[str, str],
        touchpoint: Touchpoint,
        known: bool,
        eligible: Eligible,
        ranked: Sequence[Ranked],
        top_features: Sequence[tuple[str, float]],
    ) -> Narration:
        """Every text of a decision, the one entry point the decision flow calls: the greeting, the explanation
        and each ranked action's message, the model's reasons (``top_features``: name and contribution, best
        first), the channel advice, the follow-up letters and the open items, in the language the rules chose."""
        language = eligible.language
        fields = self.template_values(values, context, language, touchpoint, eligible.channel)
        greeting = self._greeting(fields, language, known)
        features = self._contributions(top_features, values, language, touchpoint)
        text, messages = self._explanation(ranked, eligible.reasons, features, fields, language, touchpoint, greeting)
        channel = ChannelAdvice()
        if eligible.channel:
            reason = self._reason_text(eligible.channel_reason, fields, language)
            channel = ChannelAdvice(eligible.channel, eligible.channel_reason, reason)
        decided = {r.action.action_id: r.action for r in ranked}
        return Narration(
            language=language,
            greeting=greeting,
            text=text,
            messages=tuple(messages),
            top_features=tuple(features),
            channel=channel,
            follow_ups=tuple(self._follow_ups(eligible.follow_ups, decided, fields, language, eligible.channel)),
            open_items=tuple(self._open_items(values, fields, language, touchpoint)),
        )

    def template_values(
        self,
        values: Mapping[str, Any],
        context: Mapping[str, str],
        language: str,
        touchpoint: Touchpoint,
        channel: str = "",
    ) -> TemplateFields:
        """Placeholders every template may use: features by name (sensitive ones blank where the customer reads
        the text), the request context, the greeting name, the incident and complaint, the channel's name.

        Of the request context only the keys the schema declares, with valid values (normalised: " az9 " shows
        as "AZ9"), are shown: caller text that is not one ("AZ9. Your refund: http://...") or a key the schema
        does not know renders as nothing, whatever path the request came by.
        Each is worked out when a template first reads it: a decision's texts read a handful of ~40 fields."""
        incidents = self.texts.get("incidents", {})
        incident_type = str(values.get("last_incident_type") or "")
        declared = self.schema.context
        shown = {
            key: normalised
            for key, raw in context.items()
            if (spec := declared.get(key)) is not None and (normalised := spec.normalised(raw)) is not None
        }
        return TemplateFields(
            self,
            values,
            shown,
            language,
            self._shown_features[touchpoint.customer_facing],
            channel,
            incident_type in incidents,
            "complaint" in incidents,
        )

    def _feature_shown(self, feature: Feature, values: Mapping[str, Any], language: str) -> str:
        value = values.get(feature.derived_name)
        shown = self._value_names.get(feature.name, {}).get(value) if isinstance(value, str) else None
        # a category shows as its name in the language ("Gold"), anything else as written
        return (shown.get(language) or shown.get("en", "")) if shown else _shown(value)

    def channel_name(self, channel: str, language: str) -> str:
        if channel and channel in self.texts.get("channels", {}):
            return self._text("channels", language, channel)
        return channel

    def _reason_text(self, code: str, fields: TemplateFields, language: str) -> str:
        """The human-readable reason for a reason code; empty when the messages have none."""
        if code in self.texts["reasons"]:
            return self._text("reasons", language, code).format_map(fields)
        return ""

    def _open_items(
        self, values: Mapping[str, Any], fields: Mapping[str, str], language: str, touchpoint: Touchpoint
    ) -> list[OpenItem]:
        """Open problems and pending applications, at every touchpoint: the details only where an agent reads."""
        detailed = not touchpoint.customer_facing
        section = "continuity" if detailed else "continuity_customer"
        return [
            OpenItem(kind, self._text(section, language, kind).format_map(fields), detailed)
            for kind in ("open_problem", "pending_application")
            if values.get(kind)
        ]

    def _greeting(self, fields: Mapping[str, str], language: str, known: bool) -> str:
        kind = "known" if known and fields.get("last_name") else "anonymous"
        return self._text("greeting", language, kind).format_map(fields)

    def _contributions(
        self,
        top: Sequence[tuple[str, float]],
        values: Mapping[str, Any],
        language: str,
        touchpoint: Touchpoint,
    ) -> list[FeatureContribution]:
        """Human-labelled contributions; sensitive features are left out where the customer reads the text."""
        result = []
        for name, contribution in top:
            feature = self.schema.feature_for(name)
            if feature is None or (feature.sensitive and touchpoint.customer_facing):
                continue
            value = values.get(name)
            shown = "" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))
            result.append(FeatureContribution(name, feature.label(language), contribution, shown))
        return result

    def _explanation(
        self,
        ranked: Sequence[Ranked],
        reasons: Mapping[str, Sequence[str]],
        features: Sequence[FeatureContribution],
        fields: TemplateFields,
        language: str,
        touchpoint: Touchpoint,
        greeting: str,
    ) -> tuple[str, list[str]]:
        """The explanation text for the touchpoint, and each ranked action's own message."""
        delivery = touchpoint.delivery
        messages = [r.action.message(language, delivery).format_map(fields) for r in ranked]
        if not ranked:
            lead = self._text("reasons", language, "no_action")
            return (lead if delivery == "agent" else greeting), messages
        parts = [] if delivery == "agent" else [greeting]
        parts.append(messages[0])
        if delivery == "agent":
            parts.append(
                self._text("why", language).format(reason=self._reason(ranked[0], reasons, features, fields, language))
            )
            for key, section in (("problem", "open_problem"), ("application", "pending_application")):
                if fields.get(key):
                    parts.append(self._text("continuity", language, section).format_map(fields))
        return " ".join(p for p in parts if p), messages

    def _reason(
        self,
        top: Ranked,
        reasons: Mapping[str, Sequence[str]],
        features: Sequence[FeatureContribution],
        fields: TemplateFields,
        language: str,
    ) -> str:
        for code in reasons.get(top.action.action_id, ()):
            if code in self.texts["reasons"]:
                return self._text("reasons", language, code).format_map(fields)
        labels = (
            "、".join(f.label for f in features) if language.startswith("zh") else ", ".join(f.label for f in features)
        )
        filled = fields.extended({"features": labels or top.action.title(language)})
        return self._text("reasons", language, "model_ranked").format_map(filled)

    def _follow_ups(
        self,
        wanted: Sequence[WantedFollowUp],
        decided: Mapping[str, Action],
        fields: TemplateFields,
        language: str,
        channel: str,
    ) -> list[FollowUp]:
        """The follow-ups to send, rendered: one per kind, for the first of its actions that was decided (the
        letter confirms the upgrade, or the points given instead), or unconditionally when tied to no action."""
        rendered: dict[str, FollowUp] = {}
        for want in wanted:
            if want.kind in rendered or want.kind not in self.texts["follow_ups"]:
                continue
            filled = fields
            if want.action_id:
                action = decided.get(want.action_id)
                if action is None:
                    continue
                filled = fields.extended(
                    {
                        "action_title": action.title(language),
                        "action_confirmation": action.confirmation(language).format_map(fields),
                    }
                )
            text = self._text("follow_ups", language, want.kind).format_map(filled)
            rendered[want.kind] = FollowUp(want.kind, want.action_id, language, text, want.channel or channel)
        return list(rendered.values())


def _shown(value: Any) -> str:
    """A feature value as a text shows it: whole numbers without decimals, others to one decimal."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.1f}"
    return str(value)
