"""Shared plumbing for the ``dag`` subcommands: read a JSON file, fail with exit code 2."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn


class CliError(Exception):
    """Bad input: printed as one line on stderr, exit code 2."""


def fail(message: str) -> NoReturn:
    raise CliError(message)


def load_json_file(path: str) -> dict[str, Any]:
    try:
        if path == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        fail(f"{path} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        fail(f"{path} must contain a JSON object")
    return data


def main_wrapper(func: Any, args: Any) -> int:
    """Run ``func(args)``; turn ``CliError`` into exit code 2 with one stderr line."""
    try:
        return int(func(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, sort_keys=True))
    sys.stdout.write("\n")
