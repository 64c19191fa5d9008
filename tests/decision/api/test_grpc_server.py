"""decision -> response proto: every field of the decision, nested messages present even when empty."""

from __future__ import annotations

from decision.api.grpc_server import decision_to_proto
from decision.domain import (
    ChannelAdvice,
    Decision,
    Explanation,
    FeatureContribution,
    FeatureFreshness,
    FollowUp,
    OpenItem,
    PolicyTrace,
    RankedAction,
    RuleFired,
    Suppression,
    Touchpoint,
)
from decision.pb import decision_pb2 as pb


def _decision(**changes: object) -> Decision:
    fields: dict = dict(
        decision_id="d" * 32,
        request_id="r-1",
        customer_id="cust-000001",
        touchpoint=Touchpoint.CHECKIN_KIOSK,
        actions=tuple(
            RankedAction(f"a{i}", "offer", f"Title {i}", 2.5 - i, 0.25, 40.0, i == 0, ("model_ranked",), i + 1, "m")
            for i in range(3)
        ),
        explanation=Explanation(
            language="it",
            delivery="screen",
            text="Buongiorno",
            greeting="Buongiorno",
            rules_fired=(RuleFired("r1", "boost", "a1", "loyal"), RuleFired("r2", "set_language", "it", "lang")),
            top_features=(FeatureContribution("tier", "livello", 0.4, "gold"),),
            suppressed=(Suppression("a9", "declined_recently", "contact_policy"),),
            ranking_margin=0.75,
        ),
        model_version="m1",
        rules_version="r1",
        catalogue_version="c1",
        features=FeatureFreshness(found=True, age_ms=12, stale=False, max_age_ms=1000),
        degraded_codes=("features_stale",),
        degraded_reason="old",
        follow_ups=(FollowUp("apology_letter", "a0", "it", "Gentile", "email"),),
        channel=ChannelAdvice("app", "prefers_app", "in app"),
        open_items=(OpenItem("open_problem", "disputa", True),),
        policy=PolicyTrace("challenger", True, 0.125, 0.1, "m2", "a2"),
    )
    fields.update(changes)
    return Decision(**fields)


def _expected(d: Decision) -> pb.DecideResponse:
    """The response as nested keyword construction writes it."""
    e = d.explanation
    return pb.DecideResponse(
        decision_id=d.decision_id,
        request_id=d.request_id,
        actions=[
            pb.Action(
                action_id=a.action_id,
                kind=a.kind,
                title=a.title,
                score=a.score,
                propensity=a.propensity,
                value=a.value,
                mandatory=a.mandatory,
                reason_codes=a.reason_codes,
                rank=a.rank,
                message=a.message,
            )
            for a in d.actions
        ],
        explanation=pb.Explanation(
            language=e.language,
            delivery=e.delivery,
            text=e.text,
            greeting=e.greeting,
            rules_fired=[
                pb.RuleFired(rule_id=r.rule_id, directive=r.directive, action_id=r.action_id, reason_code=r.reason_code)
                for r in e.rules_fired
            ],
            top_features=[
                pb.FeatureContribution(feature=f.feature, label=f.label, contribution=f.contribution, value=f.value)
                for f in e.top_features
            ],
            suppressed=[
                pb.Suppression(action_id=s.action_id, reason_code=s.reason_code, source=s.source) for s in e.suppressed
            ],
            ranking_margin=e.ranking_margin,
        ),
        model_version=d.model_version,
        rules_version=d.rules_version,
        catalogue_version=d.catalogue_version,
        features=pb.FeatureFreshness(
            found=d.features.found, age_ms=d.features.age_ms, stale=d.features.stale, max_age_ms=d.features.max_age_ms
        ),
        degraded=d.degraded,
        degraded_reason=d.degraded_reason,
        degraded_codes=d.degraded_codes,
        follow_ups=[
            pb.FollowUp(kind=f.kind, action_id=f.action_id, language=f.language, text=f.text, channel=f.channel)
            for f in d.follow_ups
        ],
        channel=pb.ChannelAdvice(channel=d.channel.channel, reason_code=d.channel.reason_code, text=d.channel.text),
        open_items=[pb.OpenItem(kind=i.kind, text=i.text, detailed=i.detailed) for i in d.open_items],
        policy=pb.PolicyTrace(
            arm=d.policy.arm,
            explored=d.policy.explored,
            propensity=d.policy.propensity,
            exploration_share=d.policy.exploration_share,
            shadow_model_version=d.policy.shadow_model_version,
            shadow_action_id=d.policy.shadow_action_id,
        ),
    )


def test_the_response_carries_every_field_of_the_decision() -> None:
    decision = _decision()
    response = decision_to_proto(decision)
    assert response == _expected(decision)
    assert response.SerializeToString(deterministic=True) == _expected(decision).SerializeToString(deterministic=True)


def test_empty_nested_messages_are_still_present() -> None:
    decision = _decision(
        actions=(),
        explanation=Explanation(language="", delivery="", text="", greeting=""),
        features=FeatureFreshness(found=False, age_ms=0, stale=False, max_age_ms=0),
        degraded_codes=(),
        degraded_reason="",
        follow_ups=(),
        channel=ChannelAdvice(),
        open_items=(),
        policy=PolicyTrace(arm="", propensity=0.0),
    )
    response = decision_to_proto(decision)
    assert all(response.HasField(name) for name in ("explanation", "features", "channel", "policy"))
    assert response.SerializeToString(deterministic=True) == _expected(decision).SerializeToString(deterministic=True)
