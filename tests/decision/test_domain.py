"""The domain's own parsing: a touchpoint name, read the same way by every reader."""

from __future__ import annotations

import pytest

from decision.domain import Touchpoint


@pytest.mark.parametrize("name", ["CHECKIN_KIOSK", "checkin_kiosk", " Checkin_Kiosk "])
def test_a_touchpoint_name_is_read_in_any_case(name: str) -> None:
    assert Touchpoint.named(name) is Touchpoint.CHECKIN_KIOSK


@pytest.mark.parametrize("name", ["KIOSK", "", None, 1])
def test_an_unknown_touchpoint_name_is_refused_naming_the_accepted_ones(name: object) -> None:
    with pytest.raises(ValueError, match=r"unknown touchpoint .*; accepted: CHECKIN_KIOSK, CHECKIN_AGENT, IVR"):
        Touchpoint.named(name)
