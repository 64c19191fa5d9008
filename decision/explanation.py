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

_SECTIONS = (
    "greeting",
    "reasons",
    "continuity",
    "continuity_customer",
    "incidents",
    "channels",
    "follow_ups",
    "features",
)


# The fields set one after another when a decision's template values are made, each stage seeing those before
# it (a later one replaces an earlier one of the same name; the request context fills only names still free).
_FEATURES, _DERIVED, _CONTEXT, _INCIDENT, _COMPLAINT, _ALL = range(6)


@dataclass(frozen=True)
class NarratedFeatures:
    """The customer features the narrator's own placeholders and sections are worked out from, by their names as
    rules read them: the ``features`` section of the messages file, so a deployment with other features names its
    own there and changes no code."""

    incident_type: str  # its value picks the ``incidents`` text shown as {incident}
    family_name: str  # on file: the greeting is ``greeting.known`` and {greeting_name} is ``greeting_name``
    given_name: str  # else {greeting_name} is this feature, or ``anonymous_name``
    placeholders: Mapping[str, str]  # {placeholder}: the feature shown

    @classmethod
    def parse(cls, raw: Any, file: str) -> NarratedFeatures:
        """The ``features`` section; NarratorError names what is missing. A feature the schema does not have (a
        smaller deployment) shows as nothing, as any placeholder that is not a field does."""
        roles = ("incident_type", "family_name", "given_name")
        section: dict[str, Any] = raw if isinstance(raw, dict) else {}
        placeholders = section.get("placeholders", {})
        wrong = [role for role in roles if not isinstance(section.get(role), str)]
        if not isinstance(placeholders, dict) or not all(isinstance(name, str) for name in placeholders.values()):
            wrong.append("placeholders")
            placeholders = {}
        if wrong:
            raise NarratorError(
                f"{file}: features: needs a feature name for each of {', '.join(roles)} and a 'placeholders' mapping "
                f"of placeholder to feature name; missing or not a name: {', '.join(wrong)}"
            )
        return cls(
            incident_type=section["incident_type"],
            family_name=section["family_name"],
            given_name=section["given_name"],
            placeholders={str(key): value for key, value in placeholders.items()},
        )


class TemplateFields(dict[str, str]):
    """A decision's template values, each worked out the first time a template reads it; a placeholder that is
    not a field renders as nothing rather than failing the decision.

    What a field holds, in order, each later stage replacing an earlier one's field of the same name: the
    features by name, shown in the language (not the sensitive ones where the customer reads the text);
    ``greeting_name`` and the placeholders the messages file's ``features`` section names (``incident_flight``,
    ``problem``, ``application``); the request context's declared keys with valid values (see
    Narrator.template_values), for names not taken yet; ``incident``, ``complaint``; ``channel``. The greeting
    name and the incident and complaint texts are rendered from the fields of the stages before theirs.
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

    def feature(self, name: str) -> str:
        """The feature ``name`` as a text shows it; empty when it is not shown here (sensitive where the customer
        reads the text) or not a feature."""
        return self._feature(name) or ""

    def _feature(self, key: str) -> str | None:
        shown = self._shown.get(key)
        if shown is None:
            feature = self._features.get(key)
            if feature is None:
                return None
            shown = self._shown[key] = self._narrator.shown(feature, self._values, self._language)
        return shown

    def _resolve(self, key: str, stage: int) -> str | None:
        """The field ``key`` as it stood after ``stage``; None when it was not set."""
        narrator, language, named = self._narrator, self._language, self._narrator.features
        if stage >= _ALL and key == "channel":
            return narrator.channel_name(self._channel, language)
        if stage >= _COMPLAINT and key == "complaint" and self._has_complaint:
            return narrator.text("incidents", language, "complaint").format_map(_Stage(self, _INCIDENT))
        if stage >= _INCIDENT and key == "incident" and self._has_incident:
            incident_type = str(self._values.get(named.incident_type) or "")
            return narrator.text("incidents", language, incident_type).format_map(_Stage(self, _CONTEXT))
        if stage >= _DERIVED:
            if key == "greeting_name":
                if self._feature(named.family_name):
                    return narrator.text("greeting_name", language).format_map(_Stage(self, _FEATURES)).strip()
                return self._feature(named.given_name) or narrator.text("anonymous_name", language)
            source = named.placeholders.get(key)
            if source is not None:
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
        self.features = NarratedFeatures.parse(texts["features"], Path(messages_path).name)
        # continuity's kinds are features (shown while the customer has one), each with a customer-facing text
        untold = [str(kind) for kind in texts["continuity"] if kind not in texts["continuity_customer"]]
        if untold:
            raise NarratorError(f"{Path(messages_path).name}: continuity_customer has no text for {', '.join(untold)}")
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

    def text(self, section: str, language: str, *path: str) -> str:
        """The text at ``path`` in ``section`` of the messages file, in ``language`` or else in English."""
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
        incident_type = str(values.get(self.features.incident_type) or "")
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

    def shown(self, feature: Feature, values: Mapping[str, Any], language: str) -> str:
        """The feature's value among ``values`` as a text shows it in ``language``."""
        value = values.get(feature.derived_name)
        shown = self._value_names.get(feature.name, {}).get(value) if isinstance(value, str) else None
        # a category shows as its name in the language ("Gold"), anything else as written
        return (shown.get(language) or shown.get("en", "")) if shown else _shown(value)

    def channel_name(self, channel: str, language: str) -> str:
        """The channel's name in ``language`` (``channels``), or the channel as written when it has none."""
        if channel and channel in self.texts.get("channels", {}):
            return self.text("channels", language, channel)
        return channel

    def _reason_text(self, code: str, fields: TemplateFields, language: str) -> str:
        """The human-readable reason for a reason code; empty when the messages have none."""
        if code in self.texts["reasons"]:
            return self.text("reasons", language, code).format_map(fields)
        return ""

    def _open_items(
        self, values: Mapping[str, Any], fields: Mapping[str, str], language: str, touchpoint: Touchpoint
    ) -> list[OpenItem]:
        """Open problems and pending applications (each ``continuity`` kind the customer's feature of that name
        holds), at every touchpoint: the details only where an agent reads."""
        detailed = not touchpoint.customer_facing
        section = "continuity" if detailed else "continuity_customer"
        return [
            OpenItem(kind, self.text(section, language, kind).format_map(fields), detailed)
            for kind in self.texts["continuity"]
            if values.get(kind)
        ]

    def _greeting(self, fields: Mapping[str, str], language: str, known: bool) -> str:
        kind = "known" if known and fields.get(self.features.family_name) else "anonymous"
        return self.text("greeting", language, kind).format_map(fields)

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
            lead = self.text("reasons", language, "no_action")
            return (lead if delivery == "agent" else greeting), messages
        parts = [] if delivery == "agent" else [greeting]
        parts.append(messages[0])
        if delivery == "agent":
            parts.append(
                self.text("why", language).format(reason=self._reason(ranked[0], reasons, features, fields, language))
            )
            for kind in self.texts["continuity"]:
                if fields.feature(kind):
                    parts.append(self.text("continuity", language, kind).format_map(fields))
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
                return self.text("reasons", language, code).format_map(fields)
        labels = (
            "、".join(f.label for f in features) if language.startswith("zh") else ", ".join(f.label for f in features)
        )
        filled = fields.extended({"features": labels or top.action.title(language)})
        return self.text("reasons", language, "model_ranked").format_map(filled)

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
            text = self.text("follow_ups", language, want.kind).format_map(filled)
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
