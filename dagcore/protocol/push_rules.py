"""Push rules: the spec's server-default ruleset, rule validation and evaluation.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules (kinds, actions,
conditions), #predefined-rules (the server-default rules, in the order given
there), and https://spec.matrix.org/v1.19/appendices/#glob-style-matching and
#dot-separated-property-paths.

Pure: no Django, no database. The caller supplies what a condition needs from
the room (member count, the user's display name, the sender's power level) in
an :class:`EvalContext`.

Globs are never turned into a backtracking regular expression. A glob is split
at its ``*`` wildcards into fixed-length segments (``?`` is one character), and
segments are matched left to right, each at its leftmost possible place — which
is exact for globs and costs O(segments x value length). Patterns and values
have length caps, so a hostile rule or message cannot make evaluation slow.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The rule kinds, in the order they are evaluated (spec: "Push Rules").
KINDS = ("override", "content", "room", "sender", "underride")

#: Longest glob pattern we compile; longer ones never match (a rule is at most a few words).
MAX_PATTERN_LENGTH = 1000
#: Wildcard segments a pattern may have; more never match.
MAX_SEGMENTS = 50
#: Only this much of a property value is examined (a message body is at most ~64 KiB anyway).
MAX_VALUE_LENGTH = 65536
#: Dot-separated paths deeper than this never match.
MAX_PATH_DEPTH = 20

_WORD_CHAR = re.compile(r"[A-Za-z0-9_]")

#: Legacy mention rules (deprecated in v1.7): only applied to events without ``m.mentions``.
LEGACY_MENTION_RULES = frozenset(
    {".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"}
)

_SOUND_DEFAULT = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT = {"set_tweak": "highlight"}


#: Room and sender rules are named by room and user IDs, which are at most 255 bytes.
MAX_RULE_ID_CHARS = 255


class PushRuleError(ValueError):
    """A client-supplied rule is malformed (answered with 400)."""


# --------------------------------------------------------------------------- default rules


def _rule(
    rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], *, enabled: bool = True
) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "default": True,
        "enabled": enabled,
        "conditions": conditions,
        "actions": actions,
    }


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def default_rules(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The server-default rules for ``user_id``, per kind, in the spec's order.

    ``.m.rule.master`` is first of ``override`` and stays ahead of user rules
    (spec: it "has always a higher priority than other rules, even user defined
    ones"); every other default rule comes after the user's rules of its kind.
    """
    localpart = user_id[1:].split(":", 1)[0] if user_id.startswith("@") else user_id
    override = [
        _rule(".m.rule.master", [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
        _rule(
            ".m.rule.invite_for_me",
            [
                _match("type", "m.room.member"),
                _match("content.membership", "invite"),
                _match("state_key", user_id),
            ],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
        _rule(
            ".m.rule.is_user_mention",
            [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id}],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.contains_display_name",
            [{"kind": "contains_display_name"}],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.roomnotif",
            [_match("content.body", "@room"), {"kind": "sender_notification_permission", "key": "room"}],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.tombstone",
            [_match("type", "m.room.tombstone"), _match("state_key", "")],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
        _rule(".m.rule.room.server_acl", [_match("type", "m.room.server_acl"), _match("state_key", "")], []),
        _rule(
            ".m.rule.suppress_edits",
            [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
            [],
        ),
    ]
    content = [
        {
            "rule_id": ".m.rule.contains_user_name",
            "default": True,
            "enabled": True,
            "pattern": localpart,
            "actions": ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        }
    ]
    one_to_one = {"kind": "room_member_count", "is": "2"}
    underride = [
        _rule(
            ".m.rule.call",
            [_match("type", "m.call.invite")],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [dict(one_to_one), _match("type", "m.room.encrypted")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [dict(one_to_one), _match("type", "m.room.message")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {"override": override, "content": content, "room": [], "sender": [], "underride": underride}


#: Default rules that go before the user's rules of their kind.
PREPENDED_DEFAULT_RULES = frozenset({".m.rule.master"})

#: The default rules that name their user (their state key, mention or localpart).
USER_SPECIFIC_DEFAULT_RULES = frozenset(
    {".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.contains_user_name"}
)
#: Every other default rule, built once and shared by every ruleset that leaves it unchanged
#: (rulesets are read-only: a ruleset of defaults was ~14 KB per user, most of it these).
_SHARED_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    kind: {r["rule_id"]: r for r in rules_of_kind if r["rule_id"] not in USER_SPECIFIC_DEFAULT_RULES}
    for kind, rules_of_kind in default_rules("@_:_").items()
}


@dataclass(frozen=True)
class DefaultRuleChange:
    """A user's change to a server-default rule (``None``: unchanged)."""

    enabled: bool | None = None
    actions: list[Any] | None = None


def build_ruleset(
    user_id: str,
    user_rules: Mapping[str, Sequence[Mapping[str, Any]]],
    default_changes: Mapping[tuple[str, str], DefaultRuleChange] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The user's whole ``global`` ruleset as the API shows it.

    ``user_rules``: per kind, the user-defined rules, most important first (API
    shape: rule_id, enabled, actions, conditions/pattern). ``default_changes``
    maps ``(kind, rule_id)`` of default rules to the user's changes.
    """
    changes = default_changes or {}
    defaults = default_rules(user_id)
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        rules: list[dict[str, Any]] = []
        appended: list[dict[str, Any]] = []
        for rule in defaults[kind]:
            change = changes.get((kind, rule["rule_id"]))
            shared = _SHARED_DEFAULTS[kind].get(rule["rule_id"])
            rule = shared if change is None and shared is not None else copy.deepcopy(rule)
            if change is not None:
                if change.enabled is not None:
                    rule["enabled"] = change.enabled
                if change.actions is not None:
                    rule["actions"] = copy.deepcopy(change.actions)
            (rules if rule["rule_id"] in PREPENDED_DEFAULT_RULES else appended).append(rule)
        for user_rule in user_rules.get(kind, ()):
            rule = dict(user_rule)
            entry: dict[str, Any] = {
                "rule_id": rule["rule_id"],
                "default": False,
                "enabled": bool(rule.get("enabled", True)),
            }
            entry["actions"] = copy.deepcopy(list(rule.get("actions", [])))
            if kind in ("override", "underride"):
                entry["conditions"] = copy.deepcopy(list(rule.get("conditions", [])))
            if kind == "content":
                entry["pattern"] = rule.get("pattern", "")
            rules.append(entry)
        out[kind] = rules + appended
    return out


def find_rule(
    ruleset: Mapping[str, Sequence[Mapping[str, Any]]], kind: str, rule_id: str
) -> Mapping[str, Any] | None:
    for rule in ruleset.get(kind, ()):
        if rule["rule_id"] == rule_id:
            return rule
    return None


# --------------------------------------------------------------------------- validation


_KNOWN_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})


def validate_actions(actions: object) -> list[Any]:
    """Spec "Actions": strings, or ``{"set_tweak": name, "value"?: ...}`` objects.

    ``dont_notify`` and ``coalesce`` are accepted as no-ops (spec note: "ignored,
    not rejected"); other unknown string actions are refused.
    """
    if not isinstance(actions, list):
        raise PushRuleError("actions must be a list")
    for action in actions:
        if isinstance(action, str):
            if action not in _KNOWN_ACTIONS:
                raise PushRuleError(f"unrecognised action: {action[:100]}")
        elif isinstance(action, dict):
            tweak = action.get("set_tweak")
            if not isinstance(tweak, str) or not tweak:
                raise PushRuleError("an action object must have a set_tweak string")
        else:
            raise PushRuleError("each action must be a string or an object")
    return list(actions)


def _validate_condition(condition: object) -> dict[str, Any]:
    if not isinstance(condition, dict):
        raise PushRuleError("each condition must be an object")
    kind = condition.get("kind")
    if not isinstance(kind, str):
        raise PushRuleError("each condition needs a kind string")
    if kind == "event_match":
        if not isinstance(condition.get("key"), str) or not isinstance(condition.get("pattern"), str):
            raise PushRuleError("event_match conditions need key and pattern strings")
    elif kind in ("event_property_is", "event_property_contains"):
        if not isinstance(condition.get("key"), str) or "value" not in condition:
            raise PushRuleError(f"{kind} conditions need a key string and a value")
        if not _is_simple_value(condition["value"]):
            raise PushRuleError(f"{kind} value must be a string, integer, boolean or null")
    elif kind == "room_member_count":
        if not isinstance(condition.get("is"), str) or _parse_member_count(condition["is"]) is None:
            raise PushRuleError("room_member_count conditions need an 'is' such as '2' or '>=10'")
    elif kind == "sender_notification_permission" and not isinstance(condition.get("key"), str):
        raise PushRuleError("sender_notification_permission conditions need a key string")
    # Other kinds are stored as given: unrecognised conditions never match (spec "Conditions").
    return dict(condition)


def validate_rule_body(kind: str, rule_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``PUT /pushrules/global/{kind}/{ruleId}`` body; the rule's stored fields."""
    if kind not in KINDS:
        raise PushRuleError(f"unknown rule kind {kind[:50]}")
    if not rule_id or rule_id.startswith(".") or "/" in rule_id or "\\" in rule_id:
        raise PushRuleError("rule IDs must not be empty, start with '.' or contain '/' or '\\'")
    if len(rule_id) > MAX_RULE_ID_CHARS:
        raise PushRuleError(f"rule IDs are at most {MAX_RULE_ID_CHARS} characters")
    out: dict[str, Any] = {"actions": validate_actions(body.get("actions"))}
    if kind in ("override", "underride"):
        conditions = body.get("conditions", [])
        if not isinstance(conditions, list):
            raise PushRuleError("conditions must be a list")
        out["conditions"] = [_validate_condition(c) for c in conditions]
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            raise PushRuleError("content rules need a pattern string")
        out["pattern"] = pattern
    elif kind == "room":
        if not rule_id.startswith("!"):
            raise PushRuleError("the rule ID of a room rule is the room ID")
    elif kind == "sender" and not rule_id.startswith("@"):
        raise PushRuleError("the rule ID of a sender rule is the user ID")
    return out


# --------------------------------------------------------------------------- globs


@dataclass(frozen=True)
class _Glob:
    """A glob split at ``*`` into fixed-length segments (``?`` = any one character)."""

    segments: tuple[re.Pattern[str], ...]
    lengths: tuple[int, ...]
    leading_star: bool
    trailing_star: bool
    valid: bool


@functools.lru_cache(maxsize=4096)
def _compile_glob(pattern: str, literal: bool = False) -> _Glob:
    if len(pattern) > MAX_PATTERN_LENGTH:
        return _Glob((), (), False, False, valid=False)
    text = pattern.casefold()
    parts = [text] if literal else text.split("*")
    if len(parts) > MAX_SEGMENTS + 1:
        return _Glob((), (), False, False, valid=False)
    leading = not literal and text.startswith("*")
    trailing = not literal and text.endswith("*") and len(text) > 0
    segments = [p for p in parts if p]
    compiled = tuple(
        re.compile("".join("." if (c == "?" and not literal) else re.escape(c) for c in seg), re.DOTALL)
        for seg in segments
    )
    return _Glob(compiled, tuple(len(s) for s in segments), leading, trailing, valid=True)


def _is_word_char(value: str, index: int) -> bool:
    return 0 <= index < len(value) and _WORD_CHAR.match(value[index]) is not None


def _boundary_before(value: str, index: int) -> bool:
    return index == 0 or not _is_word_char(value, index - 1)


def _boundary_after(value: str, index: int) -> bool:
    return index == len(value) or not _is_word_char(value, index)


def _match_rest(
    glob: _Glob, value: str, pos: int, first: int, *, end_boundary: bool, anchored_end: bool
) -> bool:
    """Match segments ``first..`` in order from ``pos`` (each at its leftmost place)."""
    last = len(glob.segments) - 1
    for i in range(first, len(glob.segments)):
        regex = glob.segments[i]
        if i == last and not glob.trailing_star:
            # The last segment must end the match: at the value's end, or at a word boundary.
            if anchored_end:
                start = len(value) - glob.lengths[i]
                return start >= pos and regex.fullmatch(value, start, len(value)) is not None
            m = regex.search(value, pos)
            while m is not None:
                if not end_boundary or _boundary_after(value, m.end()):
                    return True
                m = regex.search(value, m.start() + 1)
            return False
        m = regex.search(value, pos)
        if m is None:
            return False
        pos = m.end()
    return True


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False, literal: bool = False) -> bool:
    """Case-insensitive glob match of the whole ``value``, or with ``word_boundary``
    of any substring that starts and ends at a word boundary (spec: content.body)."""
    glob = _compile_glob(pattern, literal)
    if not glob.valid:
        return False
    value = value[:MAX_VALUE_LENGTH].casefold()
    if not glob.segments:
        # "" matches only "" (whole value) or any value at a boundary; "*" matches anything.
        return glob.leading_star or word_boundary or value == ""
    if not word_boundary:
        first = glob.segments[0]
        if glob.leading_star:
            return _match_rest(glob, value, 0, 0, end_boundary=False, anchored_end=True)
        m = first.match(value)
        if m is None:
            return False
        if len(glob.segments) == 1 and not glob.trailing_star:
            return m.end() == len(value)
        return _match_rest(glob, value, m.end(), 1, end_boundary=False, anchored_end=True)
    if glob.leading_star:
        # A leading '*' can start at the value's start, which is a boundary.
        return _match_rest(glob, value, 0, 0, end_boundary=True, anchored_end=False)
    first = glob.segments[0]
    single = len(glob.segments) == 1 and not glob.trailing_star
    m = first.search(value, 0)
    while m is not None:
        if _boundary_before(value, m.start()):
            if single:
                if _boundary_after(value, m.end()):
                    return True
            else:
                # Later starts only leave less room for the rest: the leftmost start decides.
                return _match_rest(glob, value, m.end(), 1, end_boundary=True, anchored_end=False)
        m = first.search(value, m.start() + 1)
    return False


# --------------------------------------------------------------------------- property paths


@functools.lru_cache(maxsize=1024)
def split_path(key: str) -> tuple[str, ...] | None:
    """Spec "dot-separated property paths": ``.`` separates, ``\\.`` and ``\\\\`` escape."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if c == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return tuple(parts) if len(parts) <= MAX_PATH_DEPTH else None


_MISSING = object()


def lookup_path(event: Mapping[str, Any], key: str) -> Any:
    path = split_path(key)
    if path is None:
        return _MISSING
    value: Any = event
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _is_simple_value(value: object) -> bool:
    if value is None or isinstance(value, bool | str):
        return True
    return isinstance(value, int) and -(2**53) + 1 <= value <= 2**53 - 1


def _same_value(a: object, b: object) -> bool:
    # Types must agree: true is not 1, "1" is not 1 (spec: "do not cast types").
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class EvalContext:
    """What conditions need besides the event itself."""

    user_id: str
    room_member_count: int
    #: The user's display name in the room (contains_display_name), if any.
    display_name: str | None = None
    #: The sender's power level in the room.
    sender_power_level: float = 0
    #: ``content.notifications`` of the room's power levels (default ``{"room": 50}``).
    notification_levels: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PushResult:
    rule_id: str | None
    actions: tuple[Any, ...]
    notify: bool
    highlight: bool


NO_MATCH = PushResult(None, (), False, False)

_COUNT_RE = re.compile(r"^(==|<=|>=|<|>)?([0-9]{1,9})$")


def _parse_member_count(text: str) -> tuple[str, int] | None:
    m = _COUNT_RE.match(text.strip())
    if m is None:
        return None
    return m.group(1) or "==", int(m.group(2))


def _condition_holds(condition: Mapping[str, Any], event: Mapping[str, Any], ctx: EvalContext) -> bool:
    kind = condition.get("kind")
    if kind == "event_match":
        key, pattern = condition.get("key"), condition.get("pattern")
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        value = lookup_path(event, key)
        if not isinstance(value, str):
            return False
        return glob_matches(pattern, value, word_boundary=key == "content.body")
    if kind == "event_property_is":
        key = condition.get("key")
        value = lookup_path(event, key) if isinstance(key, str) else _MISSING
        return (
            value is not _MISSING and _is_simple_value(value) and _same_value(value, condition.get("value"))
        )
    if kind == "event_property_contains":
        key = condition.get("key")
        value = lookup_path(event, key) if isinstance(key, str) else _MISSING
        if not isinstance(value, list):
            return False
        wanted = condition.get("value")
        return any(_is_simple_value(item) and _same_value(item, wanted) for item in value)
    if kind == "contains_display_name":
        body = lookup_path(event, "content.body")
        name = ctx.display_name
        if not isinstance(body, str) or not name:
            return False
        return glob_matches(name, body, word_boundary=True, literal=True)
    if kind == "room_member_count":
        spec = condition.get("is")
        parsed = _parse_member_count(spec) if isinstance(spec, str) else None
        if parsed is None:
            return False
        op, n = parsed
        count = ctx.room_member_count
        return {"==": count == n, "<": count < n, ">": count > n, "<=": count <= n, ">=": count >= n}[op]
    if kind == "sender_notification_permission":
        key = condition.get("key")
        if not isinstance(key, str):
            return False
        required = ctx.notification_levels.get(key, 50)
        if isinstance(required, bool) or not isinstance(required, int | float):
            required = 50
        return bool(ctx.sender_power_level >= required)
    return False  # spec: unrecognised conditions never match


def _rule_matches(kind: str, rule: Mapping[str, Any], event: Mapping[str, Any], ctx: EvalContext) -> bool:
    if kind in ("override", "underride"):
        return all(_condition_holds(c, event, ctx) for c in rule.get("conditions", ()))
    if kind == "content":
        body = lookup_path(event, "content.body")
        pattern = rule.get("pattern")
        return (
            isinstance(body, str)
            and isinstance(pattern, str)
            and glob_matches(pattern, body, word_boundary=True)
        )
    if kind == "room":
        return bool(event.get("room_id") == rule["rule_id"])
    if kind == "sender":
        return bool(event.get("sender") == rule["rule_id"])
    return False


def result_for_actions(rule_id: str | None, actions: Iterable[Any]) -> PushResult:
    acts = tuple(actions)
    notify = "notify" in acts
    highlight = False
    for action in acts:
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return PushResult(rule_id, acts, notify, notify and highlight)


def evaluate(
    ruleset: Mapping[str, Sequence[Mapping[str, Any]]], event: Mapping[str, Any], ctx: EvalContext
) -> PushResult:
    """The actions of the first enabled rule matching ``event`` (a PDU dict), in kind order."""
    has_mentions = isinstance(event.get("content"), dict) and "m.mentions" in event["content"]
    for kind in KINDS:
        for rule in ruleset.get(kind, ()):
            if not rule.get("enabled", True):
                continue
            if has_mentions and rule["rule_id"] in LEGACY_MENTION_RULES:
                # Spec v1.7: legacy mention rules apply only to events without m.mentions.
                continue
            if _rule_matches(kind, rule, event, ctx):
                return result_for_actions(rule["rule_id"], rule.get("actions", ()))
    return NO_MATCH
