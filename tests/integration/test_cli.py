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


def test_outcome_is_recorded_from_the_command_line(service, fresh_contact_history, capsys):
    main(["decide", "--target", service.grpc.target, "--customer", "demo-italian", "--touchpoint", "WEB", "--json"])
    decision = json.loads(capsys.readouterr().out)
    assert decision.get("actions"), decision
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
    said = capsys.readouterr().out
    action, decision_id = decision["actions"][0]["action_id"], decision["decision_id"]
    assert said.startswith(f"recorded IGNORED for {action} of decision {decision_id} (outcome "), said
    assert "counted in the customer's contact history" in said and "seat" not in said
    again = ["outcome", "--target", service.grpc.target, "--decision-id", decision_id, "--action", action]
    assert main([*again, "--outcome", "IGNORED", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["duplicate"] is True
    assert main([*again, "--outcome", "IGNORED"]) == 0
    assert "this call changed nothing" in capsys.readouterr().out


def test_load_then_report_an_incident_then_decide(service, redis_server, tmp_path, capsys):
    csv = tmp_path / "profiles.csv"
    csv.write_text("customer_id,domain,tier,predicted_ltv,last_name,title\ncli-gold-1,airline,gold,20000,Bianchi,Ms\n")
    assert main(["load", str(csv), "--redis-url", redis_server.url]) == 0
    assert "loaded 1 profiles" in capsys.readouterr().out

    incident = ["--customer", "cli-gold-1", "--type", "ife_broken", "--flight", "AZ604", "--long-haul"]
    assert main(["incident", "--redis-url", redis_server.url, *incident]) == 0
    assert "incident ife_broken recorded for cli-gold-1" in capsys.readouterr().out

    decide = ["--customer", "cli-gold-1", "--touchpoint", "CHECKIN_KIOSK", "--context", "flight=AZ9100", "--json"]
    assert main(["decide", "--target", service.grpc.target, *decide]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["actions"][0]["action_id"] == "upgrade_first_class"
    assert "AZ604" in decision["follow_ups"][0]["text"]


def test_incident_refuses_an_unknown_type(redis_server, capsys):
    code = main(["incident", "--redis-url", redis_server.url, "--customer", "c1", "--type", "volcano"])
    assert code == 2
    assert "--type: must be one of none, ife_broken" in capsys.readouterr().err


def test_rules_explain_reads_the_customer_from_redis_and_says_why_each_rule_did_or_did_not_match(
    loaded_redis, capsys, monkeypatch, tmp_path
):
    monkeypatch.delenv("NBA_REDIS_URL", raising=False)
    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path))  # no service running there
    args = ["rules", "explain", "--customer", "demo-ife-gold", "--touchpoint", "CHECKIN_KIOSK"]
    assert main([*args, "--redis-url", loaded_redis.url, "--context", "flight=AZ610", "cabin=economy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rules ") and "demo-ife-gold at CHECKIN_KIOSK, context flight=AZ610 cabin=economy" in out
    assert "MATCH service_recovery_ife (service_recovery.yaml, priority 100)" in out
    assert "predicted_ltv = " in out and "is >= 5000" in out
    assert "no    no_credit_in_arrears (eligibility.yaml, priority 0)\n        in_arrears = False is not = True" in out
    # Without a flight there is nothing to upgrade, and the explanation says which condition did it.
    assert main([*args, "--redis-url", loaded_redis.url]) == 0
    assert "MATCH upgrade_needs_economy_flight" in capsys.readouterr().out
    assert main(args) == 2
    assert "--redis-url: needed, as NBA_REDIS_URL is empty and no service is running" in capsys.readouterr().err
