"""The push rule core (``dagcore.protocol.push_rules``): default rules, globs, conditions, evaluation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dagcore.protocol import push_rules as pr

ALICE = "@alice:example.org"


def ctx(**kw: Any) -> pr.EvalContext:
    base: dict[str, Any] = {"user_id": ALICE, "room_member_count": 3, "display_name": "Alice Smith"}
    base.update(kw)
    return pr.EvalContext(**base)


def message(body: str, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@bob:example.org",
        "room_id": "!room:example.org",
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def evaluate(event: dict[str, Any], ruleset: dict[str, Any] | None = None, **kw: Any) -> pr.PushResult:
    return pr.evaluate(ruleset or pr.build_ruleset(ALICE, {}), event, ctx(**kw))


# --------------------------------------------------------------------------- default rules


def test_default_ruleset_follows_the_spec_order() -> None:
    rules = pr.build_ruleset(ALICE, {})
    assert [r["rule_id"] for r in rules["override"]] == [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.contains_display_name",
        ".m.rule.is_room_mention",
        ".m.rule.roomnotif",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ]
    assert [r["rule_id"] for r in rules["underride"]] == [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ]
    assert rules["content"][0]["pattern"] == "alice"
    assert rules["override"][0]["enabled"] is False
    assert all(r["default"] for kind in pr.KINDS for r in rules[kind])


def test_user_rules_come_before_defaults_except_the_master_rule() -> None:
    mine = {"override": [{"rule_id": "mine", "enabled": True, "actions": [], "conditions": []}]}
    ids = [r["rule_id"] for r in pr.build_ruleset(ALICE, mine)["override"]]
    assert ids[:3] == [".m.rule.master", "mine", ".m.rule.suppress_notices"]


def test_changes_to_default_rules_apply() -> None:
    changes = {("underride", ".m.rule.message"): pr.DefaultRuleChange(enabled=False)}
    rules = pr.build_ruleset(ALICE, {}, changes)
    assert not evaluate(message("hi"), rules).notify
    assert evaluate(message("hi")).notify


# --------------------------------------------------------------------------- evaluation


def test_a_plain_message_notifies_without_highlight() -> None:
    result = evaluate(message("hello"))
    assert result.notify and not result.highlight and result.rule_id == ".m.rule.message"


def test_one_to_one_rooms_notify_with_sound() -> None:
    result = evaluate(message("hello"), room_member_count=2)
    assert result.rule_id == ".m.rule.room_one_to_one"
    assert {"set_tweak": "sound", "value": "default"} in result.actions


def test_mentions_highlight() -> None:
    mention = message("hey", **{"m.mentions": {"user_ids": [ALICE]}})
    assert evaluate(mention).highlight
    other = message("hey", **{"m.mentions": {"user_ids": ["@carol:example.org"]}})
    assert not evaluate(other).highlight


def test_legacy_display_name_and_user_name_rules_skip_events_with_m_mentions() -> None:
    assert evaluate(message("is Alice Smith around?")).highlight
    assert evaluate(message("ping alice please")).highlight
    assert not evaluate(message("is Alice Smith around?", **{"m.mentions": {}})).highlight
    assert not evaluate(message("malice is not a word boundary match")).highlight


def test_room_mentions_need_the_senders_power() -> None:
    event = message("everyone!", **{"m.mentions": {"room": True}})
    assert evaluate(event, sender_power_level=50).highlight
    assert not evaluate(event, sender_power_level=0).highlight
    assert evaluate(event, sender_power_level=10, notification_levels={"room": 10}).highlight
    legacy = message("@room hello")
    assert evaluate(legacy, sender_power_level=100).highlight
    assert not evaluate(legacy, sender_power_level=0).highlight


def test_notices_edits_reactions_and_member_events_do_not_notify() -> None:
    assert not evaluate(message("bot", msgtype="m.notice")).notify
    edit = message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    assert not evaluate(edit).notify
    reaction = {"type": "m.reaction", "sender": "@bob:example.org", "content": {}}
    assert not evaluate(reaction).notify
    join = {
        "type": "m.room.member",
        "state_key": "@bob:example.org",
        "sender": "@bob:example.org",
        "content": {"membership": "join"},
    }
    assert not evaluate(join).notify


def test_invites_for_me_notify_but_not_invites_for_others() -> None:
    invite = {
        "type": "m.room.member",
        "state_key": ALICE,
        "sender": "@bob:example.org",
        "content": {"membership": "invite"},
    }
    assert evaluate(invite).notify
    other = dict(invite, state_key="@carol:example.org")
    assert not evaluate(other).notify


def test_tombstone_needs_an_empty_state_key() -> None:
    tomb = {"type": "m.room.tombstone", "state_key": "", "sender": "@bob:example.org", "content": {}}
    assert evaluate(tomb).highlight
    assert not evaluate(dict(tomb, state_key="x")).notify


def test_master_rule_silences_everything_when_enabled() -> None:
    changes = {("override", ".m.rule.master"): pr.DefaultRuleChange(enabled=True)}
    rules = pr.build_ruleset(ALICE, {}, changes)
    assert not evaluate(message("hi", **{"m.mentions": {"user_ids": [ALICE]}}), rules).notify


def test_room_and_sender_rules_match_by_rule_id() -> None:
    rules = pr.build_ruleset(
        ALICE,
        {
            "room": [{"rule_id": "!room:example.org", "enabled": True, "actions": []}],
            "sender": [
                {
                    "rule_id": "@carol:example.org",
                    "enabled": True,
                    "actions": ["notify", {"set_tweak": "highlight"}],
                }
            ],
        },
    )
    assert not evaluate(message("muted room"), rules).notify
    from_carol = dict(message("x"), sender="@carol:example.org", room_id="!other:example.org")
    assert evaluate(from_carol, rules).highlight


def test_disabled_and_unknown_condition_rules_never_match() -> None:
    rules = pr.build_ruleset(
        ALICE,
        {
            "override": [
                {
                    "rule_id": "off",
                    "enabled": False,
                    "actions": ["notify", {"set_tweak": "highlight"}],
                    "conditions": [],
                },
                {
                    "rule_id": "future",
                    "enabled": True,
                    "actions": ["notify", {"set_tweak": "highlight"}],
                    "conditions": [{"kind": "org.example.new_kind"}],
                },
            ]
        },
    )
    assert not evaluate(message("hello"), rules).highlight


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("lunc?*", "Lunch plans", True),
        ("lunc?*", "LUNCH", True),
        ("lunc?*", " lunch", False),
        ("lunc?*", "lunc", False),
        ("*", "", True),
        ("", "", True),
        ("", "x", False),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXcYYb", False),
        ("*.notice", "m.notice", True),
    ],
)
def test_event_match_globs_the_whole_value(pattern: str, value: str, expected: bool) -> None:
    assert pr.glob_matches(pattern, value) is expected


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        ("ex*ple", "An example event.", True),
        ("ex*ple", "exple", True),
        ("ex*ple", "An exciting triple-whammy", True),
        ("cake", "cupcake", False),
        ("cake", "cake!", True),
        ("cake*lie", "the cake is a lie", True),
        ("cake*lie", "the cake is a lier", False),
        ("@room", "hi @room", True),
    ],
)
def test_body_matches_substrings_at_word_boundaries(pattern: str, body: str, expected: bool) -> None:
    assert pr.glob_matches(pattern, body, word_boundary=True) is expected


def test_event_match_needs_a_string_value() -> None:
    condition = {"kind": "event_match", "key": "content.topic", "pattern": "*"}
    assert pr._condition_holds(condition, {"content": {"topic": "x"}}, ctx())
    assert not pr._condition_holds(condition, {"content": {"topic": None}}, ctx())
    assert not pr._condition_holds(condition, {"content": {}}, ctx())


def test_property_is_and_contains_compare_types_exactly() -> None:
    event = {"content": {"m.federate": True, "n": 1, "alt_aliases": ["#a:x", 1, True]}}
    is_true = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
    assert pr._condition_holds(is_true, event, ctx())
    assert not pr._condition_holds(dict(is_true, value="true"), event, ctx())
    one = {"kind": "event_property_is", "key": "content.n", "value": True}
    assert not pr._condition_holds(one, event, ctx())  # 1 is not true
    contains = {"kind": "event_property_contains", "key": "content.alt_aliases", "value": "#a:x"}
    assert pr._condition_holds(contains, event, ctx())
    assert not pr._condition_holds(dict(contains, value=":x"), event, ctx())


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        ("2", 2, True),
        ("==2", 3, False),
        ("<10", 9, True),
        (">=5", 5, True),
        (">5", 5, False),
        ("<=1", 2, False),
    ],
)
def test_room_member_count(spec: str, count: int, expected: bool) -> None:
    condition = {"kind": "room_member_count", "is": spec}
    assert pr._condition_holds(condition, {}, ctx(room_member_count=count)) is expected


def test_dot_paths_support_escapes() -> None:
    assert pr.split_path("content.m\\.relates_to.rel_type") == ("content", "m.relates_to", "rel_type")
    assert pr.split_path("a\\\\b.c") == ("a\\b", "c")


# --------------------------------------------------------------------------- validation and bounds


def test_rule_bodies_are_validated() -> None:
    assert (
        pr.validate_rule_body("content", "cake", {"pattern": "cake", "actions": ["notify"]})["pattern"]
        == "cake"
    )
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("content", "cake", {"actions": ["notify"]}),
        ("override", ".m.rule.x", {"actions": []}),
        ("override", "a/b", {"actions": []}),
        ("override", "x", {"actions": "notify"}),
        ("override", "x", {"actions": ["explode"]}),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]}),
        ("override", "x", {"actions": [], "conditions": [{"kind": "room_member_count", "is": "lots"}]}),
        ("room", "not-a-room", {"actions": []}),
        ("nonsense", "x", {"actions": []}),
    ]
    for kind, rule_id, body in cases:
        with pytest.raises(pr.PushRuleError):
            pr.validate_rule_body(kind, rule_id, body)
    # dont_notify and coalesce are accepted as no-ops (spec note).
    assert pr.validate_actions(["dont_notify", "coalesce"]) == ["dont_notify", "coalesce"]


def test_hostile_globs_stay_fast() -> None:
    pattern = "*a" * 40 + "*b"
    body = "a" * 60000
    started = time.monotonic()
    assert not pr.glob_matches(pattern, body, word_boundary=True)
    assert not pr.glob_matches(pattern, body)
    assert not pr.glob_matches("a" * 2000, "a" * 2000)  # over the pattern length cap: never matches
    assert time.monotonic() - started < 1.0


def test_rulesets_share_the_default_rules_that_do_not_name_their_user() -> None:
    """Memory (issue #12): a ruleset of defaults was ~14 KB per user; only the rules naming
    the user, or the user changed, are their own."""
    alice = pr.build_ruleset("@alice:x", {})
    bob = pr.build_ruleset("@bob:x", {})
    notices = (pr.find_rule(alice, "override", ".m.rule.suppress_notices"),
               pr.find_rule(bob, "override", ".m.rule.suppress_notices"))  # fmt: skip
    assert notices[0] is notices[1]
    names = (
        pr.find_rule(alice, "content", ".m.rule.contains_user_name"),
        pr.find_rule(bob, "content", ".m.rule.contains_user_name"),
    )
    assert [n["pattern"] for n in names if n is not None] == ["alice", "bob"]
    mentions = [pr.find_rule(r, "override", ".m.rule.is_user_mention") for r in (alice, bob)]
    assert [m["conditions"][0]["value"] for m in mentions if m is not None] == ["@alice:x", "@bob:x"]
    changed = pr.build_ruleset(
        "@carol:x", {}, {("override", ".m.rule.suppress_notices"): pr.DefaultRuleChange(enabled=False)}
    )
    carol_notices = pr.find_rule(changed, "override", ".m.rule.suppress_notices")
    assert carol_notices is not None and carol_notices["enabled"] is False
    assert notices[0] is not None and notices[0]["enabled"] is True
