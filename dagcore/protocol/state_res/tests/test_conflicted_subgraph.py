"""The conflicted state subgraph (v2.1): events on auth paths between conflicted events."""

from __future__ import annotations

from dagcore.protocol.state_res.conflicted_subgraph import conflicted_subgraph
from dagcore.protocol.state_res.store import EventFetcher, InMemoryStateResStore

from .dag import event_map, make_event


def _fetcher(*events):
    return EventFetcher(InMemoryStateResStore(event_map(*events)))


def test_events_between_two_conflicted_events_are_in_the_subgraph():
    #   root <- old <- mid <- new        old and new conflicted; root is below both
    fetcher = _fetcher(
        make_event("$root"),
        make_event("$old", auth=("$root",)),
        make_event("$mid", auth=("$old", "$root")),
        make_event("$new", auth=("$mid", "$root")),
    )
    assert conflicted_subgraph({"$old", "$new"}, fetcher) == {"$old", "$mid", "$new"}


def test_shared_ancestors_and_side_branches_are_not_in_the_subgraph():
    #   root <- a <- x <- b     a, b conflicted;  y is an ancestor of b only; z of a only
    fetcher = _fetcher(
        make_event("$root"),
        make_event("$z", auth=("$root",)),
        make_event("$a", auth=("$z",)),
        make_event("$x", auth=("$a",)),
        make_event("$y", auth=("$root",)),
        make_event("$b", auth=("$x", "$y")),
    )
    assert conflicted_subgraph({"$a", "$b"}, fetcher) == {"$a", "$x", "$b"}


def test_every_path_counts_not_just_one():
    #   a <- p <- b  and  a <- q <- r <- b
    fetcher = _fetcher(
        make_event("$a"),
        make_event("$p", auth=("$a",)),
        make_event("$q", auth=("$a",)),
        make_event("$r", auth=("$q",)),
        make_event("$b", auth=("$p", "$r")),
    )
    assert conflicted_subgraph({"$a", "$b"}, fetcher) == {"$a", "$p", "$q", "$r", "$b"}


def test_unrelated_conflicted_events_make_a_subgraph_of_just_themselves():
    fetcher = _fetcher(
        make_event("$root"), make_event("$a", auth=("$root",)), make_event("$b", auth=("$root",))
    )
    assert conflicted_subgraph({"$a", "$b"}, fetcher) == {"$a", "$b"}


def test_long_chains_between_conflicted_events_are_walked_without_recursion():
    n = 5_000
    events = [make_event("$e0")] + [make_event(f"$e{i}", auth=(f"$e{i - 1}",)) for i in range(1, n)]
    fetcher = _fetcher(*events)
    assert len(conflicted_subgraph({"$e10", f"$e{n - 1}"}, fetcher)) == n - 10
