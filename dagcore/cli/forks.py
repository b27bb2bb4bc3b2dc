"""``manage.py dag forks ROOM [--explain] [--save FILE] [--json]``: a room's forward
extremities and the resolution of their states.

``--explain`` prints the account ``manage.py dag resolve FILE --explain`` gives (per conflicted
key, where each candidate sat and why it won or lost); ``--save FILE`` writes that input file,
so the resolution can be reproduced offline. Exit code 0, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json

from dagcore.actions.dag_check import RoomUnknown
from dagcore.actions.dag_forks import ForksReport, get_room_forks
from dagcore.cli.common import fail, main_wrapper, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("room", metavar="ROOM", help="the room ID")
    parser.add_argument("--explain", action="store_true", help="explain the resolution, key by key")
    parser.add_argument("--save", metavar="FILE", help="write the `dag resolve` input file there")
    parser.add_argument("--json", action="store_true", help="print one JSON object (with the input file)")


def _forks(args: argparse.Namespace) -> int:
    try:
        report = get_room_forks(args.room, explain=args.explain or args.json)
    except RoomUnknown:
        fail(f"no room {args.room!r} on this server")
    if args.save:
        try:
            with open(args.save, "w", encoding="utf-8") as fh:
                json.dump(report.resolve_input, fh, ensure_ascii=False, sort_keys=True, indent=1)
        except OSError as exc:
            fail(f"cannot write {args.save}: {exc.strerror}")
    if args.json:
        print_json(report.as_dict())
    else:
        print(render_forks(report, explain=args.explain, saved=args.save))
    return 0


def render_forks(report: ForksReport, *, explain: bool, saved: str | None) -> str:
    count = len(report.extremities)
    lines = [f"{report.room_id} (room version {report.room_version}): {count} forward extremit{'y' if count == 1 else 'ies'}"
             + ("" if report.forked else " (no fork)")]  # fmt: skip
    for ex in report.extremities:
        what = f"{ex['type']}" + (f" [{ex['state_key']}]" if ex["state_key"] is not None else "")
        lines.append(
            f"  {ex['event_id']}  depth {ex['depth']}  {what} by {ex['sender']}  (state group {ex['state_group']})"
        )
    lines.append(f"  {len(report.resolve_input['state_sets'])} distinct state(s) to resolve")
    if report.error:
        lines.append(f"  resolution failed: {report.error}")
    if explain and report.explanation:
        lines.append("Resolution (as `manage.py dag resolve FILE --explain` prints it):")
        lines.extend("  " + line for line in report.explanation)
    diffs = report.differences()
    if not report.error:
        if diffs:
            lines.append(f"The resolved state differs from the room's current state in {len(diffs)} key(s):")
            for d in diffs:
                lines.append(
                    f"  ({d['type']}, {d['state_key']!r}): current {d['current']}, resolved {d['resolved']}"
                )
            lines.append("  (manage.py dag check / dag repair ROOM)")
        else:
            lines.append("The resolved state is the room's current state.")
    if saved:
        lines.append(f"Wrote the resolve input to {saved}: manage.py dag resolve {saved} --explain")
    else:
        lines.append("Save the resolve input with --save FILE, then: manage.py dag resolve FILE --explain")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return main_wrapper(_forks, args)
