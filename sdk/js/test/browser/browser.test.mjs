// The SDK in a real browser: Debian's chromium, driven by playwright-core,
// loads a page from one origin (a static server of this test) that imports
// the built SDK and calls the real server on another origin with a pk_live_
// key. Flag off: client_attribute_writes_disabled / 403. Flag on (set with
// the secret key over REST): the seed's two examples resolve to exactly what
// the seed shows; allowed_origins lets the page's origin write and refuses it
// once the list leaves it out. A screenshot of the page's results is saved
// and named.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startServer } from '../helpers/server.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const sdkDir = resolve(here, '../..');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const screenshotPath = join(sdkDir, 'test-results', 'browser.png');

/** Serves the page and, under /sdk/, the built SDK (dist/). */
async function startPageServer() {
  const roots = { '/sdk/': join(sdkDir, 'dist'), '/': join(here, 'page') };
  const types = { '.html': 'text/html', '.js': 'text/javascript' };
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const prefix = path.startsWith('/sdk/') ? '/sdk/' : '/';
    const root = roots[prefix];
    const file = normalize(join(root, path.slice(prefix.length) || 'index.html'));
    if (!file.startsWith(root) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, stop: () => new Promise((r) => server.close(r)) };
}

describe('the SDK in headless chromium, from a page on another origin', () => {
  let api;
  let pages;
  let browser;
  let page;
  const distinctId = 'browser-user-1';
  const apiRequests = [];

  before(async () => {
    assert.ok(existsSync(join(sdkDir, 'dist/index.js')), 'build the SDK first (npm run build)');
    api = await startServer();
    await api.admin.defineSeedAttributes();
    pages = await startPageServer();
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
    page = await browser.newPage({ viewport: { width: 1100, height: 420 } });
    page.on('console', (m) => m.type() === 'error' && console.log(`[page] ${m.text()}`));
    page.on('request', (r) => r.url().startsWith(api.url) && apiRequests.push(r));
    const q = new URLSearchParams({ api: api.url, key: api.keys.pk_live, user: distinctId, identity: 'ab'.repeat(32) });
    await page.goto(`${pages.url}/index.html?${q}`);
    await page.waitForFunction(() => window.ready === true);
  });

  after(async () => {
    await browser?.close();
    await pages?.stop();
    await api?.stop();
  });

  it('the page and the API are on different origins', async () => {
    const origin = await page.evaluate(() => location.origin);
    assert.equal(origin, pages.url);
    assert.notEqual(new URL(pages.url).origin, new URL(api.url).origin);
  });

  it('with the workspace flag off, a pk_live_ write rejects with client_attribute_writes_disabled / 403', async () => {
    const outcome = await page.evaluate(() => window.steps.singleChoice('flag off'));
    assert.deepEqual(
      { ...outcome.refused, message: undefined },
      { isVeveeError: true, isError: true, code: 'client_attribute_writes_disabled', status: 403, message: undefined },
    );
    // The browser sent it with the Origin of the page: a real cross-origin call.
    const post = apiRequests.find((r) => r.method() === 'POST');
    const headers = await post.allHeaders();
    assert.equal(headers.origin, pages.url);
    assert.equal(headers.authorization, `Bearer ${api.keys.pk_live}`);
  });

  it("with the flag on, the seed's two examples resolve to exactly what the seed shows", async () => {
    await api.admin.clientWrites(true); // the secret key, over REST; the server runs with --cache-ttl 0s
    const single = await page.evaluate(() => window.steps.singleChoice('flag on'));
    assert.ok(single.resolved, JSON.stringify(single));
    assert.equal(single.resolved.attribute, 'persona');
    assert.equal(single.resolved.value, 'teacher');
    assert.equal(typeof single.resolved.personId, 'string');
    assert.deepEqual(Object.keys(single.resolved).sort(), ['adjustments', 'attribute', 'etag', 'personId', 'value']);

    const multi = await page.evaluate(() => window.steps.multiChoice('flag on'));
    const { personId, attribute, value, etag, adjustments } = multi.resolved;
    assert.deepEqual({ personId, attribute, value }, { personId: single.resolved.personId, attribute: 'topics', value: ['history', 'math'] });
    assert.equal(typeof etag, 'string');
    assert.deepEqual(adjustments, [], 'stored as sent');

    const subset = await page.evaluate(() => window.steps.subset('flag on'));
    assert.deepEqual(subset.resolved.value, ['history', 'math'], 'the server keeps only the matching subset');

    // Stored, as the backend reads it with the secret key.
    const stored = await api.admin.rest('GET', `/api/v1/persons/${distinctId}/attributes`);
    assert.deepEqual(
      stored.attributes.map((a) => [a.attribute, a.value]),
      [['persona', 'teacher'], ['topics', ['history', 'math']]],
    );
  });

  it('an identity signature goes as x-vevee-identity, which the CORS preflight allows', async () => {
    const outcome = await page.evaluate(() => window.steps.identity('flag on'));
    assert.equal(outcome.resolved?.value, 'student', JSON.stringify(outcome));
    const withIdentity = [];
    for (const r of apiRequests) {
      const h = await r.allHeaders();
      if (h['x-vevee-identity']) withIdentity.push(h['x-vevee-identity']);
    }
    assert.deepEqual(withIdentity, ['ab'.repeat(32)]);
  });

  it("allowed_origins: the page's origin may write, a list without it refuses with origin_not_allowed / 403", async () => {
    const origins = (list) =>
      api.admin.rest('PATCH', '/api/v1/settings?updateMask=allowedOrigins', { allowedOrigins: list });
    await origins([pages.url]);
    const allowed = await page.evaluate(() => window.steps.singleChoice('origin allowed'));
    assert.equal(allowed.resolved?.value, 'teacher', JSON.stringify(allowed));
    await origins(['https://*.elsewhere.example']);
    const refused = await page.evaluate(() => window.steps.singleChoice('origin not allowed'));
    assert.equal(refused.refused?.code, 'origin_not_allowed', JSON.stringify(refused));
    assert.equal(refused.refused?.status, 403);
    await origins([]);
  });

  it('a secret key in the page throws at createVevee, pointing to the public key', async () => {
    const outcome = await page.evaluate(() => window.steps.secretKey('guard'));
    assert.equal(outcome.refused.code, 'secret_key_in_browser');
    assert.match(outcome.refused.message, /public key \(pk_live_/);
  });

  it('saves a screenshot of the page', async () => {
    mkdirSync(dirname(screenshotPath), { recursive: true });
    await page.screenshot({ path: screenshotPath, fullPage: true });
    assert.ok(existsSync(screenshotPath));
    console.log(`screenshot of the browser test's page: ${screenshotPath}`);
  });
});
