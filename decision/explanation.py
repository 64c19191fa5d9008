"""Explanations: the greeting, the text for the touchpoint and the follow-up letters, in the customer's language.

Everything is rendered from the decision trace (which rule, which incident, which action, which features) and
the templates in ``rules/messages.yaml`` and ``rules/actions.yaml``. Sensitive features are never named on
customer-facing touchpoints (kiosk, IVR, web, app); open problems are shown to agents and tellers only.

A template is filled in by :func:`render`: a variant ``[A|B]`` is its first alternative whose fields all have a
value (so a missing field never shows as a blank), and a field that starts a sentence starts it with a capital.
Texts an agent reads are about the customer ({customer}, "their seat"), texts the customer reads speak to them
({greeting_name}, "your seat"): :meth:`TemplateFields.about_customer` gives the fields for the former.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
    "incidents_agent",
    "channels",
    "follow_ups",
    "features",
    "customer_name",
    "follow_up_channel",
    "explained_by",
)
# The sections whose texts are templates (``values``, ``channels`` and ``anonymous_name`` are shown as written).
_TEMPLATE_SECTIONS = (
    "greeting",
    "greeting_name",
    "customer_name",
    "why",
    "incidents",
    "incidents_agent",
    "reasons",
    "continuity",
    "continuity_customer",
    "follow_ups",
)
_CUSTOMER_FORMS = ("customer", "to_customer")
_VARIANT = re.compile(r"\[([^\[\]]*)\]")
_FORMATTER = string.Formatter()


def placeholders(template: str) -> list[str]:
    """The fields a template (or one alternative of a variant) names, in order; ValueError for a stray brace."""
    return [name for _, name, _, _ in _FORMATTER.parse(template) if name is not None]


def render(template: str, fields: Mapping[str, str]) -> str:
    """``template`` filled in from ``fields`` (a field without a value is empty).

    Each variant ``[A|B|...]`` becomes its first alternative whose fields all have a value, or nothing when none
    has ("Add a checked bag[ to {flight}] for 30 euros" without a flight: "Add a checked bag for 30 euros"). A
    field at the start of a sentence starts it with a capital letter ("{customer} may like ...": "The customer
    may like ..."), whatever the value's case.
    """
    if "[" in template:
        template = _VARIANT.sub(lambda group: _first_filled(group[1].split("|"), fields), template)
    parts: list[str] = []
    for literal, name, spec, _ in _FORMATTER.parse(template):
        parts.append(literal)
        if name is None:
            continue
        value = format(fields[name], spec) if spec else fields[name]
        if value and _starts_sentence(parts):
            value = value[0].upper() + value[1:]
        parts.append(value)
    return "".join(parts)


def _first_filled(alternatives: list[str], fields: Mapping[str, str]) -> str:
    for alternative in alternatives:
        if all(fields[name] for name in placeholders(alternative)):
            return alternative
    return ""


def _starts_sentence(before: list[str]) -> bool:
    """Whether what is written so far leaves the next word at the start of a sentence."""
    text = "".join(before)
    stripped = text.rstrip()
    return not stripped or (stripped[-1] in ".!?" and stripped != text)


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
    title: str  # as the language writes it (``values``), picks the form of {customer} (``customer_name``)
    placeholders: Mapping[str, str]  # {placeholder}: the feature shown

    @classmethod
    def parse(cls, raw: Any, file: str) -> NarratedFeatures:
        """The ``features`` section; NarratorError names what is missing. A feature the schema does not have (a
        smaller deployment) shows as nothing, as any placeholder that is not a field does."""
        roles = ("incident_type", "family_name", "given_name", "title")
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
            title=section["title"],
            placeholders={str(key): value for key, value in placeholders.items()},
        )


class TemplateFields(dict[str, str]):
    """A decision's template values, each worked out the first time a template reads it; a placeholder that is
    not a field renders as nothing rather than failing the decision.

    What a field holds, in order, each later stage replacing an earlier one's field of the same name: the
    features by name, shown in the language (not the sensitive ones where the customer reads the text);
    ``greeting_name``, ``customer``, ``to_customer`` and the placeholders the messages file's ``features`` section
    names (``incident_flight``, ``problem``, ``application``); the request context's declared keys with valid
    values (see Narrator.template_values), for names not taken yet; ``incident``, ``complaint``; ``channel``. The
    names and the incident and complaint texts are rendered from the fields of the stages before theirs; the
    incident and complaint told to the customer, or about them (``about_customer``).
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
        about: bool = False,
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
        self._about = about
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
        copy = self._copy(self._about)
        copy.update(self)
        copy.update(extra)
        return copy

    def about_customer(self) -> TemplateFields:
        """The fields of a text an agent reads: {incident} and {complaint} told about the customer."""
        return self if self._about else self._copy(about=True)

    def _copy(self, about: bool) -> TemplateFields:
        copy = TemplateFields(
            self._narrator,
            self._values,
            self._context,
            self._language,
            self._features,
            self._channel,
            self._has_incident,
            self._has_complaint,
            about,
        )
        copy._shown = self._shown
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
        incidents = "incidents_agent" if self._about else "incidents"
        if stage >= _ALL and key == "channel":
            return narrator.channel_name(self._channel, language)
        if stage >= _COMPLAINT and key == "complaint" and self._has_complaint:
            return render(narrator.text(incidents, language, "complaint"), _Stage(self, _INCIDENT))
        if stage >= _INCIDENT and key == "incident" and self._has_incident:
            incident_type = str(self._values.get(named.incident_type) or "")
            return render(narrator.text(incidents, language, incident_type), _Stage(self, _CONTEXT))
        if stage >= _DERIVED:
            if key == "greeting_name":
                if self._feature(named.family_name):
                    return render(narrator.text("greeting_name", language), _Stage(self, _FEATURES)).strip()
                return self._feature(named.given_name) or narrator.text("anonymous_name", language)
            if key in _CUSTOMER_FORMS:
                return self._customer(key)
            source = named.placeholders.get(key)
            if source is not None:
                return self._feature(source) or ""
        shown = self._feature(key)
        if shown is not None:
            return shown
        if stage >= _CONTEXT:
            return self._context.get(key)
        return None

    def _customer(self, form: str) -> str:
        """{customer} or {to_customer}: the form ``customer_name`` gives for the customer's title in the language
        when the family name is on file, else its ``named`` form (a given name) or ``anonymous`` one."""
        named = self._narrator.features
        forms = self._narrator.texts["customer_name"][form]
        by_title: Mapping[str, str] = forms.get(self._language) or forms["en"]
        if self._feature(named.family_name):
            template = by_title.get(self._feature(named.title) or "", by_title["named"])
        elif self._feature(named.given_name):
            template = by_title["named"]
        else:
            template = by_title["anonymous"]
        return render(str(template), _Stage(self, _DERIVED, exclude=_CUSTOMER_FORMS))


class _Stage(Mapping[str, str]):
    """The fields as they stood after one stage, for rendering the templates of the stage after it."""

    def __init__(self, fields: TemplateFields, stage: int, exclude: Sequence[str] = ()) -> None:
        self._fields = fields
        self._stage = stage
        self._exclude = exclude  # the field being worked out itself: a template naming it shows nothing

    def __getitem__(self, key: str) -> str:
        if key in self._exclude:
            return ""
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


class TemplateError(NarratorError):
    """Templates that cannot be rendered as written (``Narrator.template_problems``), every one named."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


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
        self.file = Path(messages_path).name
        self.texts: dict[str, Any] = texts
        self.languages: list[str] = [str(language) for language in texts["languages"]]
        self.schema = schema
        self._value_names: Mapping[str, Any] = texts.get("values") or {}
        self.features = NarratedFeatures.parse(texts["features"], self.file)
        # continuity's kinds are features (shown while the customer has one), each with a customer-facing text
        untold = [str(kind) for kind in texts["continuity"] if kind not in texts["continuity_customer"]]
        if untold:
            raise NarratorError(f"{self.file}: continuity_customer has no text for {', '.join(untold)}")
        untold = [str(kind) for kind in texts["incidents"] if kind not in texts["incidents_agent"]]
        if untold:
            raise NarratorError(f"{self.file}: incidents_agent has no text for {', '.join(untold)}")
        _check_customer_name(texts["customer_name"], self.file)
        self.explained_by = _explained_by(texts["explained_by"], self.file)
        self._reaches, self._touchpoint_channels = _follow_up_channel(texts["follow_up_channel"], self.file)
        # The features a template may name, by derived name: all of them where an agent reads the text, none
        # of the sensitive ones where the customer does (keyed by Touchpoint.customer_facing).
        self._shown_features: dict[bool, dict[str, Feature]] = {
            facing: {f.derived_name: f for f in schema.features if not (f.sensitive and facing)}
            for facing in (False, True)
        }

    def template_problems(self, actions: Mapping[str, Action], catalogue_file: str) -> list[str]:
        """Everything ``nba rules check`` names in the texts: the messages file's problems, the catalogue's, and
        ``explained_by`` entries for actions the catalogue lacks."""
        return (
            self.messages_problems()
            + self.catalogue_problems(actions, catalogue_file)
            + self.stray_explanations(actions, catalogue_file)
        )

    def messages_problems(self) -> list[str]:
        """What is wrong with the messages file's templates for this schema, one line each naming the file, the
        text, its language and the placeholder: a placeholder that is no field a text can show, a request context
        field outside a variant (it would render blank when a request lacks it), a variant not closed; and an
        ``explained_by`` feature the schema does not have. Warned about at load, not refused: one messages file
        may serve a smaller schema, where a feature it lacks shows as nothing."""
        fields = self._fields()
        features, context, every = fields["features"], fields["context"], fields["every"]
        allowed = {
            "greeting_name": features,
            "customer_name": features | {"greeting_name"},
            "incidents": fields["incident"],
            "incidents_agent": fields["incident"],
            "incidents.complaint": fields["incident"] | {"incident"},
            "incidents_agent.complaint": fields["incident"] | {"incident"},
            "why": every | {"reason"},
            "reasons.model_ranked": every | {"features"},
            "follow_ups": every | {"action_title", "action_confirmation"},
        }
        by_length = sorted(allowed, key=len, reverse=True)  # the most specific first: incidents.complaint
        problems = []
        for section in _TEMPLATE_SECTIONS:
            for where, template in _texts(self.texts[section], section):
                allowed_here = next((allowed[k] for k in by_length if where.startswith(k + ".")), every)
                problems += [f"{self.file}: {where}: {p}" for p in _template_problems(template, allowed_here, context)]
        for action_id, cited in self.explained_by.items():
            problems += [
                f"{self.file}: explained_by.{action_id}: {name} is not a feature (features/schema.yaml, as rules "
                "read it)"
                for name in sorted(cited - features)
            ]
        return problems

    def catalogue_problems(self, actions: Mapping[str, Action], catalogue_file: str) -> list[str]:
        """The same for the texts of ``actions`` (the catalogue's, written for this deployment's schema):
        refused at load and on a reload, as a rule that does not compile is."""
        fields = self._fields()
        problems = []
        for action in actions.values():
            texts = [(f"messages.{lang}.{d}", text) for lang, by in action.messages.items() for d, text in by.items()]
            texts += [(f"confirmation.{lang}", text) for lang, text in action.confirmations.items()]
            for where, template in texts:
                problems += [
                    f"{catalogue_file}: action {action.action_id!r}: {where}: {p}"
                    for p in _template_problems(template, fields["every"], fields["context"])
                ]
        return problems

    def _fields(self) -> dict[str, set[str]]:
        """The names a template may use, by kind: the schema's features, the request context, every field."""
        features = {f.derived_name for f in self.schema.features}
        context = set(self.schema.context)
        derived = {"greeting_name", *_CUSTOMER_FORMS, *self.features.placeholders}
        every = features | context | derived | {"incident", "complaint", "channel"}
        incident = (features | context | derived) - {"complaint"}
        return {"features": features, "context": context, "every": every, "incident": incident}

    def stray_explanations(self, actions: Mapping[str, Action], catalogue_file: str) -> list[str]:
        """``explained_by`` entries for actions the catalogue does not have: a misspelt id leaves its action with
        the generic why. Named by ``nba rules check``; not refused at load, since a deployment may serve a part
        of the catalogue with the whole messages file."""
        return [
            f"{self.file}: explained_by: {action_id} is not an action of {catalogue_file}"
            for action_id in self.explained_by
            if action_id not in actions
        ]

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
            reason = self._reason_text(eligible.channel_reason, fields.about_customer(), language)
            channel = ChannelAdvice(eligible.channel, eligible.channel_reason, reason)
        decided = {r.action.action_id: r.action for r in ranked}
        return Narration(
            language=language,
            greeting=greeting,
            text=text,
            messages=tuple(messages),
            top_features=tuple(features),
            channel=channel,
            follow_ups=tuple(
                self._follow_ups(eligible.follow_ups, decided, fields, language, eligible.channel, touchpoint)
            ),
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
            return render(self.text("reasons", language, code), fields)
        return ""

    def _open_items(
        self, values: Mapping[str, Any], fields: TemplateFields, language: str, touchpoint: Touchpoint
    ) -> list[OpenItem]:
        """Open problems and pending applications (each ``continuity`` kind the customer's feature of that name
        holds), at every touchpoint: the details only where an agent reads."""
        detailed = not touchpoint.customer_facing
        section = "continuity" if detailed else "continuity_customer"
        told = fields.about_customer() if detailed else fields
        return [
            OpenItem(kind, render(self.text(section, language, kind), told), detailed)
            for kind in self.texts["continuity"]
            if values.get(kind)
        ]

    def _greeting(self, fields: Mapping[str, str], language: str, known: bool) -> str:
        kind = "known" if known and fields.get(self.features.family_name) else "anonymous"
        return render(self.text("greeting", language, kind), fields)

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
        about = fields.about_customer()
        told = about if delivery == "agent" else fields
        messages = [render(r.action.message(language, delivery), told) for r in ranked]
        if not ranked:
            lead = self.text("reasons", language, "no_action")
            return (lead if delivery == "agent" else greeting), messages
        parts = [] if delivery == "agent" else [greeting]
        parts.append(messages[0])
        if delivery == "agent":
            reason = self._reason(ranked[0], reasons, features, about, language)
            parts.append(render(self.text("why", language), about.extended({"reason": reason})))
            for kind in self.texts["continuity"]:
                if fields.feature(kind):
                    parts.append(render(self.text("continuity", language, kind), about))
        return " ".join(p for p in parts if p), messages

    def _reason(
        self,
        top: Ranked,
        reasons: Mapping[str, Sequence[str]],
        features: Sequence[FeatureContribution],
        fields: TemplateFields,
        language: str,
    ) -> str:
        """Why the top action: its rules' reason, else the model's reasons that made it likelier and that
        ``explained_by`` lets it name (never one that made it less likely, nor an airline feature for a bank
        product), else the generic sentence."""
        for code in reasons.get(top.action.action_id, ()):
            if code in self.texts["reasons"]:
                return render(self.text("reasons", language, code), fields)
        cited = self.explained_by.get(top.action.action_id, frozenset())
        labels = [f.label for f in features if f.contribution > 0 and f.feature in cited]
        if not labels:
            return render(self.text("reasons", language, "model_ranked_generic"), fields)
        joined = "、".join(labels) if language.startswith("zh") else ", ".join(labels)
        return render(self.text("reasons", language, "model_ranked"), fields.extended({"features": joined}))

    def _follow_ups(
        self,
        wanted: Sequence[WantedFollowUp],
        decided: Mapping[str, Action],
        fields: TemplateFields,
        language: str,
        channel: str,
        touchpoint: Touchpoint,
    ) -> list[FollowUp]:
        """The follow-ups to send, rendered: one per kind, for the first of its actions that was decided (the
        letter confirms the upgrade, or the points given instead), or unconditionally when tied to no action.
        Each goes by the channel its rule names, else by the decision's when a letter reaches the customer by it,
        else by the touchpoint's own (``follow_up_channel``)."""
        if channel not in self._reaches:
            channel = self._touchpoint_channels.get(touchpoint, channel)
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
                        "action_confirmation": render(action.confirmation(language), fields),
                    }
                )
            text = render(self.text("follow_ups", language, want.kind), filled)
            rendered[want.kind] = FollowUp(want.kind, want.action_id, language, text, want.channel or channel)
        return list(rendered.values())


