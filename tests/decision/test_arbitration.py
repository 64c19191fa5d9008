from __future__ import annotations

from decision.arbitration import arbitrate
from decision.catalogue import Catalogue


def test_mandatory_first_then_priority_then_action_id() -> None:
    catalogue = Catalogue.load()
    lounge, seat, bag, upgrade = (
        catalogue.actions[a] for a in ("lounge_pass", "extra_legroom_seat", "extra_bag", "upgrade_first_class")
    )
    ranked = arbitrate(
        [lounge, seat, bag, upgrade],
        [0.5, 0.5, 0.5, 0.01],
        mandatory={"upgrade_first_class"},
        boosts={"lounge_pass": 2.0},
    )
    # lounge 0.5*35*2=35, seat 0.5*45=22.5, bag 0.5*30=15; the upgrade is mandatory despite its low score
    assert [r.action.action_id for r in ranked] == [
        "upgrade_first_class",
        "lounge_pass",
        "extra_legroom_seat",
        "extra_bag",
    ]
    assert ranked[1].priority == 35.0 and ranked[0].mandatory and not ranked[1].mandatory


def test_ties_are_broken_by_action_id_whatever_the_input_order() -> None:
    catalogue = Catalogue.load()
    a, b = catalogue.actions["extra_bag"], catalogue.actions["fast_track"]  # values 30 and 20
    forward = arbitrate([a, b], [0.2, 0.3], set(), {})  # 6.0 each
    backward = arbitrate([b, a], [0.3, 0.2], set(), {})
    assert (
        [r.action.action_id for r in forward] == [r.action.action_id for r in backward] == ["extra_bag", "fast_track"]
    )


def test_max_actions_cuts_the_ranking() -> None:
    catalogue = Catalogue.load()
    actions = list(catalogue.actions.values())
    assert len(arbitrate(actions, [0.1] * len(actions), set(), {}, max_actions=3)) == 3
