// What every journey in this folder shares: its arguments, its step log, login, waiting, a
// started client, and the one JSON line on stdout that tests/clients/test_js_*.py read.
//
// Each journey is run as `node <journey>.mjs '{"baseUrl": "...", "alice": "@a:hs", "bob": "@b:hs", "password": "..."}'`.
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel(process.env.JS_SDK_LOG_LEVEL || "error");

// `name` labels the step log on stderr; `timeoutMs` bounds waitFor and withTimeout by default;
// `pollMs` is how often waitFor checks again.
export function journey(name, { timeoutMs = 30_000, pollMs = 100 } = {}) {
  const args = JSON.parse(process.argv[2]);
  const { baseUrl, password } = args;
  const steps = [];

  function step(what) {
    steps.push(what);
    process.stderr.write(`[${name}] ${what}\n`);
  }

  async function api(method, path, token, body) {
    const r = await fetch(`${baseUrl}/_matrix/client/v3${path}`, {
      method,
      headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await r.json();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  }

  async function login(userId) {
    const res = await api("POST", "/login", null, {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: userId },
      password,
    });
    return { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
  }

  function withTimeout(promise, what, ms = timeoutMs) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  }

  async function waitFor(what, check, ms = timeoutMs) {
    const deadline = Date.now() + ms;
    for (;;) {
      const value = await check();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }

  // Creates a client for `creds`, starts it with `startOptions` and resolves once its first
  // sync is PREPARED. `rustCrypto` initialises the SDK's Rust crypto first (in memory);
  // `fetchFn` replaces its fetch; `firstSyncTimeout` bounds the first sync by `timeoutMs`;
  // `clientOpts` go to createClient (e.g. `cryptoCallbacks`).
  async function startClient(
    creds,
    startOptions,
    { rustCrypto = false, fetchFn, firstSyncTimeout = false, clientOpts = {} } = {},
  ) {
    const client = sdk.createClient({ baseUrl, ...creds, ...clientOpts, ...(fetchFn ? { fetchFn } : {}) });
    if (rustCrypto) await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve, reject) => {
      client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
        if (state === "PREPARED") resolve();
        if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
      });
    });
    await client.startClient(startOptions);
    await (firstSyncTimeout ? withTimeout(prepared, `first sync of ${creds.userId}`) : prepared);
    return client;
  }

  // Runs the journey and prints its result (or the error and the steps reached) as the last
  // line on stdout; the exit status says which.
  function run(main) {
    main().then(
      (result) => {
        process.stdout.write(`${JSON.stringify({ steps, ...result })}\n`);
        process.exit(0);
      },
      (err) => {
        process.stdout.write(`${JSON.stringify({ steps, error: String(err?.stack ?? err) })}\n`);
        process.exit(1);
      },
    );
  }

  return { args, password, steps, step, api, login, withTimeout, waitFor, startClient, run };
}
