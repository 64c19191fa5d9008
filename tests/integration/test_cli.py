"""The `nba` command line against the real service."""

from __future__ import annotations

import json

from decision.cli import main


def test_decide_prints_the_decision_as_json(service, capsys):
    code = main(
        [
            "decide",
            "--target",
            service.grpc.target,
            "--customer",
            "demo-ife-gold",
            "--touchpoint",
            "checkin_agent",
            "--context",
            "flight=AZ9001",
            "--json",
        ]
    )
    assert code == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["actions"][0]["action_id"] == "upgrade_first_class"
    assert decision["actions"][0]["mandatory"] is True
    assert decision["explanation"]["delivery"] == "agent"


def test_decide_names_a_bad_touchpoint(service, capsys):
    code = main(["decide", "--target", service.grpc.target, "--customer", "demo-italian", "--touchpoint", "FAX"])
    assert code == 2
    assert "touchpoint: must be one of CHECKIN_KIOSK" in capsys.readouterr().err


def test_outcome_is_recorded_from_the_command_line(service, capsys):
    main(["decide", "--target", service.grpc.target, "--customer", "demo-italian", "--touchpoint", "WEB", "--json"])
    decision = json.loads(capsys.readouterr().out)
    code = main(
        [
            "outcome",
            "--target",
            service.grpc.target,
            "--decision-id",
            decision["decision_id"],
            "--action",
            decision["actions"][0]["action_id"],
            "--outcome",
            "IGNORED",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["duplicate"] is False
