"""Push rules API and ``/notifications`` against a live server."""

from __future__ import annotations

from typing import Any

from tests.api.test_sync import sync
from tests.support.client import q

ALL = "/pushrules/"
GLOBAL = "/pushrules/global/"
RULE = "/pushrules/global/{kind}/{ruleId}"
ENABLED = "/pushrules/global/{kind}/{ruleId}/enabled"
ACTIONS = "/pushrules/global/{kind}/{ruleId}/actions"
NOTIFICATIONS = "/notifications"


def ids(rules: list[dict[str, Any]]) -> list[str]:
    return [r["rule_id"] for r in rules]


def test_new_user_gets_the_spec_default_rules(make_client) -> None:
    alice = make_client()
    body = alice.get("/pushrules/", spec=ALL).json
    rules = body["global"]
    assert ids(rules["override"])[0] == ".m.rule.master"
    assert ".m.rule.is_user_mention" in ids(rules["override"])
    assert ids(rules["underride"])[-1] == ".m.rule.encrypted"
    assert rules["content"][0]["pattern"] == alice.user_id[1:].split(":")[0]
    assert rules["room"] == [] and rules["sender"] == []
    assert alice.get("/pushrules/global/", spec=GLOBAL).json == rules
    # Without the trailing slash it is not the spec's path.
    alice.get("/pushrules", expect=404)


def test_add_get_order_and_delete_user_rules(make_client) -> None:
    alice = make_client()
    base = "/pushrules/global/content"
    alice.put(f"{base}/cake", {"pattern": "cake", "actions": ["notify"]}, spec=RULE)
    alice.put(f"{base}/pie", {"pattern": "pie", "actions": ["notify"]}, spec=RULE)
    alice.put(f"{base}/tart", {"pattern": "tart", "actions": ["notify"]}, params={"after": "cake"}, spec=RULE)
    alice.put(
        f"{base}/scone", {"pattern": "scone", "actions": ["notify"]}, params={"before": "pie"}, spec=RULE
    )
    content = alice.get("/pushrules/global/").json["content"]
    assert ids(content) == ["scone", "pie", "cake", "tart", ".m.rule.contains_user_name"]
    rule = alice.get(f"{base}/cake", spec=RULE).json
    assert rule == {
        "rule_id": "cake",
        "default": False,
        "enabled": True,
        "pattern": "cake",
        "actions": ["notify"],
    }
    # Updating keeps the place.
    alice.put(f"{base}/pie", {"pattern": "pies", "actions": []}, spec=RULE)
    assert ids(alice.get("/pushrules/global/").json["content"])[:2] == ["scone", "pie"]
    alice.delete(f"{base}/cake", spec=RULE)
    r = alice.get(f"{base}/cake", expect=404, spec=RULE)
    assert r.json["errcode"] == "M_NOT_FOUND"
    r = alice.delete(f"{base}/cake", expect=404, spec=RULE)
    assert r.json["errcode"] == "M_NOT_FOUND"


def test_enabled_and_actions_of_default_and_user_rules(make_client) -> None:
    alice = make_client()
    path = "/pushrules/global/override/.m.rule.master"
    assert alice.get(f"{path}/enabled", spec=ENABLED).json == {"enabled": False}
    alice.put(f"{path}/enabled", {"enabled": True}, spec=ENABLED)
    assert alice.get(f"{path}/enabled", spec=ENABLED).json == {"enabled": True}
    msg = "/pushrules/global/underride/.m.rule.message"
    alice.put(
        f"{msg}/actions", {"actions": ["notify", {"set_tweak": "sound", "value": "ding"}]}, spec=ACTIONS
    )
    assert alice.get(f"{msg}/actions", spec=ACTIONS).json["actions"][1]["value"] == "ding"
    rule = alice.get(msg, spec=RULE).json
    assert rule["default"] is True and rule["actions"][1]["value"] == "ding"
    r = alice.get("/pushrules/global/override/nope/enabled", expect=404, spec=ENABLED)
    assert r.json["errcode"] == "M_NOT_FOUND"
    r = alice.put("/pushrules/global/override/nope/actions", {"actions": []}, expect=404, spec=ACTIONS)
    assert r.json["errcode"] == "M_NOT_FOUND"


