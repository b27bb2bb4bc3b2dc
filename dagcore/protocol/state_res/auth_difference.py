"""The auth difference of the state sets.

Spec: https://spec.matrix.org/v1.19/rooms/v2/#definitions ("Auth difference"): with
``C_i`` the union of the auth chains of the events in state set *i*, the auth difference
is ``union(C_i) - intersection(C_i)``. Like Synapse, we count the state set's own events as part of
``C_i`` (see :meth:`~.store.StateResStore.get_auth_chain_difference` for why).

Walking ten thousand member events' chains on every resolution is what makes naive state
resolution slow, so the computation belongs to the store: the DB store answers it from
its materialised auth-chain index and :class:`~.store.InMemoryStateResStore` from
memoised chains. This step only shapes the question.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagcore.protocol.events import StateMap
from dagcore.protocol.state_res.store import StateResStore


def auth_difference(state_sets: Sequence[StateMap], store: StateResStore) -> set[str]:
    """Event IDs in the auth chain of some but not all of the state sets."""
    if len(state_sets) < 2:
        return set()
    return store.get_auth_chain_difference([set(state_set.values()) for state_set in state_sets])
