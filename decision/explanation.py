"""Explanations: the greeting, the text for the touchpoint and the follow-up letters, in the customer's language.

Everything is rendered from the decision trace (which rule, which incident, which action, which features) and
the templates in ``rules/messages.yaml`` and ``rules/actions.yaml``. Sensitive features are never named on
customer-facing touchpoints (kiosk, IVR, web, app); open problems are shown to agents and tellers only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from decision.arbitration import Ranked
from decision.catalogue import Action
from decision.domain import FeatureContribution, FollowUp, OpenItem, Touchpoint
from decision.eligibility import WantedFollowUp
from features.schema import FeatureSchema

_SECTIONS = ("greeting", "reasons", "continuity", "continuity_customer", "incidents", "channels", "follow_ups")


class _Blank(dict[str, str]):
    """Template values where a missing placeholder renders as nothing rather than failing the decision."""

    def __missing__(self, key: str) -> str:
        return ""


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

    def template_values(
        self,
        values: Mapping[str, Any],
        context: Mapping[str, str],
        language: str,
        touchpoint: Touchpoint,
        channel: str = "",
    ) -> _Blank:
        """Placeholders every template may use: features by name (sensitive ones blank where the customer reads
        the text), the request context, the greeting name, the incident and complaint, the channel's name."""
        fields = _Blank()
        names = self.texts.get("values") or {}
        for feature in self.schema.features:
            if feature.sensitive and touchpoint.customer_facing:
                continue
            value = values.get(feature.derived_name)
            shown = names.get(feature.name, {}).get(value) if isinstance(value, str) else None
            # a category shows as its name in the language ("Gold"), anything else as written
            fields[feature.derived_name] = (shown.get(language) or shown.get("en", "")) if shown else _shown(value)
        if fields["last_name"]:
            fields["greeting_name"] = self._text("greeting_name", language).format_map(fields).strip()
        else:
            fields["greeting_name"] = fields["first_name"] or self._text("anonymous_name", language)
        fields["incident_flight"] = fields["last_incident_flight"]
        fields["problem"] = fields["open_problem"]
        fields["application"] = fields["pending_application"]
        for key, value in context.items():
            fields.setdefault(key, value)
        incidents = self.texts.get("incidents", {})
        incident_type = str(values.get("last_incident_type") or "")
        if incident_type in incidents:
            fields["incident"] = self._text("incidents", language, incident_type).format_map(fields)
        if "complaint" in incidents:
            fields["complaint"] = self._text("incidents", language, "complaint").format_map(fields)
        fields["channel"] = self.channel_name(channel, language)
        return fields

    def channel_name(self, channel: str, language: str) -> str:
        if channel and channel in self.texts.get("channels", {}):
            return self._text("channels", language, channel)
        return channel

    def reason(self, code: str, fields: _Blank, language: str) -> str:
        """The human-readable reason for a reason code; empty when the messages have none."""
        if code in self.texts["reasons"]:
            return self._text("reasons", language, code).format_map(fields)
        return ""

    def open_items(
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

    def greeting(self, fields: Mapping[str, str], language: str, known: bool) -> str:
        kind = "known" if known and fields.get("last_name") else "anonymous"
        return self._text("greeting", language, kind).format_map(fields)

    def contributions(
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

    def text(
        self,
        ranked: Sequence[Ranked],
        reasons: Mapping[str, Sequence[str]],
        features: Sequence[FeatureContribution],
        fields: _Blank,
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
        fields: _Blank,
        language: str,
    ) -> str:
        for code in reasons.get(top.action.action_id, ()):
            if code in self.texts["reasons"]:
                return self._text("reasons", language, code).format_map(fields)
        labels = (
            "、".join(f.label for f in features) if language.startswith("zh") else ", ".join(f.label for f in features)
        )
        filled = _Blank(fields)
        filled["features"] = labels or top.action.title(language)
        return self._text("reasons", language, "model_ranked").format_map(filled)

    def follow_ups(
        self,
        wanted: Sequence[WantedFollowUp],
        decided: Mapping[str, Action],
        fields: _Blank,
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
                filled = _Blank(fields)
                filled["action_title"] = action.title(language)
                filled["action_confirmation"] = action.confirmation(language).format_map(fields)
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
