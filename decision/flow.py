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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from decision.arbitration import Ranked, arbitrate
from decision.catalogue import Catalogue
from decision.decision_log import (
    CapacityClaim,
    DecisionLog,
    DecisionLogUnavailable,
    DecisionNotFound,
    OutcomeAlreadyFinal,
)
from decision.domain import (
    Decision,
    DecisionRequest,
    Explanation,
    FeatureFreshness,
    Outcome,
    OutcomeReceipt,
    PolicyTrace,
    RankedAction,
    Suppression,
    decision_day,
)
from decision.eligibility import Eligible
from decision.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from decision.explanation import Narrator
from decision.exploration import Explored, explore
from decision.scoring import Scorer
from decision.strategy import Strategy
from features.contact_history import ContactQuery
from features.online_store import SHORTEST_CALL_S, CustomerRecord, FeatureStoreUnavailable, OnlineStore
from features.schema import FeatureSchema

log = logging.getLogger(__name__)

# A capacity pool (a flight's upgrade seats on one date) is kept until midnight UTC this many days after its
# date: the date is the local departure day (it ends by noon UTC the next day anywhere on Earth), and a delayed
# flight keeps its scheduled date, so a check-in a day or more late still draws from the same pool; a date over
# a day past is refused for capacity, so a pool is never recreated full after its key expired.
POOL_KEPT_DAYS = 2
# How far ahead a pool opens: flights are sold about a year ahead; later dates are no flight's.
POOL_OPEN_DAYS = 366
# The reason code of an action no rule gave a reason for: the model ranked it (its features say why).
MODEL_RANKED = "model_ranked"


@dataclass(frozen=True)
class FlowLimits:
    feature_max_age_s: float
    explain_top_features: int
    exploration_share: float = 0.0
    # Of a caller's deadline, what each Redis call leaves for the rest of the answer (see _time_left).
    deadline_margin_s: float = 0.005


@dataclass(frozen=True)
class _Draft:
    """What one decision has gathered before it is ranked: its request, features, model and scores."""

    request: DecisionRequest
    decision_id: str
    now: float
    strategy: Strategy
    scorer: Scorer
    values: dict
    known: bool
    freshness: FeatureFreshness
    degraded: dict[str, str]
    propensity: dict[str, float]
    trace: PolicyTrace


