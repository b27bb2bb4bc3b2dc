// Drives matrix-js-sdk (no crypto) through everyday chat against a live Dagma server.
//
// Usage: node rooms.mjs '{"baseUrl": "...", "alice": "@a:hs", "bob": "@b:hs", "password": "..."}'
// Prints one JSON object on stdout (the last line) for tests/clients/test_js_rooms.py to check:
// room creation with an alias, join by alias, messages, back-pagination (scrollback from the
// /sync prev_batch), an edit, a reaction, a thread reply, relations, a redaction, room state,
// pushers and third-party protocols (Element's settings), server-side search, a space hierarchy.
import { journey } from "./common.mjs";

const { args, step, waitFor, login, startClient, run } = journey("rooms.mjs");
const startOptions = { initialSyncLimit: 3, threadSupport: true };

function timelineBodies(room) {
  return room
    .getLiveTimeline()
    .getEvents()
    .filter((e) => e.getType() === "m.room.message")
    .map((e) => e.getContent().body);
}

async function main() {
  const result = {};
  const alice = await startClient(await login(args.alice), startOptions);
  const bob = await startClient(await login(args.bob), startOptions);
  step("both clients synced");

  const alias = `jsroom${Date.now()}`;
  const { room_id: roomId } = await alice.createRoom({
    preset: "public_chat",
    visibility: "public",
    room_alias_name: alias,
    name: "js room",
    topic: "chat",
  });
  step("room created");
  // Element's room preview before joining (the stable endpoint of spec v1.15).
  const preview = await bob.getRoomSummary(`#${alias}:${args.alice.split(":")[1]}`);
  result.preview = [preview.room_id === roomId, preview.name, preview.topic, preview.num_joined_members, preview.membership];
  step("room previewed");
  for (let i = 0; i < 12; i++) {
    await alice.sendTextMessage(roomId, `m${i}`);
  }
  step("messages sent");

  const joined = await bob.joinRoom(`#${alias}:${args.alice.split(":")[1]}`);
  result.joinedRoomId = joined.roomId;
  const bobRoom = await waitFor("bob sees the room", () => bob.getRoom(roomId));
  await waitFor("bob's room state", () => bobRoom.getMyMembership() === "join");
  step("bob joined by alias");

  // Back-pagination from the sync timeline (the /sync prev_batch token is the first `from`).
  for (let i = 0; i < 6 && timelineBodies(bobRoom).length < 12; i++) {
    await bob.scrollback(bobRoom, 5);
  }
  result.scrollback = timelineBodies(bobRoom);
  step("scrolled back");

  const root = await alice.sendTextMessage(roomId, "root message");
  const edit = await alice.sendEvent(roomId, "m.room.message", {
    msgtype: "m.text",
    body: "* root message (edited)",
    "m.new_content": { msgtype: "m.text", body: "root message (edited)" },
    "m.relates_to": { rel_type: "m.replace", event_id: root.event_id },
  });
  await bob.sendEvent(roomId, "m.reaction", {
    "m.relates_to": { rel_type: "m.annotation", event_id: root.event_id, key: "👍" },
  });
  const reply = await bob.sendEvent(roomId, "m.room.message", {
    msgtype: "m.text",
    body: "in a thread",
    "m.relates_to": { rel_type: "m.thread", event_id: root.event_id, is_falling_back: true, "m.in_reply_to": { event_id: root.event_id } },
  });
  step("edit, reaction, thread reply sent");

  const reactions = await alice.relations(roomId, root.event_id, "m.annotation", "m.reaction");
  result.reactionKeys = reactions.events.map((e) => e.getRelation()?.key);
  const threadRelations = await alice.relations(roomId, root.event_id, "m.thread");
  result.threadReplies = threadRelations.events.map((e) => e.getId());
  result.replyId = reply.event_id;
  const fetched = await alice.fetchRoomEvent(roomId, root.event_id);
  result.bundled = {
    threadCount: fetched.unsigned?.["m.relations"]?.["m.thread"]?.count ?? null,
    editId: fetched.unsigned?.["m.relations"]?.["m.replace"]?.event_id ?? null,
  };
  result.editId = edit.event_id;
  step("relations read");

  const doomed = await bob.sendTextMessage(roomId, "delete me");
  await bob.redactEvent(roomId, doomed.event_id, undefined, { reason: "oops" });
  const redacted = await alice.fetchRoomEvent(roomId, doomed.event_id);
  result.redacted = { content: redacted.content, because: redacted.unsigned?.redacted_because?.sender ?? null };
  step("redacted");

  result.topic = (await bob.getStateEvent(roomId, "m.room.topic", "")).topic;
  const members = await bob.getJoinedRoomMembers(roomId);
  result.joinedMembers = Object.keys(members.joined).sort();
  const publicRooms = await bob.publicRooms({ filter: { generic_search_term: "js room" } });
  result.inDirectory = publicRooms.chunk.some((r) => r.room_id === roomId);
  step("state read");

  // What Element's settings and start-up ask for: pushers and third-party protocols.
  const pusher = {
    kind: "http",
    app_id: "org.example.js",
    pushkey: "js-pushkey",
    app_display_name: "JS",
    device_display_name: "Node",
    lang: "en",
    data: { url: "https://push.example.org/_matrix/push/v1/notify" },
  };
  await alice.setPusher(pusher);
  result.pushers = (await alice.getPushers()).pushers.map((p) => [p.app_id, p.pushkey, p.data.url]);
  await alice.setPusher({ ...pusher, kind: null });
  result.pushersAfterDelete = (await alice.getPushers()).pushers.length;
  result.protocols = await alice.getThirdpartyProtocols();
  step("pushers and protocols");

  // Element's room search (unencrypted rooms are searched by the server).
  const found = await bob.searchRoomEvents({ term: "M1", filter: { rooms: [roomId] } });
  result.searchBodies = found.results.map((r) => r.context.getEvent().getContent().body);
  result.searchHighlights = found.highlights;
  step("searched");

  // Element's space home: a space with the chat room as its child.
  const { room_id: spaceId } = await alice.createRoom({
    name: "js space",
    preset: "public_chat",
    creation_content: { type: "m.space" },
  });
  await alice.sendStateEvent(spaceId, "m.space.child", { via: ["localhost"] }, roomId);
  const hierarchy = await bob.getRoomHierarchy(spaceId);
  result.hierarchy = hierarchy.rooms.map((r) => [r.room_id === spaceId ? "space" : r.room_id === roomId ? "room" : r.room_id, r.room_type ?? null]);
  step("space hierarchy");

  alice.stopClient();
  bob.stopClient();
  return result;
}

run(main);
