// The real server binary for the tests: `vevee-attributes serve` on a free
// port over a fresh SQLite file, found through its JSON "serving gRPC" log
// line, with the four keys of a workspace made first with the CLI (a server
// whose stderr is not a terminal prints no keys). Plus the admin
// calls the tests need (definitions, settings), made over REST with the
// secret key, and small stub servers for what the real one can't be made
// to do on demand (503, 429, a dropped connection, silence).

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const sdkDir = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** VEVEE_BIN, else the binary `cargo build` / `cargo test` left in the repository's target. */
export const binary =
  process.env.VEVEE_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? resolve(sdkDir, '../../target'), 'debug/vevee-attributes');

/**
 * Starts the server and waits until it serves. `--cache-ttl 0s` so that a
 * settings change made by a test applies to its next request.
 */
export async function startServer({ extraArgs = [] } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vevee-sdk-'));
  const database = `sqlite://${join(dir, 'db.sqlite')}`;
  const keys = workspaceKeys(database);
  const child = spawn(
    binary,
    [
      'serve',
      '--grpc-addr', '127.0.0.1:0',
      '--database-url', database,
      '--cache-ttl', '0s',
      ...extraArgs,
    ],
    { env: { ...process.env, LOG_FORMAT: 'json', RUST_LOG: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const ready = new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`${binary} did not log "serving gRPC" within 30 s`)), 30_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${binary} (set VEVEE_BIN, or run cargo build): ${e.message}`));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${binary} exited with ${code} before serving`));
    });
    // Both streams are read to the end so the server never blocks on a full pipe.
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        if (!line.startsWith('{')) return;
        try {
          const entry = JSON.parse(line);
          if (entry.message === 'serving gRPC' && entry.addr) {
            clearTimeout(timer);
            resolveReady(entry.addr);
          }
        } catch {
          // Not a log line.
        }
      });
    }
  });
  const addr = await ready;
  const url = `http://${addr}`;
  return {
    url,
    keys,
    admin: admin(url, keys.sk_live),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Migrates the database and creates a workspace with the CLI (as an operator
 * would): its four keys, as { sk_live, pk_live, sk_test, pk_test }.
 */
function workspaceKeys(database) {
  execFileSync(binary, ['migrate', '--database-url', database], { stdio: 'ignore' });
  const created = JSON.parse(
    execFileSync(binary, ['workspace', 'create', 'sdk-tests', '--json', '--database-url', database], {
      encoding: 'utf8',
    }),
  );
  const keys = {};
  for (const k of created.keys) keys[`${k.key.slice(0, 2)}_${k.mode}`] = k.key;
  return keys;
}

/** Definitions and settings over REST, with the secret key. */
function admin(url, key) {
  async function rest(method, path, body) {
    const res = await fetch(url + path, {
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return JSON.parse(text);
  }
  return {
    rest,
    define: (key, type, config) =>
      rest('POST', '/api/v1/attributes/definitions', { key, type: `ATTRIBUTE_TYPE_${type.toUpperCase()}`, config }),
    archive: (key) => rest('POST', `/api/v1/attributes/definitions/${key}:archive`, {}),
    clientWrites: (on) => rest('PATCH', '/api/v1/settings', { clientAttributeWrites: on }),
    /** The seed's two attributes. */
    async defineSeedAttributes() {
      await this.define('persona', 'single_choice', { singleChoice: { options: ['teacher', 'student'] } });
      await this.define('topics', 'multi_choice', { multiChoice: { options: ['history', 'math', 'science', 'art'] } });
    },
  };
}

/**
 * A stub HTTP server: `handler(req, res, body, n)` answers request number n
 * (from 1); every request is recorded with its parsed JSON body.
 */
export async function startStub(handler) {
  const requests = [];
  const server = createServer((req, res) => {
    let text = '';
    req.on('data', (c) => (text += c));
    req.on('end', () => {
      let body;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        body = text;
      }
      const entry = { method: req.method, url: req.url, headers: req.headers, body, at: Date.now() };
      requests.push(entry);
      handler(req, res, entry, requests.length);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(r);
      }),
  };
}

/** A grpc-gateway error body, as the service writes it. */
export function gatewayError(res, status, grpcCode, reason, message, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(
    JSON.stringify({
      code: grpcCode,
      message,
      details: [
        { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason, domain: 'attributes.vevee.dev', metadata: {} },
      ],
    }),
  );
}

/** A 200 JSON answer. */
export function ok(res, body) {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
