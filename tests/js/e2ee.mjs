// Drives matrix-js-sdk (its Rust crypto, in Node) against a live Dagma server.
//
// Usage: node e2ee.mjs '{"baseUrl": "...", "alice": "@a:hs", "bob": "@b:hs", "password": "..."}'
// Prints one JSON object on stdout (the last line) for tests/clients/test_js_sdk.py to check:
// an encrypted message from Alice decrypted by Bob, cross-signing bootstrapped (and reset
// through UIA), and a key backup written by Alice and restored by a new device of hers.
import { journey } from "./common.mjs";

const { args, password, step, api, login, waitFor, startClient, run } = journey("e2ee.mjs", { timeoutMs: 60_000 });

// A client with the Rust crypto; E2EE_DEBUG=1 (or 2, with /sync) logs its HTTP traffic to stderr.
async function startCryptoClient(creds) {
  const fetchFn = process.env.E2EE_DEBUG
    ? async (url, init) => {
        const r = await fetch(url, init);
        const u = new URL(url);
        if (u.pathname.includes("/keys/") && !u.pathname.endsWith("/claim")) {
          process.stderr.write(`RESP ${creds.deviceId} ${u.pathname} ${JSON.stringify(await r.clone().json())}\n`);
        }
        if (!u.pathname.endsWith("/sync") || process.env.E2EE_DEBUG === "2")
          process.stderr.write(`HTTP ${creds.deviceId} ${init?.method ?? "GET"} ${u.pathname} ${r.status} ${init?.body && String(init.body).length < 3000 ? init.body : ""}\n`);
        if (u.pathname.endsWith("/sync") && process.env.E2EE_DEBUG === "2") {
          const clone = await r.clone().json();
          process.stderr.write(`SYNC ${creds.deviceId} device_lists=${JSON.stringify(clone.device_lists)}\n`);
        }
        return r;
      }
    : undefined;
  return startClient(creds, { initialSyncLimit: 20 }, { rustCrypto: true, fetchFn, firstSyncTimeout: true });
}

function passwordAuth(userId) {
  return async (makeRequest) => {
    await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password });
  };
}

async function decryptedBody(client, roomId, eventId) {
  const event = await waitFor(`event ${eventId} at ${client.getUserId()}`, () =>
    client.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId),
  );
  await client.decryptEventIfNeeded(event);
  await waitFor("decryption", () => !event.isBeingDecrypted() && (event.getClearContent() || event.isDecryptionFailure()));
  return {
    wireType: event.getWireType(),
    type: event.getType(),
    body: event.getContent().body ?? null,
    failure: event.isDecryptionFailure() ? String(event.decryptionFailureReason) : null,
  };
}

async function main() {
  const result = {};
  const aliceCreds = await login(args.alice);
  const bobCreds = await login(args.bob);
  const alice = await startCryptoClient(aliceCreds);
  const bob = await startCryptoClient(bobCreds);
  step("both clients synced");

  // 1. An encrypted room and a message from Alice that Bob decrypts.
  const { room_id: roomId } = await alice.createRoom({
    invite: [bobCreds.userId],
    initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
  });
  await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
  await bob.joinRoom(roomId);
  await waitFor("alice sees bob joined", () => alice.getRoom(roomId)?.getMember(bobCreds.userId)?.membership === "join");
  step("room joined");
  const { event_id: eventId } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "hello from js-sdk" });
  step("message sent");
  result.message = await decryptedBody(bob, roomId, eventId);
  step("message received");

  // 2. Cross-signing: bootstrap (the first upload needs no UIA). The client then
  // re-reads its identity and its device (now signed by the self-signing key).
  const crypto = alice.getCrypto();
  const queryOwnKeys = () => api("POST", "/keys/query", aliceCreds.accessToken, { device_keys: { [aliceCreds.userId]: [] } });
  await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(aliceCreds.userId) });
  result.crossSigning = {
    status: await crypto.getCrossSigningStatus(),
    ready: await waitFor("cross-signing ready", () => crypto.isCrossSigningReady(), 20_000).catch(() => false),
    ownDeviceVerified: await waitFor(
      "own device cross-signed",
      async () => (await crypto.getDeviceVerificationStatus(aliceCreds.userId, aliceCreds.deviceId))?.crossSigningVerified,
      20_000,
    ).catch(() => false),
  };
  step("cross-signing bootstrapped");
  // Bob's client tracks Alice's devices (device lists through /sync and /keys/query).
  const devicesSeenByBob = await bob.getCrypto().getUserDeviceInfo([aliceCreds.userId], true);
  result.crossSigning.bobSeesAliceDevices = [...(devicesSeenByBob.get(aliceCreds.userId)?.keys() ?? [])];

  // 3. Key backup: a new backup (its auth_data signed by the master key), Alice's
  // room key uploaded into it, and restored by a new device of hers.
  await crypto.resetKeyBackup();
  const version = await crypto.getActiveSessionBackupVersion();
  const backup = await waitFor("room key backed up", async () => {
    const info = await api("GET", "/room_keys/version", aliceCreds.accessToken);
    return info.count >= 1 ? info : null;
  });
  const backupKey = await crypto.getSessionBackupPrivateKey();
  step("key backed up");
  const laptopCreds = await login(args.alice);
  const laptop = await startCryptoClient(laptopCreds);
  await laptop.getCrypto().storeSessionBackupPrivateKey(backupKey, version);
  const restore = await laptop.getCrypto().restoreKeyBackup();
  const laptopView = await decryptedBody(laptop, roomId, eventId);
  result.backup = {
    version,
    serverVersion: backup.version,
    count: backup.count,
    imported: restore.imported,
    total: restore.total,
    laptopBody: laptopView.body,
  };
  step("backup restored");

  // 4. Resetting cross-signing replaces existing keys: the server asks for UIA
  // (m.login.password), which the client's callback completes.
  const firstMaster = Object.values((await queryOwnKeys()).master_keys[aliceCreds.userId].keys)[0];
  await crypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: passwordAuth(aliceCreds.userId) });
  const secondMaster = Object.values((await queryOwnKeys()).master_keys[aliceCreds.userId].keys)[0];
  result.crossSigning.reset = { firstMaster, secondMaster };
  step("cross-signing reset");

  for (const c of [alice, bob, laptop]) c.stopClient();
  return result;
}

run(main);
