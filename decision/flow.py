"""The decision flow, read top to bottom like the check-in scenario it serves:

features -> eligibility rules -> scoring -> arbitration -> explanation -> side effects (capacity, log, follow-ups).

It knows nothing about gRPC: the gRPC servicer, the teller page, the CLI and the simulator all call ``decide``.
A failing dependency never fails a decision: without Redis the decision is made from the request context and
the schema's defaults and flagged degraded; only outcomes, which the caller must be able to trust, fail loudly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from decision.arbitration import Ranked, arbitrate
from decision.catalogue import Catalogue
from decision.domain import (
    Decision,
    DecisionRequest,
    Explanation,
    FeatureFreshness,
    Outcome,
    OutcomeReceipt,
    RankedAction,
    Suppression,
)
from decision.eligibility import EligibilityPolicy, Eligible, rules_fact
from decision.errors import InvalidArgument, NotFound, Unavailable
from decision.explanation import Narrator
from decision.scoring import Scorer
from decision.side_effects import (
    CapacityClaim,
    DecisionLog,
    DecisionLogUnavailable,
    DecisionNotFound,
    decision_from_json,
)
from features.online_store import CustomerRecord, FeatureStoreUnavailable, OnlineStore
from features.schema import FeatureSchema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowLimits:
    feature_max_age_s: float
    explain_top_features: int
    store_timeout_s: float


class DecisionFlow:
    """Decides for one customer at one touchpoint, and records outcomes of earlier decisions."""

    def __init__(
        self,
        *,
        store: OnlineStore,
        schema: FeatureSchema,
        catalogue: Catalogue,
        eligibility: EligibilityPolicy,
        scorer: Scorer,
        narrator: Narrator,
        decision_log: DecisionLog,
        limits: FlowLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.schema = schema
        self.catalogue = catalogue
        self.eligibility = eligibility
        self.scorer = scorer
        self.narrator = narrator
        self.decision_log = decision_log
        self.limits = limits
        self.clock = clock
        self.action_ids = catalogue.action_ids

    @property
    def rules_version(self) -> str:
        return self.eligibility.rules.version

    def decide(self, request: DecisionRequest) -> Decision:
        now = self.clock()
        degraded: dict[str, str] = {}

        # 0. A retry names the same decision: answered from memory if not yet written, else from Redis below.
        decision_id = decision_id_for(request)
        if (earlier := self.decision_log.pending(decision_id)) is not None:
            return earlier

        # 1. Features: the profile and contact history (and a retry's stored decision), in one round trip.
        record = self._read_features(request, decision_id, degraded)
        if record.also is not None:
            return decision_from_json(record.also)
        values = self.schema.parse(record.raw, now) if record.found else self.schema.defaults()
        freshness = self._freshness(record, now, degraded)

        # 2. Eligibility: catalogue applicability and the rules (one durable-rules evaluation).
        fact = rules_fact(values, request.touchpoint, request.context, record.declines, self.action_ids, record.found)
        eligible = self.eligibility.evaluate(fact, request.touchpoint, dt.date.fromtimestamp(now))

        # 3. Scoring: every eligible candidate in one model call.
        candidate_ids = [a.action_id for a in eligible.actions]
        propensity = dict(zip(candidate_ids, self.scorer.score(values, candidate_ids).tolist(), strict=True))

        request_id = request.request_id or f"auto-{decision_id}"
        inputs = {"features": dict(record.raw), "context": dict(request.context)}
        unavailable: list[Suppression] = []
        while True:
            # 4. Arbitration, 5. explanation.
            propensities = [propensity[a.action_id] for a in eligible.actions]
            ranking = arbitrate(eligible.actions, propensities, eligible.mandatory, eligible.boosts)
            ranked = ranking[: request.max_actions]
            decision = self._explain(
                request,
                decision_id,
                request_id,
                now,
                values,
                record.found,
                eligible,
                ranking,
                ranked,
                freshness,
                degraded,
                unavailable,
            )
            # 6. Side effects: take capacity, log the decision and its follow-ups, atomically.
            claims = self._claims(request, ranked)
            try:
                committed = self.decision_log.commit(decision, claims, inputs)
            except DecisionLogUnavailable as exc:
                log.warning("decision %s not logged: %s", decision_id, exc)
                degraded.setdefault("decision_log_unavailable", "the decision log is unavailable")
                if not claims:
                    return replace(decision, **_degradation(degraded))
                # Capacity cannot be taken safely without the log: offer what needs no stock instead.
                self._drop(eligible, {c.action_id for c in claims}, "capacity_unavailable", unavailable)
                continue
            if committed.sold_out is None:
                return committed.decision
            self._drop(eligible, {committed.sold_out.action_id}, "capacity_exhausted", unavailable)

    def record_outcome(self, decision_id: str, action_id: str, outcome: Outcome) -> OutcomeReceipt:
        try:
            decision = self.decision_log.find(decision_id)
        except DecisionNotFound:
            raise NotFound(f"decision_id: no decision {decision_id!r} (unknown or expired)") from None
        except DecisionLogUnavailable as exc:
            raise Unavailable(f"outcome not stored, retry: {exc}") from None
        offered = [a.action_id for a in decision.actions]
        if action_id not in offered:
            raise InvalidArgument(
                f"action_id: must be one of decision {decision_id}'s actions ({', '.join(offered) or 'none'}); "
                f"got {action_id!r}"
            )
        try:
            return self.decision_log.record_outcome(decision, action_id, outcome, self.clock())
        except DecisionNotFound:
            raise NotFound(f"decision_id: no decision {decision_id!r} (unknown or expired)") from None
        except DecisionLogUnavailable as exc:
            raise Unavailable(f"outcome not stored, retry: {exc}") from None

    # -- stages --------------------------------------------------------------------------------------------

    def _read_features(self, request: DecisionRequest, decision_id: str, degraded: dict[str, str]) -> CustomerRecord:
        if request.deadline is not None and request.deadline - time.monotonic() < self.limits.store_timeout_s:
            degraded["feature_store_skipped"] = "too little time left before the deadline to read features"
            return CustomerRecord(found=False)
        try:
            also = self.decision_log.decision_key(decision_id) if request.request_id else None
            record = self.store.read(request.customer_id, self.clock(), also=also)
        except FeatureStoreUnavailable as exc:
            degraded["feature_store_unavailable"] = f"decided from the request context alone: {exc}"
            return CustomerRecord(found=False)
        if not record.found:
            degraded["unknown_customer"] = (
                f"no profile for customer {request.customer_id!r}: decided from the request context alone"
            )
        return record

    def _freshness(self, record: CustomerRecord, now: float, degraded: dict[str, str]) -> FeatureFreshness:
        max_age_ms = int(self.limits.feature_max_age_s * 1000)
        if not record.found or record.written_at is None:
            return FeatureFreshness(found=record.found, age_ms=-1, stale=False, max_age_ms=max_age_ms)
        age_ms = max(0, int((now - record.written_at) * 1000))
        stale = age_ms > max_age_ms
        if stale:
            degraded["features_stale"] = (
                f"the customer's profile is {age_ms / 86_400_000:.1f} days old; "
                f"the limit is {max_age_ms / 86_400_000:.1f} days"
            )
        return FeatureFreshness(found=True, age_ms=age_ms, stale=stale, max_age_ms=max_age_ms)

    def _claims(self, request: DecisionRequest, ranked: Sequence[Ranked]) -> list[CapacityClaim]:
        claims = []
        for r in ranked:
            capacity = r.action.capacity
            if capacity is not None:
                pool = request.context.get(capacity.per, "")
                claims.append(CapacityClaim(r.action.action_id, pool, capacity.units))
        return claims

    def _drop(self, eligible: Eligible, action_ids: set[str], reason: str, unavailable: list[Suppression]) -> None:
        eligible.actions = [a for a in eligible.actions if a.action_id not in action_ids]
        eligible.mandatory -= action_ids
        unavailable.extend(Suppression(a, reason, "capacity") for a in sorted(action_ids))

    def _explain(
        self,
        request: DecisionRequest,
        decision_id: str,
        request_id: str,
        now: float,
        values: dict,
        known: bool,
        eligible: Eligible,
        ranking: Sequence[Ranked],
        ranked: Sequence[Ranked],
        freshness: FeatureFreshness,
        degraded: dict[str, str],
        unavailable: Sequence[Suppression],
    ) -> Decision:
        language = eligible.language
        touchpoint = request.touchpoint
        fields = self.narrator.template_values(values, request.context, language)
        greeting = self.narrator.greeting(fields, language, known)
        top: list = []
        if ranked and self.limits.explain_top_features:
            top = self.scorer.explain(values, ranked[0].action.action_id, self.limits.explain_top_features)
        features = self.narrator.contributions(top, values, language, touchpoint)
        text, messages = self.narrator.text(ranked, eligible.reasons, features, fields, language, touchpoint, greeting)
        actions = tuple(
            RankedAction(
                action_id=r.action.action_id,
                kind=r.action.kind,
                title=r.action.title(language),
                score=r.priority,
                propensity=r.propensity,
                value=r.action.value,
                mandatory=r.mandatory,
                reason_codes=tuple(eligible.reasons.get(r.action.action_id, ())) or ("model_ranked",),
                rank=i + 1,
                message=messages[i],
            )
            for i, r in enumerate(ranked)
        )
        decided = {a.action_id for a in actions}
        margin = ranking[0].priority - ranking[1].priority if len(ranking) > 1 else 0.0
        return Decision(
            decision_id=decision_id,
            request_id=request_id,
            customer_id=request.customer_id,
            touchpoint=touchpoint,
            actions=actions,
            explanation=Explanation(
                language=language,
                delivery=touchpoint.delivery,
                text=text,
                greeting=greeting,
                rules_fired=tuple(eligible.rules_fired),
                top_features=tuple(features),
                suppressed=tuple(eligible.suppressed) + tuple(unavailable),
                ranking_margin=margin,
            ),
            model_version=self.scorer.version,
            rules_version=self.rules_version,
            catalogue_version=self.catalogue.version,
            features=freshness,
            follow_ups=tuple(self.narrator.follow_ups(eligible.follow_ups, decided, fields, language)),
            decided_at_ms=int(now * 1000),
            candidates={r.action.action_id: (r.propensity, r.priority) for r in ranking},
            **_degradation(degraded),
        )


def decision_id_for(request: DecisionRequest) -> str:
    """A retry (same customer, touchpoint and request_id) names the same decision; no request_id, a fresh one."""
    if not request.request_id:
        return uuid.uuid4().hex
    key = f"{request.customer_id}\x1f{request.touchpoint.name}\x1f{request.request_id}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _degradation(degraded: dict[str, str]) -> dict:
    return {"degraded_codes": tuple(degraded), "degraded_reason": "; ".join(degraded.values())}
