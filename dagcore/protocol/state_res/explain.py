"""Human-readable account of one resolution, for operators chasing a state reset.

Not a spec step: :func:`~dagcore.protocol.state_res.resolve_state` feeds a
:class:`Explanation` as it goes (only when asked to explain, so a normal resolution pays
nothing), and it says, per conflicted key, where each candidate sat in which ordering,
what the auth rules said about it, and which event won.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dagcore.protocol.events import Event, StateKey

POWER_PHASE = "power ordering"
MAINLINE_PHASE = "mainline ordering"


@dataclass(slots=True)
class _Step:
    """Where one event of the full conflicted set went through the algorithm."""

    phase: str  # POWER_PHASE (steps 1-2) or MAINLINE_PHASE (steps 3-4)
    position: int  # 1-based position in that ordering
    total: int
    detail: str  # the sort key, spelled out
    rejection: str | None = None
    applied: bool = False


@dataclass
class Explanation:
    emit: Callable[[str], None]
    steps: dict[str, _Step] = field(default_factory=dict)

    def line(self, text: str) -> None:
        self.emit(text)

    def ordered(self, phase: str, event_ids: list[str], detail: Callable[[str], str]) -> None:
        total = len(event_ids)
        for i, eid in enumerate(event_ids, start=1):
            self.steps[eid] = _Step(phase, i, total, detail(eid))

    def outcome(self, event: Event, error: Exception | None) -> None:
        step = self.steps.get(event.event_id)
        if step is None:
            return
        if error is None:
            step.applied = True
        else:
            step.rejection = str(error) or type(error).__name__

    def summarise(
        self,
        *,
        conflicted: Mapping[StateKey, set[str]],
        unconflicted: Mapping[StateKey, str],
        partial_state: Mapping[StateKey, str],
        result: Mapping[StateKey, str],
        events: Mapping[str, Event],
    ) -> None:
        """Per conflicted key: the candidates in processing order and the outcome."""
        by_key: dict[StateKey, list[str]] = {}
        for eid in self.steps:
            event = events.get(eid)
            if event is not None and event.state_key is not None:
                by_key.setdefault((event.type, event.state_key), []).append(eid)

        overridden = [
            key
            for key in by_key
            if key in unconflicted and partial_state.get(key, unconflicted[key]) != unconflicted[key]
        ]
        if overridden:
            self.line(
                f"step 5: {len(overridden)} key(s) replayed from the auth history were reset to the "
                "unconflicted state map"
            )

        for key in sorted(conflicted):
            winner = result.get(key)
            self.line(f"{_key(key)} -> {winner or '(absent)'}")
            candidates = list(dict.fromkeys([*by_key.get(key, ()), *sorted(conflicted[key])]))
            candidates.sort(key=self._processing_order)
            applied = [eid for eid in candidates if eid in self.steps and self.steps[eid].applied]
            for eid in candidates:
                self.line(f"  {eid}: {self._describe(eid, winner, applied, events)}")
            if winner is None:
                self.line(
                    "  no candidate passed the auth checks, so the key is absent from the resolved state"
                )

    def _processing_order(self, eid: str) -> tuple[int, int, str]:
        step = self.steps.get(eid)
        if step is None:
            return (2, 0, eid)
        return (0 if step.phase == POWER_PHASE else 1, step.position, eid)

    def _describe(self, eid: str, winner: str | None, applied: list[str], events: Mapping[str, Event]) -> str:
        step = self.steps.get(eid)
        event = events.get(eid)
        sender = f" by {event.sender}" if event is not None else ""
        if step is None:
            return f"not replayed{sender} (missing from the store)"
        where = f"{step.phase} #{step.position}/{step.total}{sender} ({step.detail})"
        if step.rejection is not None:
            return f"{where}: rejected by the auth rules: {step.rejection}"
        if not step.applied:
            return f"{where}: not checked"
        if eid == winner:
            return f"{where}: passed the auth checks and was applied last -> resolved"
        later = applied[applied.index(eid) + 1 :]
        if later:
            return f"{where}: passed the auth checks, then replaced by {later[0]} (later in the ordering)"
        return f"{where}: passed the auth checks"


def _key(key: StateKey) -> str:
    return f"({key[0]}, {key[1]!r})"
