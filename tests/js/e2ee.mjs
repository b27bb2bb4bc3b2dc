// Drives matrix-js-sdk (its Rust crypto, in Node) against a live Dagma server.
//
// Usage: node e2ee.mjs '{"baseUrl": "...", "alice": "@a:hs", "bob": "@b:hs", "password": "..."}'
// Prints one JSON object on stdout (the last line) for tests/clients/test_js_sdk.py to check:
// an encrypted message from Alice decrypted by Bob, cross-signing bootstrapped, secret storage
// set up, cross-signing reset through UIA three times in a row with the CPU loaded (issue #15),
// and a key backup written by Alice and restored by a new device of hers.
import { spawn } from "node:child_process";

import { journey } from "./common.mjs";

const { args, password, step, api, login, waitFor, startClient, run } = journey("e2ee.mjs", { timeoutMs: 60_000 });

// Runs `fn` with `n` busy loops competing for the CPU (bounded by `ms` even if never killed).
async function withCpuLoad(fn, { n = 2, ms = 120_000 } = {}) {
  const loops = Array.from({ length: n }, () =>
    spawn(process.execPath, ["-e", `const end = Date.now() + ${ms}; while (Date.now() < end) {}`], { stdio: "ignore" }),
  );
  try {
    return await fn();
  } finally {
    for (const loop of loops) loop.kill("SIGKILL");
  }
}

// A client with the Rust crypto; E2EE_DEBUG=1 (or 2, with /sync) logs its HTTP traffic to stderr.
async function startCryptoClient(creds, clientOpts = {}) {
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
  return startClient(creds, { initialSyncLimit: 20 }, { rustCrypto: true, fetchFn, firstSyncTimeout: true, clientOpts });
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
  // Secret storage asks the app for its key: the recovery key made in step 3.
  let recoveryKey;
  const cryptoCallbacks = {
    getSecretStorageKey: async ({ keys }) => [Object.keys(keys)[0], recoveryKey.privateKey],
  };
  const alice = await startCryptoClient(aliceCreds, { cryptoCallbacks });
  // The last sync response Alice's client has processed (its device lists included).
  let aliceProcessed = alice.store.getSyncToken();
  alice.on("sync", (_state, _prev, data) => {
    if (data?.nextSyncToken) aliceProcessed = data.nextSyncToken;
  });
  // Before a reset, Alice's client has heard of every change of her own keys and re-read them.
  // matrix-sdk-crypto replaces its private keys' public identity with whatever a /keys/query
  // answers, and drops the private keys that no longer match: an answer about the keys before a
  // reset, to a query sent before the reset reached the server (prompted by the notification of
  // an earlier change), would undo the reset on the client. No server can order a query before
  // the upload it has not received yet; a user does not reset twice within milliseconds.
  const probe = await api("POST", "/register", null, {
    username: `probe${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`,
    password,
    auth: { type: "m.login.dummy" },
  });
  async function caughtUpWithOwnKeys() {
    const now = (await api("GET", "/sync?timeout=0", probe.access_token)).next_batch;
    await waitFor("alice's client told of her own key changes", async () => {
      const query = `from=${encodeURIComponent(aliceProcessed)}&to=${encodeURIComponent(now)}`;
      const { changed } = await api("GET", `/keys/changes?${query}`, aliceCreds.accessToken);
      return !changed.includes(aliceCreds.userId);
    });
    // ... and has sent (and processed the answers of) the queries that prompted.
    await alice.getCrypto().outgoingRequestsManager.doProcessOutgoingRequests();
  }
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
  const ownMaster = async () => Object.values((await queryOwnKeys()).master_keys[aliceCreds.userId].keys)[0];
  const ownDeviceVerified = async () =>
    (await crypto.getDeviceVerificationStatus(aliceCreds.userId, aliceCreds.deviceId))?.crossSigningVerified;
  await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(aliceCreds.userId) });
  result.crossSigning = {
    status: await crypto.getCrossSigningStatus(),
    ready: await waitFor("cross-signing ready", () => crypto.isCrossSigningReady(), 20_000).catch(() => false),
    ownDeviceVerified: await waitFor("own device cross-signed", ownDeviceVerified, 20_000).catch(() => false),
  };
  step("cross-signing bootstrapped");
  // Bob's client tracks Alice's devices (device lists through /sync and /keys/query).
  const devicesSeenByBob = await bob.getCrypto().getUserDeviceInfo([aliceCreds.userId], true);
  result.crossSigning.bobSeesAliceDevices = [...(devicesSeenByBob.get(aliceCreds.userId)?.keys() ?? [])];

  // 3. Secret storage: a new recovery key; the private cross-signing keys go into it
  // (encrypted account data), as Element does when the user sets up recovery.
  recoveryKey = await crypto.createRecoveryKeyFromPassphrase();
  await crypto.bootstrapSecretStorage({ createSecretStorageKey: async () => recoveryKey, setupNewSecretStorage: true });
  result.secretStorage = { ready: await waitFor("secret storage ready", () => crypto.isSecretStorageReady()).catch(() => false) };
  step("secret storage set up");

  // 4. Resetting cross-signing replaces existing keys: the server asks for UIA
  // (m.login.password), which the client's callback completes; the client writes the new
  // private keys to secret storage first. Three times in a row, with the CPU loaded. After
  // each, the client's crypto must be ready again within 15 s (issue #15: sometimes it never
  // was) and trust its own device, signed with the new self-signing key.
  result.crossSigning.resets = [];
  for (let i = 0; i < 3; i++) {
    await caughtUpWithOwnKeys();
    const firstMaster = await ownMaster();
    const reset = await withCpuLoad(async () => {
      const started = Date.now();
      await crypto.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: passwordAuth(aliceCreds.userId) });
      const uploaded = Date.now();
      const ready = await waitFor("cross-signing ready after a reset", () => crypto.isCrossSigningReady(), 15_000).catch(() => false);
      return {
        ready,
        resetMs: uploaded - started,
        readyMs: Date.now() - uploaded,
        ownDeviceVerified: await waitFor("own device cross-signed after a reset", ownDeviceVerified, 15_000).catch(() => false),
        secretStorageReady: await crypto.isSecretStorageReady(),
      };
    });
    const secondMaster = await ownMaster();
    result.crossSigning.resets.push({ ...reset, firstMaster, secondMaster, clientMaster: await crypto.getCrossSigningKeyId() });
    step(`cross-signing reset ${i + 1}: uploaded in ${reset.resetMs} ms, ready: ${reset.ready} ${reset.readyMs} ms later`);
  }

  // 5. Key backup: a new backup (its auth_data signed by the current master key), Alice's
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

  for (const c of [alice, bob, laptop]) c.stopClient();
  return result;
}

run(main);
