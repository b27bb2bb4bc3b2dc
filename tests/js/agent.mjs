// A matrix-js-sdk agent (Rust crypto) that a Python test drives step by step, for journeys
// that interleave with other clients and with servers being stopped and started
// (tests/clients/test_js_nio_federation.py, through tests.support.js.JsAgent).
//
// Usage: node agent.mjs '{"baseUrl": "...", "password": "..."}'
// Reads one JSON command per line on stdin: {"id": 1, "cmd": "send", "name": "dee", ...};
// answers each with one line on stdout: {"id": 1, "ok": <result>} or {"id": 1, "error": "..."}.
// Clients are named by the test ("dee", "dee2", ...); each is one device of one user.
import * as readline from "node:readline";

import * as RustSdkCryptoJs from "@matrix-org/matrix-sdk-crypto-wasm";
import * as sdk from "matrix-js-sdk";

import { journey } from "./common.mjs";

const { password, step, login, waitFor, startClient } = journey("agent.mjs", { timeoutMs: 60_000 });

const clients = new Map(); // name -> { client, creds, toDevice: [events] }

function get(name) {
  const entry = clients.get(name);
  if (!entry) throw new Error(`no client ${name}`);
  return entry;
}

async function identity(client, userId) {
  const machine = client.getCrypto().olmMachine;
  return machine.getIdentity(new RustSdkCryptoJs.UserId(userId));
}

async function deviceIds(client, userId) {
  const info = await client.getCrypto().getUserDeviceInfo([userId], true);
  return [...(info.get(userId)?.keys() ?? [])].sort();
}

const commands = {
  // Logs `userId` in as a new device and starts its client (Rust crypto, in memory).
  async login({ name, userId }) {
    const creds = await login(userId);
    const entry = { creds, toDevice: [] };
    entry.client = await startClient(creds, { initialSyncLimit: 20 }, { rustCrypto: true, firstSyncTimeout: true });
    entry.client.on(sdk.ClientEvent.ToDeviceEvent, (event) => {
      entry.toDevice.push({ type: event.getType(), sender: event.getSender(), content: event.getContent() });
    });
    clients.set(name, entry);
    return { deviceId: creds.deviceId, ed25519: entry.client.getCrypto().olmMachine.identityKeys.ed25519.toBase64() };
  },

  async createRoom({ name, body }) {
    const { room_id: roomId } = await get(name).client.createRoom(body);
    return roomId;
  },

  async join({ name, roomId }) {
    const { client } = get(name);
    await waitFor(`${name} invited to ${roomId}`, () => client.getRoom(roomId)?.getMyMembership() === "invite");
    await client.joinRoom(roomId);
    return true;
  },

  async waitMember({ name, roomId, userId, membership = "join" }) {
    const { client } = get(name);
    await waitFor(`${userId} ${membership} in ${roomId} at ${name}`, () =>
      client.getRoom(roomId)?.getMember(userId)?.membership === membership,
    );
    return true;
  },

  async send({ name, roomId, body }) {
    const { event_id: eventId } = await get(name).client.sendMessage(roomId, { msgtype: "m.text", body });
    return eventId;
  },

  // Waits for `eventId` in the room's timeline and for its decryption (or its failure).
  async decrypt({ name, roomId, eventId }) {
    const { client } = get(name);
    const event = await waitFor(`event ${eventId} at ${name}`, () =>
      client.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId),
    );
    await waitFor(`decryption of ${eventId} at ${name}`, async () => {
      await client.decryptEventIfNeeded(event);
      return !event.isBeingDecrypted() && (event.getClearContent() || event.isDecryptionFailure());
    });
    return {
      wireType: event.getWireType(),
      type: event.getType(),
      sender: event.getSender(),
      body: event.getContent().body ?? null,
      failure: event.isDecryptionFailure() ? String(event.decryptionFailureReason) : null,
    };
  },

  // Cross-signing bootstrapped (no UIA for a first upload); answers the new master key.
  async bootstrapCrossSigning({ name }) {
    const { client, creds } = get(name);
    const crypto = client.getCrypto();
    await crypto.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: creds.userId }, password });
      },
    });
    await waitFor("cross-signing ready", () => crypto.isCrossSigningReady());
    return { master: await crypto.getCrossSigningKeyId() };
  },

  // The device IDs of `userId` this client knows (its device-list tracking), once they
  // equal `expected` when that is given.
  async devices({ name, userId, expected }) {
    const { client } = get(name);
    if (!expected) return deviceIds(client, userId);
    const want = [...expected].sort().join(",");
    return waitFor(`${name} sees devices ${want} of ${userId}`, async () => {
      const ids = await deviceIds(client, userId);
      return ids.join(",") === want ? ids : null;
    });
  },

  // The master key of `userId` as this client holds it, once it equals `expected` if given.
  async masterKey({ name, userId, expected }) {
    const { client } = get(name);
    const read = async () => {
      await client.getCrypto().getUserDeviceInfo([userId], true);
      const id = await identity(client, userId);
      if (!id) return null;
      const key = JSON.parse(id.masterKey);
      id.free();
      return Object.values(key.keys)[0];
    };
    return expected ? waitFor(`${name} sees ${userId}'s master key ${expected}`, async () => ((await read()) === expected ? expected : null)) : read();
  },

  // Verifies `userId` (signs their master key with this user's user-signing key, as after an
  // interactive verification) and answers whether the client then trusts them.
  async verifyUser({ name, userId }) {
    const { client } = get(name);
    const crypto = client.getCrypto();
    const id = await identity(client, userId);
    if (!id) throw new Error(`${name} knows no identity of ${userId}`);
    const request = await id.verify();
    id.free();
    await crypto.outgoingRequestProcessor.makeOutgoingRequest(request);
    return waitFor(`${name} trusts ${userId}`, async () => (await crypto.getUserVerificationStatus(userId)).isCrossSigningVerified());
  },

  async sendToDevice({ name, userId, deviceId, type, content }) {
    await get(name).client.sendToDevice(type, new Map([[userId, new Map([[deviceId, content]])]]));
    return true;
  },

  async waitToDevice({ name, type }) {
    const entry = get(name);
    return waitFor(`${name} receives a ${type} to-device message`, () => entry.toDevice.find((e) => e.type === type));
  },

  async stop({ name }) {
    get(name).client.stopClient();
    clients.delete(name);
    return true;
  },
};

const input = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
input.on("line", (line) => {
  const { id, cmd, ...params } = JSON.parse(line);
  // One command at a time, in order: the test's steps are sequential.
  queue = queue.then(async () => {
    step(`${id} ${cmd} ${params.name ?? ""}`);
    try {
      const ok = await commands[cmd](params);
      process.stdout.write(`${JSON.stringify({ id, ok: ok ?? null })}\n`);
    } catch (err) {
      process.stdout.write(`${JSON.stringify({ id, error: String(err?.stack ?? err) })}\n`);
    }
  });
});
input.on("close", () => {
  queue.then(() => {
    for (const { client } of clients.values()) client.stopClient();
    process.exit(0);
  });
});