class DecisionFlow:
    """Decides for one customer at one touchpoint, and records outcomes of earlier decisions."""

    def __init__(
        self,
        *,
        store: OnlineStore,
        schema: FeatureSchema,
        strategy: Strategy,
        decision_log: DecisionLog,
        limits: FlowLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.schema = schema
        # Replaced whole by a rules reload or a model publish; each decision reads it once (see decide).
        self.strategy = strategy
        self.decision_log = decision_log
        self.limits = limits
        self.clock = clock

    def install(self, strategy: Strategy) -> None:
        """Make ``strategy`` the one the next decision uses (one assignment: atomic for decisions in flight)."""
        self.strategy = strategy

    @property
    def catalogue(self) -> Catalogue:
        return self.strategy.catalogue

    @property
    def narrator(self) -> Narrator:
        return self.strategy.narrator

    @property
    def rules_version(self) -> str:
        return self.strategy.rules_version

    def decide(self, request: DecisionRequest) -> Decision:
        # One strategy for the whole decision, however the live one changes meanwhile: never mixed versions.
        strategy = self.strategy
        now = self.clock()
        degraded: dict[str, str] = {}

        # 1. Features: the profile and contact history (and a retry's stored decision), in one round trip.
        decision_id = decision_id_for(request)
        record = self._read_features(request, decision_id, strategy.eligibility.contact_query, degraded)
        # A retry (the same request_id) names the same decision: the one answered before, retold in the
        # language the retry asks for (a teller switching the page's language) without offering anything anew.
        if (earlier := self.decision_log.answered(decision_id, record.also)) is not None:
            return self._retold(earlier, request, record, strategy, now)
        values = self.schema.parse(record.raw, now) if record.found else self.schema.defaults()
        freshness = self._freshness(record, now, degraded)

        # 2. Eligibility: catalogue applicability and the rules (one durable-rules evaluation).
        policy = strategy.eligibility
        fact = policy.fact(values, request.touchpoint, request.context, record.contact_counts, record.found)
        eligible = policy.evaluate(fact, request.touchpoint, decision_day(now))

        # 3. Scoring: every eligible candidate, and every fallback that may have to stand in, in one model call,
        # by the customer's arm of a champion/challenger split (the champion when there is none).
        arm, scorer = strategy.models.arm(request.customer_id)
        shadow_version, shadow_choice = self._shadow(strategy, values, eligible)
        draft = _Draft(
            request=request,
            decision_id=decision_id,
            now=now,
            strategy=strategy,
            scorer=scorer,
            values=values,
            known=record.found,
            freshness=freshness,
            degraded=degraded,
            propensity=self._score(scorer, values, eligible),
            trace=PolicyTrace(
                arm=arm,
                exploration_share=self.limits.exploration_share,
                shadow_model_version=shadow_version,
                shadow_action_id=shadow_choice,
            ),
        )

        # 4. Arbitration, 5. explanation, 6. side effects: what cannot be given is dropped until one commits.
        inputs = {"features": dict(record.raw), "context": dict(request.context)}
        return self._rank_and_commit(draft, eligible, inputs)

    def _rank_and_commit(self, draft: _Draft, eligible: Eligible, inputs: dict) -> Decision:
        """Rank (``plan``), explain, then take capacity and log the decision and its follow-ups atomically.
        Capacity that cannot be taken without the log, or a sold-out action, is dropped (its fallback steps in)
        and the rest ranked again."""
        request, degraded = draft.request, draft.degraded
        share = self.limits.exploration_share
        while True:
            planned = plan(self.schema, request, eligible, draft.propensity, share, draft.decision_id, draft.now)
            claims = planned.claims
            decision = self._decision(draft, eligible, planned)
            try:
                committed = self.decision_log.commit(decision, claims, inputs, self._time_left(request))
            except DecisionLogUnavailable as exc:
                log.warning("decision %s not logged: %s", draft.decision_id, exc)
                degraded.setdefault("decision_log_unavailable", "the decision log is unavailable")
                if not claims:
                    return replace(decision, **_degradation(degraded))
                # Capacity cannot be taken safely without the log: offer what needs no stock instead.
                eligible.drop({c.action_id for c in claims}, "capacity_unavailable", "capacity")
                continue
            if committed.sold_out is None:
                return committed.decision
            # Sold out: the next best (a required upgrade's fallback, bonus points) takes its place.
            eligible.drop({committed.sold_out.action_id}, "capacity_exhausted", "capacity")

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
        except OutcomeAlreadyFinal as exc:
            raise FailedPrecondition(
                f"outcome: decision {decision_id} action {action_id} already has {exc.stored.name} recorded; "
                "an outcome once accepted or declined cannot change"
            ) from None
        except DecisionNotFound:
            raise NotFound(f"decision_id: no decision {decision_id!r} (unknown or expired)") from None
        except DecisionLogUnavailable as exc:
            raise Unavailable(f"outcome not stored, retry: {exc}") from None

    def _retold(
        self, earlier: Decision, request: DecisionRequest, record: CustomerRecord, strategy: Strategy, now: float
    ) -> Decision:
        """The decision answered before, in the language the rules choose for this retry when that is another
        one (its ``context.language`` changed): the same actions, scores, reasons and trace in new words. Nothing
        is offered, counted, taken or logged anew, and the follow-ups keep the words they were queued with; when
        one of its actions has left the catalogue since, the decision as answered."""
        asked = request.context.get("language")
        earlier = replace(earlier, answered_before=True)
        if not asked or asked == earlier.explanation.language:
            return earlier
        values = self.schema.parse(record.raw, now) if record.found else self.schema.defaults()
        policy = strategy.eligibility
        fact = policy.fact(values, request.touchpoint, request.context, record.contact_counts, record.found)
        language = policy.evaluate(fact, request.touchpoint, decision_day(now)).language
        actions = [strategy.catalogue.actions.get(a.action_id) for a in earlier.actions]
        if language == earlier.explanation.language or None in actions:
            return earlier
        known = [a for a in actions if a is not None]
        told = strategy.narrator.narrate(
            values=values,
            context=request.context,
            touchpoint=earlier.touchpoint,
            known=record.found,
            eligible=Eligible(
                actions=known,
                # the rules' reasons; an action the model alone ranked is explained by its features again
                reasons={a.action_id: [c for c in a.reason_codes if c != MODEL_RANKED] for a in earlier.actions},
                language=language,
                channel=earlier.channel.channel,
                channel_reason=earlier.channel.reason_code,
            ),
            ranked=[Ranked(k, a.score, a.propensity, a.mandatory) for k, a in zip(known, earlier.actions, strict=True)],
            top_features=[(f.feature, f.contribution) for f in earlier.explanation.top_features],
        )
        return replace(
            earlier,
            actions=tuple(
                replace(a, title=k.title(language), message=told.messages[i])
                for i, (k, a) in enumerate(zip(known, earlier.actions, strict=True))
            ),
            explanation=replace(
                earlier.explanation,
                language=language,
                text=told.text,
                greeting=told.greeting,
                top_features=told.top_features,
            ),
            channel=told.channel,
            open_items=told.open_items,
        )

    # -- stages --------------------------------------------------------------------------------------------

    def _read_features(
        self, request: DecisionRequest, decision_id: str, contacts: ContactQuery, degraded: dict[str, str]
    ) -> CustomerRecord:
        timeout_s = self._time_left(request)
        if timeout_s is not None and timeout_s < SHORTEST_CALL_S:
            degraded["feature_store_skipped"] = "too little time left before the deadline to read features"
            return CustomerRecord(found=False)
        try:
            also = self.decision_log.decision_key(decision_id) if request.request_id else None
            record = self.store.read(
                request.customer_id, self.clock(), also=also, contacts=contacts, timeout_s=timeout_s
            )
        except FeatureStoreUnavailable as exc:
            degraded["feature_store_unavailable"] = f"decided from the request context alone: {exc}"
            return CustomerRecord(found=False)
        if not record.found:
            degraded["unknown_customer"] = (
                f"no profile for customer {request.customer_id!r}: decided from the request context alone"
            )
        return record

    def _time_left(self, request: DecisionRequest) -> float | None:
        """How long a store call may take by the caller's deadline: the time left less deadline_margin_s for the
        rest of the answer (the store bounds it by its own timeout too); None without a deadline."""
        if request.deadline is None:
            return None
        return request.deadline - time.monotonic() - self.limits.deadline_margin_s

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

    def _score(self, scorer: Scorer, values: dict, eligible: Eligible) -> dict[str, float]:
        """The model's probability for each eligible action and for each fallback that may stand in."""
        ids = [a.action_id for a in eligible.actions]
        ids += sorted({f for f, _, _ in eligible.fallbacks.values() if f in eligible.standby} - set(ids))
        return dict(zip(ids, scorer.score(values, ids).tolist(), strict=True))

    def _shadow(self, strategy: Strategy, values: dict, eligible: Eligible) -> tuple[str, str]:
        """A challenger in shadow: its version and what it would put first for the same candidates, rules and
        offer limit (which may hold every offer back); it never decides. Empty when there is none."""
        shadow = strategy.models.shadow_scorer
        if shadow is None:
            return "", ""
        scores = shadow.score(values, [a.action_id for a in eligible.actions])
        ranking, _ = eligible.limit_offers(arbitrate(eligible.actions, scores, eligible.mandatory, eligible.boosts))
        return shadow.version, ranking[0].action.action_id if ranking else ""

    def _decision(self, draft: _Draft, eligible: Eligible, planned: Planned) -> Decision:
        """The decision to commit and answer: the ranked actions, in the customer's language, with their reasons."""
        request = draft.request
        ranking, ranked, held_back, claims = planned.ranking, planned.ranked, planned.held_back, planned.claims
        trace = replace(draft.trace, explored=planned.explored.explored, propensity=planned.explored.propensity)
        top: list = []
        if ranked and self.limits.explain_top_features:
            top = draft.scorer.explain(draft.values, ranked[0].action.action_id, self.limits.explain_top_features)
        told = draft.strategy.narrator.narrate(
            values=draft.values,
            context=request.context,
            touchpoint=request.touchpoint,
            known=draft.known,
            eligible=eligible,
            ranked=ranked,
            top_features=top,
        )
        language = told.language
        actions = tuple(
            RankedAction(
                action_id=r.action.action_id,
                kind=r.action.kind,
                title=r.action.title(language),
                score=r.priority,
                propensity=r.propensity,
                value=r.action.value,
                mandatory=r.mandatory,
                reason_codes=tuple(eligible.reasons.get(r.action.action_id, ())) or (MODEL_RANKED,),
                rank=i + 1,
                message=told.messages[i],
            )
            for i, r in enumerate(ranked)
        )
        return Decision(
            decision_id=draft.decision_id,
            request_id=request.request_id or f"auto-{draft.decision_id}",
            customer_id=request.customer_id,
            touchpoint=request.touchpoint,
            actions=actions,
            explanation=Explanation(
                language=language,
                delivery=request.touchpoint.delivery,
                text=told.text,
                greeting=told.greeting,
                rules_fired=tuple(eligible.rules_fired),
                top_features=told.top_features,
                suppressed=tuple(eligible.suppressed) + tuple(held_back),
                ranking_margin=ranking[0].priority - ranking[1].priority if len(ranking) > 1 else 0.0,
            ),
            model_version=draft.scorer.version,
            rules_version=draft.strategy.rules_version,
            catalogue_version=draft.strategy.catalogue.version,
            features=draft.freshness,
            follow_ups=told.follow_ups,
            channel=told.channel,
            open_items=told.open_items,
            decided_at_ms=int(draft.now * 1000),
            candidates={r.action.action_id: (r.propensity, r.priority) for r in ranking},
            policy=trace,
            seats=tuple((c.action_id, c.pool) for c in claims),
            **_degradation(draft.degraded),
        )


def capacity_claims(
    schema: FeatureSchema, request: DecisionRequest, ranked: Sequence[Ranked], now: float
) -> tuple[list[CapacityClaim], dict[str, str]]:
    """The capacity the ranked actions take, one unit each for this customer from the pool of their flight
    (``per``, normalised as the schema declares: " az777" is AZ777) on its date (``date``, else the decision's
    day), e.g. ``AZ777:2026-12-03``; the pool is kept POOL_KEPT_DAYS after its date. Also the actions that cannot
    take any, with why: no flight in the context (``capacity_pool_missing``), or a date whose pool is closed
    (``capacity_pool_closed``: over a day past, or over POOL_OPEN_DAYS ahead)."""
    claims, no_pool = [], {}
    today = decision_day(now)
    for r in ranked:
        capacity = r.action.capacity
        if capacity is None:
            continue
        flight = _context_value(schema, request, capacity.per)
        day_text = _context_value(schema, request, capacity.date) if capacity.date in request.context else ""
        if not flight or day_text is None:
            no_pool[r.action.action_id] = "capacity_pool_missing"
            continue
        day = dt.date.fromisoformat(day_text) if day_text else today
        if not -1 <= (day - today).days <= POOL_OPEN_DAYS:
            no_pool[r.action.action_id] = "capacity_pool_closed"
            continue
        expires = dt.datetime.combine(day + dt.timedelta(days=POOL_KEPT_DAYS + 1), dt.time(), tzinfo=dt.UTC)
        pool = f"{flight}:{day.isoformat()}"
        claims.append(
            CapacityClaim(r.action.action_id, pool, capacity.units, request.customer_id, int(expires.timestamp()))
        )
    return claims, no_pool


def _context_value(schema: FeatureSchema, request: DecisionRequest, key: str) -> str | None:
    """A context value as the schema declares it (normalised), None when absent or not valid."""
    raw = request.context.get(key)
    spec = schema.context.get(key)
    if raw is None or spec is None:
        return raw.strip() if raw is not None else None
    return spec.normalised(raw)


@dataclass(frozen=True)
class Planned:
    """A ranking ready to commit: all candidates within the offer limit (``ranking``), the first max_actions of
    it (``ranked``), the offers the limit held back, exploration's draw, and the capacity ``ranked`` takes."""

    ranking: list[Ranked]
    ranked: list[Ranked]
    held_back: list[Suppression]
    explored: Explored
    claims: list[CapacityClaim]


def plan(
    schema: FeatureSchema,
    request: DecisionRequest,
    eligible: Eligible,
    propensity: Mapping[str, float],
    exploration_share: float,
    decision_id: str,
    now: float,
) -> Planned:
    """Arbitration (with exploration's share of random first actions) within the contact policy's offer limit;
    an action with no capacity pool to take from is dropped (its fallback steps in) and the rest ranked again.
    What the stock says (sold out) only the commit knows. ``nba score`` plans its rows with this too."""
    while True:
        propensities = [propensity[a.action_id] for a in eligible.actions]
        explored = explore(
            arbitrate(eligible.actions, propensities, eligible.mandatory, eligible.boosts),
            exploration_share,
            decision_id,
        )
        ranking, held_back = eligible.limit_offers(explored.ranking)
        ranked = ranking[: request.max_actions]
        claims, no_pool = capacity_claims(schema, request, ranked, now)
        if not no_pool:
            return Planned(ranking, ranked, held_back, explored, claims)
        # No flight (or no open date) to take a seat from: never a pool shared by every such call.
        for reason_code in sorted(set(no_pool.values())):
            eligible.drop({a for a, r in no_pool.items() if r == reason_code}, reason_code, "capacity")


def decision_id_for(request: DecisionRequest) -> str:
    """A retry (same customer, touchpoint and request_id) names the same decision; no request_id, a fresh one."""
    if not request.request_id:
        return uuid.uuid4().hex
    key = f"{request.customer_id}\x1f{request.touchpoint.name}\x1f{request.request_id}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _degradation(degraded: dict[str, str]) -> dict:
    return {"degraded_codes": tuple(degraded), "degraded_reason": "; ".join(degraded.values())}
