"""``manage.py dag check / repair`` on running servers: two Dagma processes over TLS.

* B lost one of A's messages (its row, as a botched purge leaves it): ``dag check`` on B names
  the missing prev event; ``dag repair --apply --from-server A`` fetches it back from A through
  the receiving pipeline (``/backfill``, signatures, hashes, auth), B's clients see the whole
  history again in ``/messages``, and ``/sync`` goes on.
* A's own room with its stored state damaged (an event without state, current state and
  membership rows disagreeing): ``dag repair --apply`` fixes it while the server runs, and its
  clients' ``/sync``, ``/messages`` and sends work afterwards.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.federation.certs import TestCA
from tests.federation.conftest import federating_dagma
from tests.support.client import MatrixClient, q
from tests.support.live import LiveServer, wait_for

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = tmp_path_factory.mktemp("dagdoctor")
    ca = TestCA(root / "ca")
    made = [federating_dagma(ca, root / name, stem=name, redis=False) for name in ("a", "b")]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # most of a start is migrating its database
            list(pool.map(LiveServer.start, made))
        yield made[0], made[1]
    finally:
        for server in made:
            server.destroy()


def bodies(client: MatrixClient, room_id: str) -> list[str]:
    page = client.get(f"/rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 50}).json
    return [e["content"]["body"] for e in reversed(page["chunk"]) if e["type"] == "m.room.message"]


def dag(server: LiveServer, *args: str) -> tuple[int, dict[str, Any]]:
    done = server.manage("dag", *args, "--json")
    assert done.returncode in (0, 1, 2), done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def codes(report: dict[str, Any]) -> set[str]:
    return {f["code"] for r in report["rooms"] for f in r["findings"]}


def test_a_message_b_lost_is_fetched_back_from_a_and_b_shows_the_whole_history(pair) -> None:
    a, b = pair
    alice = MatrixClient(a.base_url, timeout=120).register("alice1")
    bob = MatrixClient(b.base_url, timeout=120).register("bob1")
    room_id = alice.create_room(preset="public_chat", room_version="11")
    # The first power levels, replaced before bob joins: B holds it only as an auth event (an outlier).
    state = alice.get(f"/rooms/{q(room_id)}/state").json
    first_levels = next(e for e in state if e["type"] == "m.room.power_levels")
    alice.put(
        f"/rooms/{q(room_id)}/state/m.room.power_levels", {**first_levels["content"], "state_default": 60}
    )
    assert bob.post(f"/join/{q(room_id)}", params={"server_name": a.server_name}).json == {"room_id": room_id}
    sent = [alice.send(room_id, f"m{i}") for i in range(5)]
    wait_for(
        lambda: b.query("SELECT 1 FROM events WHERE event_id = %s", (sent[-1],)), "the last message on B"
    )
    # (No /messages on B yet: walking back would backfill the history before bob's join, which
    # makes the first power levels a timeline event instead of an auth-chain outlier.)
    since = bob.sync()["next_batch"]

    # B loses a message of the timeline and an auth event (their rows, as a botched purge leaves them).
    lost, lost_auth = sent[2], first_levels["event_id"]
    assert b.query("SELECT outlier FROM events WHERE event_id = %s", (lost_auth,)) == [(True,)]
    for gone in (lost, lost_auth):
        [(nid,)] = b.query("SELECT id FROM events WHERE event_id = %s", (gone,))
        for sql in ("DELETE FROM event_edges WHERE event_id = %s", "DELETE FROM event_auth_edges WHERE event_id = %s",
                    "DELETE FROM events WHERE id = %s"):  # fmt: skip
            b.query(sql + " RETURNING 1", (nid,))
    code, report = dag(b, "check", room_id)
    assert code == 2 and {"missing_prev_events", "missing_auth_events"} <= codes(report)
    findings = {f["code"]: f for f in report["rooms"][0]["findings"]}
    assert findings["missing_prev_events"]["event_ids"] == [lost]
    assert findings["missing_auth_events"]["event_ids"] == [lost_auth]

    code, plan = dag(b, "repair", room_id, "--from-server", a.server_name)
    assert code == 0 and plan["dry_run"] and plan["plan"]["fetch_prev_events"] == [lost]
    assert plan["plan"]["fetch_auth_events"] == [lost_auth]
    assert not b.query("SELECT 1 FROM events WHERE event_id = %s", (lost,))  # a dry run changes nothing
    code, applied = dag(b, "repair", room_id, "--apply", "--from-server", a.server_name)
    assert code == 0, applied
    assert applied["fetched_events"] >= 1 and applied["check_after"]["status"] == "ok"
    [(outlier, rejected)] = b.query(
        "SELECT outlier, rejected_reason FROM events WHERE event_id = %s", (lost,)
    )
    assert outlier is False and rejected is None
    # The auth event is back too, checked like any received event (the /backfill answer that
    # brought the message also placed the history before bob's join, this event with it).
    assert b.query("SELECT rejected_reason FROM events WHERE event_id = %s", (lost_auth,)) == [(None,)]
    assert b.query(
        "SELECT 1 FROM audit_log WHERE action = 'dag_repair' AND target = %s AND result = 'ok'", (room_id,)
    )

    assert bodies(bob, room_id) == [f"m{i}" for i in range(5)]
    alice.send(room_id, "after the repair")

    def news() -> list[str]:
        nonlocal since
        synced = bob.sync(since=since, timeout=2000)
        since = synced["next_batch"]
        events = (
            synced.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {}).get("events", [])
        )
        return [e["content"]["body"] for e in events if e["type"] == "m.room.message"]

    seen: list[str] = []

    def arrived() -> bool:
        seen.extend(news())
        return "after the repair" in seen

    wait_for(arrived, "the next message in B's /sync")
    assert "m2" not in seen  # the refetched history is not news


def test_damaged_state_is_repaired_on_a_running_server_and_clients_go_on(pair) -> None:
    a, _ = pair
    alice = MatrixClient(a.base_url, timeout=120).register("alice2")
    carol = MatrixClient(a.base_url, timeout=120).register("carol2")
    room_id = alice.create_room(preset="public_chat", room_version="11", name="damaged")
    carol.join(room_id)
    alice.put(f"/rooms/{q(room_id)}/state/m.room.topic", {"topic": "t1"})
    messages = [alice.send(room_id, f"s{i}") for i in range(3)]
    since = carol.sync()["next_batch"]
    [(room_nid,)] = a.query("SELECT id FROM rooms WHERE room_id = %s", (room_id,))
    a.query("UPDATE events SET state_group = NULL, state_group_before = NULL WHERE event_id = %s RETURNING 1",
            (messages[1],))  # fmt: skip
    a.query(
        "DELETE FROM current_state_events WHERE room_id = %s AND type = 'm.room.topic' RETURNING 1",
        (room_nid,),
    )
    a.query("UPDATE room_memberships SET membership = 'leave' WHERE room_id = %s AND user_id = %s RETURNING 1",
            (room_nid, carol.user_id))  # fmt: skip
    code, report = dag(a, "check", room_id)
    assert code == 2
    assert {"event_without_state", "current_state_mismatch", "membership_mismatch"} <= codes(report)

    code, applied = dag(a, "repair", room_id, "--apply")
    assert code == 0 and applied["check_after"]["status"] == "ok", applied

    state = alice.get(f"/rooms/{q(room_id)}/state/m.room.topic").json
    assert state == {"topic": "t1"}
    assert bodies(carol, room_id) == ["s0", "s1", "s2"]
    carol.send(room_id, "carol is still in")
    synced = alice.sync()
    timeline = synced["rooms"]["join"][room_id]["timeline"]["events"]
    assert "carol is still in" in [e["content"].get("body") for e in timeline]
    assert carol.sync(since=since, timeout=0)["next_batch"]

    # The check reads a moment of the database: sends going on meanwhile are no finding.
    stop = threading.Event()

    def chatter() -> None:
        sender = MatrixClient(a.base_url, timeout=120)
        sender.access_token = carol.access_token
        i = 0
        while not stop.is_set():
            sender.send(room_id, f"busy {i}")
            i += 1

    talker = threading.Thread(target=chatter)
    talker.start()
    try:
        for _ in range(2):
            code, report = dag(a, "check", "--all")
            assert code == 0, report
    finally:
        stop.set()
        talker.join()
    # The record of the check is there for the dashboard and doctor.
    latest = a.query(
        "SELECT status, details FROM check_results WHERE name = 'dag_check' ORDER BY id DESC LIMIT 1"
    )
    assert latest[0][0] == "ok" and latest[0][1]["rooms_checked"] >= 2
