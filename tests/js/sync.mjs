// Drives matrix-js-sdk (Element's SDK, no crypto) through what /sync carries, against a live Dagma.
//
// Usage: node sync.mjs '{"baseUrl": "...", "alice": "@a:hs", "bob": "@b:hs", "password": "..."}'
// Prints one JSON object on stdout (the last line) for tests/clients/test_js_sync.py to check:
// the invite and join, local echo matched by transaction ID, typing, read receipts, unread
// counts (total and per thread), account data and room tags, push rules, to-device messages.
import * as sdk from "matrix-js-sdk";

import { journey } from "./common.mjs";

const { args, step, waitFor, login, startClient, run } = journey("sync.mjs", { pollMs: 50 });
// As Element starts it: lazy-loaded members, threads, a long-poll.
const startOptions = { initialSyncLimit: 20, lazyLoadMembers: true, threadSupport: true, pollTimeout: 30000 };

async function main() {
  const result = {};
  const alice = await startClient(await login(args.alice), startOptions);
  const bob = await startClient(await login(args.bob), startOptions);
  step("both clients synced");
  result.pushRulesFromSync = (alice.pushRules?.global?.override ?? []).map((r) => r.rule_id).slice(0, 2);

  const { room_id: roomId } = await alice.createRoom({ preset: "private_chat", name: "js sync room", invite: [bob.getUserId()] });
  const invited = await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite" && bob.getRoom(roomId));
  result.inviteName = invited.name;
  await bob.joinRoom(roomId);
  const bobRoom = await waitFor("bob joined", () => bob.getRoom(roomId)?.getMyMembership() === "join" && bob.getRoom(roomId));
  const aliceRoom = await waitFor("alice sees bob", () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join" && alice.getRoom(roomId));
  step("invited and joined");

  // Local echo: alice's own message is matched by its transaction ID, never shown twice.
  const sent = await alice.sendTextMessage(roomId, "hello bob");
  await waitFor("bob receives", () => bobRoom.getLiveTimeline().getEvents().some((e) => e.getId() === sent.event_id));
  await waitFor("alice's echo settles", () => aliceRoom.getLiveTimeline().getEvents().some((e) => e.getId() === sent.event_id && e.status === null));
  result.aliceCopies = aliceRoom.getLiveTimeline().getEvents().filter((e) => e.getContent().body === "hello bob").length;
  step("message delivered");

  // Typing.
  await alice.sendTyping(roomId, true, 30000);
  await waitFor("bob sees alice typing", () => bobRoom.getMember(alice.getUserId())?.typing === true);
  await alice.sendTyping(roomId, false);
  await waitFor("bob sees alice stop", () => bobRoom.getMember(alice.getUserId())?.typing === false);
  step("typing");

  // Unread counts: two messages for bob (one in a thread), then his receipts clear them.
  const second = await alice.sendTextMessage(roomId, "are you there?");
  const threaded = await alice.sendEvent(roomId, "m.room.message", {
    msgtype: "m.text",
    body: "in a thread",
    "m.relates_to": { rel_type: "m.thread", event_id: sent.event_id, is_falling_back: true, "m.in_reply_to": { event_id: sent.event_id } },
  });
  await waitFor("bob counts unread", () => bobRoom.getUnreadNotificationCount(sdk.NotificationCountType.Total) >= 1);
  await waitFor("bob's thread count", () => bobRoom.getThreadUnreadNotificationCount(sent.event_id, sdk.NotificationCountType.Total) === 1);
  result.unreadBefore = {
    room: bobRoom.getRoomUnreadNotificationCount(sdk.NotificationCountType.Total),
    thread: bobRoom.getThreadUnreadNotificationCount(sent.event_id, sdk.NotificationCountType.Total),
  };
  const secondEvent = await waitFor("bob has the second message", () => bobRoom.findEventById(second.event_id));
  await bob.sendReadReceipt(secondEvent);
  const threadEvent = await waitFor("bob has the thread reply", () => bobRoom.findEventById(threaded.event_id));
  await bob.sendReadReceipt(threadEvent);
  await waitFor("alice sees bob's receipt", () => aliceRoom.getUsersReadUpTo(secondEvent).includes(bob.getUserId()));
  await waitFor("bob's counts cleared", () =>
    bobRoom.getRoomUnreadNotificationCount(sdk.NotificationCountType.Total) === 0 &&
    bobRoom.getThreadUnreadNotificationCount(sent.event_id, sdk.NotificationCountType.Total) === 0);
  step("unread counts and receipts");

  // Account data and tags.
  const accountData = new Promise((resolve) =>
    alice.on(sdk.ClientEvent.AccountData, (event) => event.getType() === "org.example.settings" && resolve(event.getContent())));
  await alice.setAccountData("org.example.settings", { theme: "dark" });
  result.accountData = await accountData;
  await alice.setRoomTag(roomId, "m.favourite", { order: 0.5 });
  result.tags = await waitFor("tag synced", () => aliceRoom.tags["m.favourite"] && aliceRoom.tags);
  step("account data and tags");

  // Push rules: a change reaches the client through /sync.
  await alice.setPushRuleEnabled("global", "override", ".m.rule.master", true);
  result.masterEnabled = await waitFor("rules synced", () =>
    alice.pushRules?.global?.override?.find((r) => r.rule_id === ".m.rule.master")?.enabled === true);
  await alice.setPushRuleEnabled("global", "override", ".m.rule.master", false);
  step("push rules");

  // To-device.
  const toDevice = new Promise((resolve) =>
    bob.on(sdk.ClientEvent.ToDeviceEvent, (event) => event.getType() === "org.example.ping" && resolve(event.getContent())));
  await alice.queueToDevice({
    eventType: "org.example.ping",
    batch: [{ userId: bob.getUserId(), deviceId: bob.getDeviceId(), payload: { n: 1 } }],
  });
  result.toDevice = await toDevice;
  step("to-device");

  alice.stopClient();
  bob.stopClient();
  return result;
}

run(main);
