"""Explanations: the greeting, the text for the touchpoint and the follow-up letters, in the customer's language.

Everything is rendered from the decision trace (which rule, which incident, which action, which features) and
the templates in ``rules/messages.yaml`` and ``rules/actions.yaml``. Sensitive features are never named on
customer-facing touchpoints (kiosk, IVR, web, app); open problems are shown to agents and tellers only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from decision.arbitration import Ranked
from decision.domain import FeatureContribution, FollowUp, Touchpoint
from features.schema import FeatureSchema


class _Blank(dict[str, str]):
    """Template values where a missing placeholder renders as nothing rather than failing the decision."""

    def __missing__(self, key: str) -> str:
        return ""


class Narrator:
    """Renders every text of a decision from templates."""

    def __init__(self, messages_path: Path, schema: FeatureSchema) -> None:
        self.texts: dict[str, Any] = yaml.safe_load(messages_path.read_text(encoding="utf-8"))
        self.languages: list[str] = list(self.texts["languages"])
        self.schema = schema

    def _text(self, section: str, language: str, *path: str) -> str:
        node = self.texts[section]
        for key in path:
            node = node[key]
        return str(node.get(language) or node["en"])

    def template_values(self, values: Mapping[str, Any], context: Mapping[str, str], language: str) -> _Blank:
        """Placeholders every template may use."""
        fields = _Blank()
        for key in ("title", "first_name", "last_name"):
            fields[key] = str(values.get(key) or "")
        if fields["last_name"]:
            fields["greeting_name"] = self._text("greeting_name", language).format_map(fields).strip()
        else:
            fields["greeting_name"] = fields["first_name"] or self._text("anonymous_name", language)
        fields["incident_flight"] = str(values.get("last_incident_flight") or "")
        fields["problem"] = str(values.get("open_problem") or "")
        fields["application"] = str(values.get("pending_application") or "")
        for key, value in context.items():
            fields.setdefault(key, value)
        return fields

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
        self, wanted: Sequence[tuple[str, str]], decided: set[str], fields: _Blank, language: str
    ) -> list[FollowUp]:
        """Follow-ups whose action was decided, rendered (e.g. the apology letter confirming the upgrade)."""
        rendered = []
        for kind, action_id in wanted:
            if action_id in decided and kind in self.texts["follow_ups"]:
                text = self._text("follow_ups", language, kind).format_map(fields)
                rendered.append(FollowUp(kind, action_id, language, text))
        return rendered
