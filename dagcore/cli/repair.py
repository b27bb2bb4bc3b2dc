"""``manage.py dag repair ROOM [--apply] [--from-server NAME] [--json]`` and
``manage.py dag repair --undo ID``.

Without ``--apply``: the plan (a dry run; nothing changes). With it: the repair
(``dagcore.actions.dag_repair``): missing events fetched through the receiving pipeline,
then one transaction under the room's write lock, an undo record and an audit entry; the
room is checked again afterwards. Exit code: 0 done (or nothing to do), 1 the room could not
be fully repaired, 2 bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from dagcore.actions.audit import Actor
from dagcore.actions.dag_check import RoomUnknown, check_room_dag
from dagcore.actions.dag_repair import (
    RepairAlreadyUndone,
    RepairPlan,
    RepairUnknown,
    do_apply_repair,
    do_undo_repair,
    plan_repair,
)
from dagcore.cli.common import fail, main_wrapper, print_json

SHOWN = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("room", metavar="ROOM", nargs="?", help="the room ID")
    parser.add_argument("--apply", action="store_true", help="make the changes (default: print the plan)")
    parser.add_argument("--from-server", metavar="NAME", help="fetch missing events from this server")
    parser.add_argument("--undo", metavar="ID", type=int, help="put back what repair ID replaced")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _repair(args: argparse.Namespace) -> int:
    if args.undo is not None:
        if args.room or args.apply:
            fail("--undo takes no room and no --apply")
        try:
            result = do_undo_repair(args.undo, actor=Actor.cli())
        except RepairUnknown:
            fail(f"no repair {args.undo}")
        except RepairAlreadyUndone:
            fail(f"repair {args.undo} was undone already")
        if args.json:
            print_json(result)
        else:
            print(f"repair {args.undo} of {result['room_id']} undone ({result['events']} event(s) put back)")
        return 0
    if not args.room:
        fail("give a room ID (or --undo ID)")
    try:
        if not args.apply:
            plan = plan_repair(args.room, from_server=args.from_server, actor=Actor.cli())
            if args.json:
                print_json({"dry_run": True, "plan": plan.as_dict()})
            else:
                print(render_plan(plan, dry_run=True))
            return 1 if plan.unfixable else 0
        outcome = do_apply_repair(args.room, actor=Actor.cli(), from_server=args.from_server)
    except RoomUnknown:
        fail(f"no room {args.room!r} on this server")
    after = check_room_dag(args.room)
    if args.json:
        out: dict[str, Any] = {"dry_run": False, **outcome.as_dict(), "check_after": after.as_dict()}
        print_json(out)
    else:
        print(render_plan(outcome.plan, dry_run=False))
        print(f"fetched {outcome.fetched} event(s) from other servers")
        if outcome.dummy_event_id:
            print(f"sent {outcome.dummy_event_id} to merge the forward extremities")
        if outcome.repair_id is not None:
            print(f"undo record: {outcome.repair_id} (manage.py dag repair --undo {outcome.repair_id})")
        print(
            f"check after the repair: {after.status.upper()}"
            + "".join(f"\n  {f.code}: {f.message}" for f in after.findings)
        )
    return 1 if outcome.plan.unfixable or after.status == "fail" else 0


def _ids(ids: list[str]) -> str:
    more = len(ids) - SHOWN
    return ", ".join(ids[:SHOWN]) + (f" (+{more} more)" if more > 0 else "")


def render_plan(plan: RepairPlan, *, dry_run: bool) -> str:
    verb = "would" if dry_run else "did"
    lines = [f"{'Plan (dry run: nothing changed)' if dry_run else 'Repair'} of {plan.room_id}"]
    lines.append("  problems found: " + (", ".join(plan.problems) if plan.problems else "none"))
    if plan.fetch_auth or plan.fetch_prev:
        lines.append(f"  {verb} fetch from {', '.join(plan.servers) or '(no server)'}:")
        if plan.fetch_auth:
            lines.append(f"    auth events: {_ids(plan.fetch_auth)}")
        if plan.fetch_prev:
            lines.append(f"    prev events: {_ids(plan.fetch_prev)}")
    if plan.gaps:
        lines.append(
            f"  {verb} record {len(plan.gaps)} gap(s) for backfill (events not fetched): {_ids(sorted(plan.gaps))}"
        )
    for event_id, reason in plan.rejections.items():
        lines.append(f"  {verb} reject {event_id}: {reason}")
    if plan.state_changes:
        lines.append(f"  {verb} recompute the state of {len(plan.state_changes)} event(s):")
        for c in plan.state_changes[:SHOWN]:
            lines.append(
                f"    {c['event_id']}: before {c['before']}, after {c['after']} (stored groups {c['stored_groups']})"
            )
        if len(plan.state_changes) > SHOWN:
            lines.append(f"    (+{len(plan.state_changes) - SHOWN} more)")
    if plan.extremities_before != plan.extremities_after:
        lines.append(f"  {verb} set the forward extremities from [{_ids(plan.extremities_before)}]")
        lines.append(f"    to [{_ids(plan.extremities_after)}]")
    if plan.current_state_changes or plan.current_group_changes:
        lines.append(f"  {verb} change current state in {len(plan.current_state_changes)} key(s):")
        for c in plan.current_state_changes[:SHOWN]:
            lines.append(f"    ({c['type']}, {c['state_key']!r}): {c['from']} -> {c['to']}")
    if plan.membership_changes:
        lines.append(f"  {verb} rewrite {len(plan.membership_changes)} membership row(s):")
        for c in plan.membership_changes[:SHOWN]:
            lines.append(f"    {c['user_id']}: {c['from']} -> {c['to']}")
    for server, (a, b) in plan.room_server_changes.items():
        lines.append(f"  {verb} set {server}'s joined count {a} -> {b}")
    if plan.dummy_event and plan.dummy_event_sender:
        lines.append(
            f"  {verb} send an org.matrix.dummy_event as {plan.dummy_event_sender} to merge "
            f"{len(plan.extremities_after)} forward extremities"
        )
    if not plan.changes_anything:
        lines.append("  nothing to change")
    for text in plan.unfixable:
        lines.append(f"  NOT FIXABLE: {text}")
    if dry_run and plan.changes_anything:
        lines.append("Run again with --apply to make these changes.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return main_wrapper(_repair, args)
