"""The unconflicted state map and the conflicted state set."""

from __future__ import annotations

from dagcore.protocol.state_res.unconflicted import separate

A = ("m.room.topic", "")
B = ("m.room.name", "")
C = ("m.room.member", "@c:x")


def test_a_key_with_the_same_event_in_every_state_set_is_unconflicted():
    unconflicted, conflicted = separate([{A: "$a", B: "$b1"}, {A: "$a", B: "$b2"}])
    assert unconflicted == {A: "$a"}
    assert conflicted == {B: {"$b1", "$b2"}}


def test_a_key_missing_from_one_state_set_is_conflicted_even_if_the_others_agree():
    unconflicted, conflicted = separate([{A: "$a", C: "$c"}, {A: "$a", C: "$c"}, {A: "$a"}])
    assert unconflicted == {A: "$a"}
    assert conflicted == {C: {"$c"}}


def test_three_state_sets_conflict_on_any_disagreement():
    unconflicted, conflicted = separate([{A: "$a", B: "$b"}, {A: "$a", B: "$b"}, {A: "$a2", B: "$b"}])
    assert unconflicted == {B: "$b"}
    assert conflicted == {A: {"$a", "$a2"}}


def test_one_state_set_or_none_has_no_conflicts():
    assert separate([{A: "$a"}]) == ({A: "$a"}, {})
    assert separate([]) == ({}, {})