def _texts(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every text under ``node`` of the messages file, with where it is (``reasons.loyal_member.zh-Hant``)."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, child in node.items():
            yield from _texts(child, f"{where}.{key}")


def _template_problems(template: str, fields: Iterable[str], optional: Iterable[str]) -> list[str]:
    """What is wrong with one template: placeholders that are not among ``fields``, ``optional`` ones (request
    context fields) outside a variant, brackets that do not pair."""
    depth = 0
    for char in template:
        if char == "[":
            if depth:
                return ["a '[' inside a variant: variants do not nest"]
            depth = 1
        elif char == "]":
            if not depth:
                return ["a ']' without its '['"]
            depth = 0
    if depth:
        return ["a '[' without its ']'"]
    known, may_be_missing = set(fields), set(optional)
    problems = []
    for index, part in enumerate(re.split(r"(\[[^\[\]]*\])", template)):
        try:
            names = placeholders(part)
        except ValueError as error:
            return [f"not a template: {error} (a literal brace is written {{{{ or }}}})"]
        in_variant = index % 2 == 1
        for name in names:
            if name not in known:
                problems.append(f"{{{name}}} is not a field a text can show")
            elif name in may_be_missing and not in_variant:
                problems.append(
                    f"{{{name}}} may be missing from a request: write it in a variant, e.g. "
                    f'"[ on {{{name}}}]" or "[{{{name}}}|today]"'
                )
    return problems


def _check_customer_name(section: Mapping[str, Any], file: str) -> None:
    """``customer_name`` has each form, each with a ``named`` and an ``anonymous`` text in English at least."""
    for form in _CUSTOMER_FORMS:
        by_language = section.get(form)
        if not isinstance(by_language, dict) or "en" not in by_language:
            raise NarratorError(f"{file}: customer_name: needs {form!r} with at least English ('en')")
        for language, by_title in by_language.items():
            if not isinstance(by_title, dict) or not {"named", "anonymous"} <= set(by_title):
                raise NarratorError(f"{file}: customer_name.{form}.{language}: needs 'named' and 'anonymous' texts")


def _explained_by(section: Mapping[str, Any], file: str) -> dict[str, frozenset[str]]:
    """``explained_by``: each action with the features its why may name."""
    cited = {}
    for action_id, names in section.items():
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise NarratorError(f"{file}: explained_by.{action_id}: needs a list of feature names")
        cited[str(action_id)] = frozenset(names)
    return cited


def _follow_up_channel(section: Mapping[str, Any], file: str) -> tuple[frozenset[str], dict[Touchpoint, str]]:
    """``follow_up_channel``: the channels a letter reaches the customer by, and each touchpoint's own."""
    reaches, touchpoints = section.get("reaches"), section.get("touchpoints")
    if not isinstance(reaches, list) or not isinstance(touchpoints, dict):
        raise NarratorError(f"{file}: follow_up_channel: needs a 'reaches' list and a 'touchpoints' mapping")
    try:
        own = {Touchpoint.named(name): str(channel) for name, channel in touchpoints.items()}
    except ValueError as error:
        raise NarratorError(f"{file}: follow_up_channel.touchpoints: {error}") from None
    return frozenset(str(channel) for channel in reaches), own


def _shown(value: Any) -> str:
    """A feature value as a text shows it: whole numbers without decimals, others to one decimal."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.1f}"
    return str(value)
