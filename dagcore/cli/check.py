"""``manage.py dag check [ROOM ...|--all] [--json]``: diagnose rooms' stored DAG and state.

Read-only and safe on a live server (``dagcore.actions.dag_check`` lists the findings).
Exit code: 0 no problem, 1 warnings only, 2 at least one failure (also: bad input, with one
line on stderr). The outcome is recorded as the ``dag_check`` check result (dashboard, doctor).
"""

from __future__ import annotations

import argparse

from dagcore.actions.dag_check import SHOWN, DagCheckReport, RoomUnknown, check_dag, do_record_dag_check
from dagcore.cli.common import fail, main_wrapper, print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rooms", metavar="ROOM", nargs="*", help="room IDs to check")
    parser.add_argument("--all", action="store_true", help="check every room this server holds")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _check(args: argparse.Namespace) -> int:
    if bool(args.rooms) == bool(args.all):
        fail("give room IDs or --all (not both)")
    try:
        report = check_dag(room_ids=None if args.all else list(args.rooms))
    except RoomUnknown as exc:
        fail(f"no room {exc.args[0]!r} on this server")
    do_record_dag_check(report)
    if args.json:
        print_json(report.as_dict())
    else:
        print(render_report(report))
    return report.exit_code


def render_report(report: DagCheckReport) -> str:
    lines: list[str] = []
    for room in report.rooms:
        if room.status == "ok" and len(report.rooms) > 1:
            continue
        lines.append(
            f"{room.room_id} (room version {room.room_version}, {room.events} events, "
            f"{room.extremities} forward extremit{'y' if room.extremities == 1 else 'ies'}): {room.status.upper()}"
        )
        for f in room.findings:
            lines.append(f"  [{f.severity}] {f.code}: {f.message}")
            if f.event_ids:
                more = len(f.event_ids) - SHOWN
                lines.append(
                    "      " + ", ".join(f.event_ids[:SHOWN]) + (f" (+{more} more)" if more > 0 else "")
                )
            for d in f.details[:5] if not f.event_ids else []:
                lines.append("      " + ", ".join(f"{k}={v}" for k, v in d.items()))
    lines.append(report.summary())
    if report.status != "ok":
        lines.append("To fix a room: manage.py dag repair ROOM (a dry run), then with --apply.")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return main_wrapper(_check, args)