def test_invalid_rules_are_refused(make_client) -> None:
    alice = make_client()
    r = alice.put("/pushrules/global/override/.m.rule.mine", {"actions": []}, expect=400, spec=RULE)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put("/pushrules/global/content/x", {"actions": ["notify"]}, expect=400, spec=RULE)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put(
        "/pushrules/global/override/x",
        {"actions": ["notify"]},
        params={"before": "missing"},
        expect=400,
        spec=RULE,
    )
    assert r.json["errcode"] == "M_UNKNOWN"
    r = alice.put("/pushrules/global/nonsense/x", {"actions": []}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.delete("/pushrules/global/underride/.m.rule.message", expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
    r = alice.put("/pushrules/global/override/.m.rule.master/enabled", {"enabled": "yes"}, expect=400)
    assert r.json["errcode"] == "M_BAD_JSON"
    alice.put("/pushrules/global/override/x", {"actions": ["notify"], "conditions": []}, spec=RULE)


def test_rule_changes_reach_sync_as_push_rules_account_data(make_client) -> None:
    alice = make_client()
    first = sync(alice)
    alice.put("/pushrules/global/sender/@spam:localhost", {"actions": []}, spec=RULE)
    body = sync(alice, first["next_batch"])
    rules = {e["type"]: e["content"] for e in body["account_data"]["events"]}["m.push_rules"]
    assert ids(rules["global"]["sender"]) == ["@spam:localhost"]


def test_room_rule_mutes_a_room_for_unread_counts(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.put(f"/pushrules/global/room/{q(room)}", {"actions": []}, spec=RULE)
    first = sync(alice)
    bob.send(room, "muted")
    body = sync(alice, first["next_batch"])
    assert body["rooms"]["join"][room]["unread_notifications"]["notification_count"] == 0


def test_notifications_list_what_notified_with_read_flags(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    first_event = bob.send(room, "plain")
    bob.send(room, content={"msgtype": "m.notice", "body": "notice: not listed"})
    bob.send(room, content={"msgtype": "m.text", "body": "ping", "m.mentions": {"user_ids": [alice.user_id]}})
    alice.send(room, "own messages never notify")
    alice.post(f"/rooms/{q(room)}/receipt/m.read/{q(first_event)}", {})
    body = alice.get("/notifications", spec=NOTIFICATIONS).json
    listed = [(n["event"]["content"]["body"], n["read"]) for n in body["notifications"]]
    assert listed == [("ping", False), ("plain", True)]
    assert all(
        n["room_id"] == room and n["ts"] > 0 and "notify" in n["actions"] for n in body["notifications"]
    )
    only = alice.get("/notifications", params={"only": "highlight"}, spec=NOTIFICATIONS).json
    assert [n["event"]["content"]["body"] for n in only["notifications"]] == ["ping"]


def test_notifications_paginate_with_next_token(make_client) -> None:
    alice, bob = make_client(), make_client()
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    for i in range(5):
        bob.send(room, f"n{i}")
    page = alice.get("/notifications", params={"limit": 2}, spec=NOTIFICATIONS).json
    got = [n["event"]["content"]["body"] for n in page["notifications"]]
    while "next_token" in page:
        page = alice.get(
            "/notifications", params={"limit": 2, "from": page["next_token"]}, spec=NOTIFICATIONS
        ).json
        got += [n["event"]["content"]["body"] for n in page["notifications"]]
    assert got == ["n4", "n3", "n2", "n1", "n0"]
    r = alice.get("/notifications", params={"from": "nonsense"}, expect=400)
    assert r.json["errcode"] == "M_INVALID_PARAM"
