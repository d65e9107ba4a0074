// createVevee's checks: a secret key in a browser page throws at once with a
// message that points to the public key (as Stripe.js refuses secret keys);
// in Node a secret key is what a backend uses.

import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';

import { createVevee, VeveeError } from '../../dist/index.js';

const host = 'http://127.0.0.1:1';

describe('the secret-key guard', () => {
  afterEach(() => {
    delete globalThis.window;
    delete globalThis.document;
  });

  function pretendBrowserPage() {
    globalThis.window = globalThis;
    globalThis.document = {};
  }

  for (const apiKey of ['sk_live_abc', 'sk_test_abc']) {
    it(`${apiKey.slice(0, 8)} in a browser page throws, pointing to the public key`, () => {
      pretendBrowserPage();
      assert.throws(
        () => createVevee({ apiKey, host }),
        (e) => {
          assert.ok(e instanceof VeveeError);
          assert.equal(e.code, 'secret_key_in_browser');
          assert.match(e.message, /secret key/);
          assert.match(e.message, /pk_live_/);
          assert.ok(!e.message.includes(apiKey), 'the key itself is not repeated in the message');
          return true;
        },
      );
    });
  }

  it('a public key in a browser page is fine', () => {
    pretendBrowserPage();
    assert.ok(createVevee({ apiKey: 'pk_live_abc', host }).analytics.setAttribute);
  });

  it('a secret key in Node is fine', () => {
    assert.equal(typeof globalThis.document, 'undefined');
    assert.ok(createVevee({ apiKey: 'sk_live_abc', host }).analytics.getAttributes);
  });
});

describe('createVevee options', () => {
  it('apiKey and host are required, host must be an http(s) URL', () => {
    assert.throws(() => createVevee({ host }), TypeError);
    assert.throws(() => createVevee({ apiKey: '', host }), TypeError);
    assert.throws(() => createVevee({ apiKey: 'sk_live_abc' }), TypeError);
    assert.throws(() => createVevee({ apiKey: 'sk_live_abc', host: 'attributes.example.com' }), /base URL/);
  });

  it('retries and timeoutMs are checked', () => {
    assert.throws(() => createVevee({ apiKey: 'sk_live_abc', host, retries: -1 }), /retries/);
    assert.throws(() => createVevee({ apiKey: 'sk_live_abc', host, retries: 1.5 }), /retries/);
    assert.throws(() => createVevee({ apiKey: 'sk_live_abc', host, timeoutMs: 0 }), /timeoutMs/);
  });

  it('an injected fetch is called as a plain function, with the request', async () => {
    const calls = [];
    const vevee = createVevee({
      apiKey: 'sk_live_abc',
      host: 'https://attributes.example.com/',
      fetch: function (input, init) {
        calls.push({ self: this, input, init });
        return Promise.resolve(new Response('{"personId":"p","attribute":"persona","cleared":true}', { status: 200 }));
      },
    });
    const r = await vevee.analytics.clearAttribute({ distinctId: 'u 1', attribute: 'persona' });
    assert.deepEqual(r, { personId: 'p', attribute: 'persona', cleared: true });
    assert.equal(calls[0].self, undefined);
    assert.match(calls[0].input, /^https:\/\/attributes\.example\.com\/api\/v1\/persons\/u%201\/attributes\/persona\?requestId=[0-9a-f-]{36}$/);
    assert.equal(calls[0].init.method, 'DELETE');
    assert.equal(calls[0].init.body, undefined);
  });
});
